package main

import (
	"context"
	"testing"
	"time"
)

// TestPacerSpacing: starts come one interval apart, so n starts at rate r
// take at least (n-1)/r; a nil pacer (no --rate) never waits.
func TestPacerSpacing(t *testing.T) {
	p := newPacer(200) // 5 ms apart
	start := time.Now()
	for range 21 {
		p.wait(context.Background())
	}
	if d := time.Since(start); d < 100*time.Millisecond-time.Millisecond {
		t.Errorf("21 starts at 200/s took %v, want at least 100 ms", d)
	}
	var none *pacer
	if newPacer(0) != nil {
		t.Fatal("rate 0 must mean no pacing")
	}
	start = time.Now()
	for range 1000 {
		none.wait(context.Background())
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("an unpaced run waited %v", d)
	}
}

// TestPacerNoCatchUp: starts missed while every session was busy are not
// made up in a burst afterwards: the two starts after a pause are still one
// interval apart.
func TestPacerNoCatchUp(t *testing.T) {
	p := newPacer(50) // 20 ms apart
	p.wait(context.Background())
	time.Sleep(100 * time.Millisecond) // five starts missed
	p.wait(context.Background())
	t1 := time.Now()
	p.wait(context.Background())
	if d := time.Since(t1); d < 19*time.Millisecond {
		t.Errorf("the start after a pause came %v after the previous one, want one interval (20 ms)", d)
	}
}
