package pending_test

import (
	"context"
	"fmt"
	"time"

	"github.com/dmarc-milter/dmarc-milter/pkg/pending"
)

// A check answered at once and one answered by a goroutine are waited for
// the same way, under one deadline.
func ExampleCheck() {
	var cached, looked pending.Check[string]
	cached.Set("pass") // the answer was in the cache

	ch := looked.Start()
	go func() { ch <- "fail" }() // the answer needs a lookup

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, c := range []*pending.Check[string]{&cached, &looked} {
		v, ok := c.Wait(ctx.Done)
		fmt.Println(v, ok)
	}
	var never pending.Check[string]
	_, ok := never.Wait(ctx.Done)
	fmt.Println(ok)
	// Output:
	// pass true
	// fail true
	// false
}
