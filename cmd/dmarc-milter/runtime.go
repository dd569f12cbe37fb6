package main

import (
	"log/slog"
	"math"
	"os"
	"runtime/debug"

	"github.com/dmarc-milter/dmarc-milter/internal/config"
)

// applyRuntime sets the garbage collector's target and soft memory limit from
// the [runtime] settings, unless the operator set GOGC or GOMEMLIMIT in the
// environment, which then win. It returns the values in force, for the log.
func applyRuntime(log *slog.Logger, r config.Runtime) (gcPercent int, memLimitMB int64) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(r.GCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		limit := int64(math.MaxInt64) // no limit
		if r.MemoryLimitMB > 0 {
			limit = int64(r.MemoryLimitMB) << 20
		}
		debug.SetMemoryLimit(limit)
	}
	gcPercent = debug.SetGCPercent(-1)
	debug.SetGCPercent(gcPercent)
	memLimitMB = debug.SetMemoryLimit(-1) >> 20
	if log != nil {
		log.Debug("go runtime", "gc_percent", gcPercent, "memory_limit_mb", memLimitMB)
	}
	return gcPercent, memLimitMB
}
