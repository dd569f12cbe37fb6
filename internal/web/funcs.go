package web

import (
	"fmt"
	"html/template"
	"time"
)

// funcs are the templates' helpers: formatting only, never markup.
var funcs = template.FuncMap{
	"pct": func(f float64) string { return fmt.Sprintf("%.1f %%", 100*f) },
	"utc": func(t time.Time) string {
		if t.IsZero() {
			return "–"
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	"day": func(t time.Time) string {
		if t.IsZero() {
			return "–"
		}
		return t.UTC().Format(time.DateOnly)
	},
}
