package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// progress draws one live status line on stderr: what runs, how many
// events or operations so far, the current rate and the elapsed time.
// Notes print on a line of their own. It is safe for concurrent use.
type progress struct {
	w       io.Writer
	enabled bool // print notes
	live    bool // draw the live line

	mu    sync.Mutex // guards the fields below
	label string
	total time.Duration
	count *atomic.Int64
	t0    time.Time
	quit  chan struct{}
	drawn bool
	begin time.Time // of the run, for the elapsed time in notes
}

// newProgress returns a progress line on w. It draws only when enabled
// and w is a terminal; notes print whenever enabled.
func newProgress(w io.Writer, enabled bool) *progress {
	return &progress{w: w, enabled: enabled, live: enabled && isTerminal(w), begin: time.Now()}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// start shows label with a counter until stop. total is the planned
// duration, zero when unknown.
func (p *progress) start(label string, total time.Duration, count *atomic.Int64) {
	if !p.live {
		p.note("%s", label)
		return
	}
	p.mu.Lock()
	p.label, p.total, p.count, p.t0 = label, total, count, time.Now()
	p.quit = make(chan struct{})
	quit := p.quit
	p.mu.Unlock()
	go func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
				p.draw()
			}
		}
	}()
}

func (p *progress) draw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.count == nil {
		return
	}
	el := time.Since(p.t0)
	n := p.count.Load()
	plan := ""
	if p.total > 0 {
		plan = "/" + p.total.Round(time.Second/10).String()
	}
	fmt.Fprintf(p.w, "\r\033[K%s  %s  %s/s  %s%s", p.label, human(float64(n)),
		human(float64(n)/el.Seconds()), el.Round(time.Second/10), plan)
	p.drawn = true
}

// stop ends the current line.
func (p *progress) stop() {
	if !p.live {
		return
	}
	p.mu.Lock()
	if p.quit != nil {
		close(p.quit)
		p.quit = nil
	}
	p.count = nil
	p.mu.Unlock()
	p.clear()
}

func (p *progress) clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
}

// note prints one line, prefixed with the time since the run began.
func (p *progress) note(format string, args ...any) {
	if !p.enabled {
		return
	}
	p.clear()
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "[%6.1fs] "+format+"\n", append([]any{time.Since(p.begin).Seconds()}, args...)...)
}

func (p *progress) done() { p.stop() }

// human formats n with a k, M or G suffix.
func human(n float64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2fG", n/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.2fM", n/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1fk", n/1e3)
	}
	return fmt.Sprintf("%.0f", n)
}
