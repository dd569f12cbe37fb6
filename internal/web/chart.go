package web

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Charts are computed here as numbers and drawn by templates/chart.html as
// SVG: html/template escapes every label, and no markup is built as text.

const (
	chartW, chartH = 720, 200
	chartPad       = 40 // left margin for the scale
)

// stackChart is a bar per day, stacked by series.
type stackChart struct {
	W, H, Left, Bottom int
	Max                string // the scale's top value
	First, Last        string // the first and last day
	Bars               []stackBar
	Legend             []legendItem
}

type stackBar struct {
	X, W float64
	Segs []stackSeg
}

type stackSeg struct {
	Y, H  float64
	Class string
	Title string
}

type legendItem struct {
	Class, Name string
}

// seriesClass is the CSS class of the i-th series (static/style.css).
func seriesClass(i int) string { return "s" + strconv.Itoa(i%8) }

// newStackChart draws values[day][series] for the days of rng; series are
// named by names, in stacking order.
func newStackChart(rng dateRange, names []string, values map[time.Time][]int64) *stackChart {
	c := &stackChart{W: chartW, H: chartH, Left: chartPad, Bottom: chartH - 20,
		First: rng.From(), Last: rng.To()}
	for i, n := range names {
		c.Legend = append(c.Legend, legendItem{Class: seriesClass(i), Name: n})
	}
	var max int64
	for _, vs := range values {
		var sum int64
		for _, v := range vs {
			sum += v
		}
		max = maxInt(max, sum)
	}
	c.Max = strconv.FormatInt(max, 10)
	days := rng.Days()
	if days == 0 || max == 0 {
		return c
	}
	plotH := float64(c.Bottom - 10)
	bw := float64(c.W-c.Left) / float64(days)
	for i := range days {
		d := rng.Since.Add(time.Duration(i) * day)
		bar := stackBar{X: float64(c.Left) + float64(i)*bw, W: max1(bw - 1)}
		y := float64(c.Bottom)
		for j, v := range values[d] {
			if v == 0 {
				continue
			}
			h := plotH * float64(v) / float64(max)
			y -= h
			bar.Segs = append(bar.Segs, stackSeg{Y: round2(y), H: round2(h), Class: seriesClass(j),
				Title: fmt.Sprintf("%s %s: %d", d.Format(time.DateOnly), names[j], v)})
		}
		bar.X, bar.W = round2(bar.X), round2(bar.W)
		c.Bars = append(c.Bars, bar)
	}
	return c
}

// barChart is horizontal bars: one per label, longest first.
type barChart struct {
	W, H, LabelW int
	Bars         []hbar
}

type hbar struct {
	Y, W  float64
	Label string
	Value int64
	Class string
}

func newBarChart(labels []string, values []int64, classes []string) *barChart {
	c := &barChart{W: chartW, LabelW: 260, H: 22*len(labels) + 4}
	var max int64
	for _, v := range values {
		max = maxInt(max, v)
	}
	for i, l := range labels {
		w := 0.0
		if max > 0 {
			w = float64(c.W-c.LabelW-80) * float64(values[i]) / float64(max)
		}
		c.Bars = append(c.Bars, hbar{Y: float64(22*i + 2), W: round2(max1(w)), Label: shorten(l, 40), Value: values[i], Class: classes[i]})
	}
	return c
}

// sparkline is a small line of rates (0..1) over days.
type sparkline struct {
	W, H   int
	Points string // "x,y x,y ...": numbers only
}

func newSparkline(rates []float64) *sparkline {
	s := &sparkline{W: 120, H: 24}
	if len(rates) < 2 {
		return s
	}
	var b strings.Builder
	for i, r := range rates {
		x := float64(s.W-2) * float64(i) / float64(len(rates)-1)
		y := float64(s.H-2) * (1 - r)
		fmt.Fprintf(&b, "%.1f,%.1f ", x+1, y+1)
	}
	s.Points = strings.TrimSpace(b.String())
	return s
}

func maxInt(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

func max1(f float64) float64 {
	if f < 1 {
		return 1
	}
	return f
}

func round2(f float64) float64 {
	v, _ := strconv.ParseFloat(strconv.FormatFloat(f, 'f', 2, 64), 64)
	return v
}

// shorten cuts s to n runes with an ellipsis.
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
