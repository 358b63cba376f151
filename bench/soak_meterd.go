package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// buildMeterd builds ./cmd/meterd of the module the bench belongs to into
// dir and returns the binary's path.
func buildMeterd(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the meterdb module: run the soak from its source tree")
	}
	bin := filepath.Join(dir, "meterd")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/meterd")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/meterd: %w\n%s", err, out)
	}
	return bin, nil
}

// meterdProc runs meterd processes, one at a time, on one database file
// and one loopback address, which a restart keeps when it can.
//
// start, kill and stop are called by one goroutine (the soak's
// controller); URL, PID and the log are safe for concurrent use.
type meterdProc struct {
	bin, db, key string
	addr         string // host:port of the running or last process

	url  atomic.Pointer[string] // "http://" + addr of the running process
	pid  atomic.Int64           // 0 while no process runs
	gen  atomic.Int64           // processes started so far
	logs meterdLog

	cmd    *exec.Cmd
	exited chan error // receives cmd.Wait's result once
}

var meterdListeningRE = regexp.MustCompile(`msg=listening addr=(\S+)`)

// meterdLog keeps the last lines meterd wrote to stderr and counts its
// ERROR records. It is safe for concurrent use.
type meterdLog struct {
	mu     sync.Mutex // guards the fields below
	tail   []string
	errors int64
}

const meterdLogTail = 40

func (l *meterdLog) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if strings.Contains(line, "level=ERROR") {
		l.errors++
	}
	if len(l.tail) == meterdLogTail {
		copy(l.tail, l.tail[1:])
		l.tail = l.tail[:meterdLogTail-1]
	}
	l.tail = append(l.tail, line)
}

// snapshot returns the number of ERROR records and a copy of the tail.
func (l *meterdLog) snapshot() (int64, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.errors, append([]string(nil), l.tail...)
}

// URL returns the base URL of the running process (or of the last one).
func (m *meterdProc) URL() string {
	if u := m.url.Load(); u != nil {
		return *u
	}
	return ""
}

// start runs a new meterd on the database file and waits until it
// listens; it returns how long that took (mostly opening the file). The
// first process picks a free port; later ones reuse it, or pick another
// when it is taken.
func (m *meterdProc) start(ctx context.Context) (time.Duration, error) {
	if m.cmd != nil {
		return 0, errors.New("meterd is already running")
	}
	addr := m.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	d, err := m.startOn(ctx, addr)
	if err != nil && addr != "127.0.0.1:0" && strings.Contains(err.Error(), "address already in use") {
		d, err = m.startOn(ctx, "127.0.0.1:0")
	}
	return d, err
}

func (m *meterdProc) startOn(ctx context.Context, addr string) (time.Duration, error) {
	t0 := time.Now()
	cmd := exec.Command(m.bin, "-addr", addr, "-db", m.db, "-api-key", m.key)
	killWithParent(cmd)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("starting meterd: %w", err)
	}
	listening := make(chan string, 1)
	exited := make(chan error, 1)
	var own meterdLog // this process's lines, for a failed start
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			m.logs.add(line)
			own.add(line)
			if mm := meterdListeningRE.FindStringSubmatch(line); mm != nil {
				select {
				case listening <- mm[1]:
				default:
				}
			}
		}
		exited <- cmd.Wait()
	}()
	timeout := time.NewTimer(2 * time.Minute)
	defer timeout.Stop()
	select {
	case a := <-listening:
		m.addr = a
		u := "http://" + a
		m.url.Store(&u)
		m.cmd, m.exited = cmd, exited
		m.pid.Store(int64(cmd.Process.Pid))
		m.gen.Add(1)
		return time.Since(t0), nil
	case err := <-exited:
		_, tail := own.snapshot()
		return 0, fmt.Errorf("meterd exited before listening (%v): %s", err, strings.Join(tail, "\n"))
	case <-timeout.C:
	case <-ctx.Done():
	}
	cmd.Process.Kill()
	<-exited
	_, tail := own.snapshot()
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	return 0, fmt.Errorf("meterd did not listen within 2 minutes: %s", strings.Join(tail, "\n"))
}

// kill sends SIGKILL and waits for the process to be gone.
func (m *meterdProc) kill() error {
	if m.cmd == nil {
		return errors.New("meterd is not running")
	}
	m.pid.Store(0)
	err := m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.exited
	m.cmd = nil
	return err
}

// stop sends SIGTERM and waits up to timeout for meterd to exit, then
// kills it. It returns how the process ended: "exit status 0", "exit
// status 1", or "killed after 30s".
func (m *meterdProc) stop(timeout time.Duration) string {
	if m.cmd == nil {
		return "not running"
	}
	m.pid.Store(0)
	defer func() { m.cmd = nil }()
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		<-m.exited
		return "gone before SIGTERM: " + err.Error()
	}
	select {
	case err := <-m.exited:
		if err == nil {
			return "exit status 0"
		}
		return err.Error()
	case <-time.After(timeout):
		m.cmd.Process.Kill()
		<-m.exited
		return fmt.Sprintf("killed after %v without exiting on SIGTERM", timeout)
	}
}

// procRSS returns the resident set size of process pid ("self" for this
// one) from /proc/PID/status, or 0.
func procRSS(pid string) int64 {
	rss, _ := procMemory(pid)
	return rss
}

// procMemory returns VmRSS and RssAnon of process pid from
// /proc/PID/status, in bytes, or zeros. RssAnon leaves out the pages of
// mapped files, such as a database file mapped by bbolt, which VmRSS
// counts once touched.
func procMemory(pid string) (rss, anon int64) {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0, 0
	}
	kb := func(v string) int64 {
		var n int64
		fmt.Sscanf(strings.TrimSpace(v), "%d", &n)
		return n << 10
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			rss = kb(v)
		} else if v, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			anon = kb(v)
		}
	}
	return rss, anon
}
