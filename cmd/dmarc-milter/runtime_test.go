package main

import (
	"math"
	"runtime/debug"
	"testing"

	"github.com/dmarc-milter/dmarc-milter/internal/config"
)

func TestApplyRuntime(t *testing.T) {
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	oldGC := debug.SetGCPercent(100)
	oldLimit := debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() { debug.SetGCPercent(oldGC); debug.SetMemoryLimit(oldLimit) })

	gc, mb := applyRuntime(nil, config.Default().Runtime)
	if gc != 400 || mb != 512 {
		t.Errorf("defaults: gc_percent %d, memory limit %d MiB; want 400 and 512", gc, mb)
	}
	gc, mb = applyRuntime(nil, config.Runtime{GCPercent: 150, MemoryLimitMB: 0})
	if gc != 150 || mb != math.MaxInt64>>20 {
		t.Errorf("no limit: gc_percent %d, memory limit %d MiB", gc, mb)
	}
	// The environment wins.
	t.Setenv("GOGC", "50")
	debug.SetGCPercent(50)
	if gc, _ = applyRuntime(nil, config.Runtime{GCPercent: 400, MemoryLimitMB: 64}); gc != 50 {
		t.Errorf("GOGC set: gc_percent %d, want the environment's 50", gc)
	}
}
