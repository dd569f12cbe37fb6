package verify

import "sync"

// textMemo remembers a value computed from a text alone (a parsed DKIM key,
// the syntax verdict of an SPF record), shared by all messages: a busy
// server sees the same few records over and over, found through the DNS
// cache, and a record names its content, so a hit is always right. It holds
// at most max texts of at most maxLen octets; when full, an arbitrary entry
// is dropped for the new one, and a longer text is computed every time.
// Safe for concurrent use; a nil memo computes every time.
type textMemo[V any] struct {
	max, maxLen int

	mu sync.Mutex
	m  map[string]V // made on first use
}

func newTextMemo[V any](max, maxLen int) *textMemo[V] {
	return &textMemo[V]{max: max, maxLen: maxLen}
}

// get returns f(text), from memory when it was computed before. f must
// depend on text alone; what it returns is shared and must not be modified.
func (c *textMemo[V]) get(text string, f func(string) V) V {
	if c == nil || len(text) > c.maxLen {
		return f(text)
	}
	c.mu.Lock()
	v, ok := c.m[text]
	c.mu.Unlock()
	if ok {
		return v
	}
	v = f(text)
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[string]V)
	} else if len(c.m) >= c.max {
		for old := range c.m { // map order: an arbitrary entry
			delete(c.m, old)
			break
		}
	}
	c.m[text] = v
	c.mu.Unlock()
	return v
}
