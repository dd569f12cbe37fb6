package pending

import (
	"testing"
	"time"
)

func closed() <-chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}

func never() <-chan struct{} { return nil }

// goCheck answers c from a goroutine running f (a panic sends nothing).
func goCheck[T any](c *Check[T], f func() T) {
	ch := c.Start()
	go func() {
		defer func() { _ = recover() }()
		ch <- f()
	}()
}

func TestCheckNotStarted(t *testing.T) {
	var c Check[int]
	if c.Started() {
		t.Fatal("zero Check started")
	}
	if v, ok := c.Wait(never); ok || v != 0 {
		t.Fatalf("Wait = %d, %v; want 0, false at once", v, ok)
	}
}

// TestCheckSetWinsOverStop: a result known at once is returned even when
// the deadline has passed, and the stop is not even asked for.
func TestCheckSetWinsOverStop(t *testing.T) {
	var c Check[string]
	c.Set("pass")
	asked := false
	v, ok := c.Wait(func() <-chan struct{} { asked = true; return closed() })
	if !ok || v != "pass" || asked {
		t.Fatalf("Wait = %q, %v (stop asked %v); want pass, true, not asked", v, ok, asked)
	}
}

// TestCheckGoReadyWinsOverStop: a goroutine's result already sent wins over
// a stop already closed (a plain select would pick either).
func TestCheckGoReadyWinsOverStop(t *testing.T) {
	for range 200 {
		var c Check[int]
		c.Start() <- 7 // sent before Wait
		if v, ok := c.Wait(closed); !ok || v != 7 {
			t.Fatalf("Wait = %d, %v; want 7, true", v, ok)
		}
		if v, ok := c.Wait(closed); !ok || v != 7 {
			t.Fatalf("second Wait = %d, %v; want the kept result", v, ok)
		}
	}
}

func TestCheckGoWaits(t *testing.T) {
	var c Check[int]
	release := make(chan struct{})
	goCheck(&c, func() int { <-release; return 42 })
	time.AfterFunc(10*time.Millisecond, func() { close(release) })
	if v, ok := c.Wait(never, never); !ok || v != 42 {
		t.Fatalf("Wait = %d, %v; want 42, true", v, ok)
	}
}

// TestCheckStops: each of two stops ends the wait; a panicking check never
// answers and the wait ends at its stop.
func TestCheckStops(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	for i := range 2 {
		var c Check[int]
		goCheck(&c, func() int { <-block; return 1 })
		stops := []func() <-chan struct{}{never, never}
		stops[i] = closed
		if _, ok := c.Wait(stops...); ok {
			t.Fatalf("stop %d: Wait returned a result", i)
		}
	}
	var c Check[int]
	goCheck(&c, func() int { panic("check bug") })
	deadline := func() <-chan struct{} {
		ch := make(chan struct{})
		time.AfterFunc(20*time.Millisecond, func() { close(ch) })
		return ch
	}
	if _, ok := c.Wait(deadline); ok {
		t.Fatal("a panicked check gave a result")
	}
}

func TestCheckTooManyStops(t *testing.T) {
	var c Check[int]
	c.Start()
	defer func() {
		if recover() == nil {
			t.Error("three stops: no panic")
		}
	}()
	c.Wait(never, never, closed)
}
