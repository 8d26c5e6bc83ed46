package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
)

// progress draws a one-line progress bar on stderr when it is a terminal.
type progress struct {
	total, done int64 // bytes
	start, last time.Time
	on          bool
}

func newProgress(total int64, quiet bool) *progress {
	p := &progress{total: total, start: time.Now()}
	if st, err := os.Stderr.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 && !quiet {
		p.on = true
	}
	return p
}

func (p *progress) add(n int64) {
	p.done += n
	if !p.on || time.Since(p.last) < 200*time.Millisecond {
		return
	}
	p.last = time.Now()
	p.draw()
}

func (p *progress) draw() {
	el := time.Since(p.start).Seconds()
	rate := float64(p.done) / max(el, 1e-3)
	eta := "?"
	if rate > 0 && p.total > p.done {
		eta = (time.Duration(float64(p.total-p.done)/rate) * time.Second).Round(time.Second).String()
	}
	pct := 100.0
	if p.total > 0 {
		pct = 100 * float64(p.done) / float64(p.total)
	}
	const width = 30
	fill := int(pct / 100 * width)
	fmt.Fprintf(os.Stderr, "\r[%s%s] %5.1f%% %s / %s  %s/s  ETA %s   ",
		strings.Repeat("#", fill), strings.Repeat(".", width-fill), pct,
		humanize.IBytes(uint64(p.done)), humanize.IBytes(uint64(p.total)), humanize.IBytes(uint64(rate)), eta)
}

func (p *progress) finish() {
	if p.on {
		p.draw()
		fmt.Fprintln(os.Stderr)
	}
}
