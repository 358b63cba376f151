package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v85"
)

// vmStatus returns a field of /proc/pid/status in bytes (VmRSS, VmHWM).
func vmStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// TestNonReadingClientsOfBigLists fills meterd with 100 large error reports
// (100 failed events each, about 2.5 MB as one page of GET
// /v2/core/events?limit=100), then opens 300 connections that request that
// page and never read the answer. meterd's peak RSS (VmHWM of the child
// process) stays under 300 MB, and other clients are served meanwhile.
func TestNonReadingClientsOfBigLists(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs meterd")
	}
	dir := t.TempDir()
	bin := buildMeterd(t)
	d := startDaemon(t, bin, filepath.Join(dir, "lists.db"))
	defer d.stop(t)
	ctx := context.Background()
	sc := client(d.addr, "sk_test_e2e")
	sess, err := sc.V2BillingMeterEventSessions.Create(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	stream := client(d.addr, sess.AuthenticationToken)
	for r := range 100 {
		p := &stripe.V2BillingMeterEventStreamCreateParams{}
		for i := range 100 {
			p.Events = append(p.Events, &stripe.V2BillingMeterEventStreamCreateEventParams{
				EventName:  stripe.String(fmt.Sprintf("no_such_meter_%03d_%s", i, strings.Repeat("n", 70))),
				Identifier: stripe.String(fmt.Sprintf("r%03d-e%03d-%s", r, i, strings.Repeat("x", 88))),
				Payload:    map[string]string{"stripe_customer_id": "cus_1", "value": "1"},
			})
		}
		if err := stream.V2BillingMeterEventStreams.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	pid := d.cmd.Process.Pid
	before := vmStatus(t, pid, "VmRSS")

	dialer := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return serr
	}}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 300 {
		c, err := dialer.Dial("tcp", d.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "GET /v2/core/events?limit=100 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk_test_e2e\r\n\r\n")
	}
	time.Sleep(5 * time.Second) // every request is being answered, or stuck writing
	if _, err := sc.V1BillingMeters.Create(ctx, meterParams("during")); err != nil {
		t.Errorf("a client was not served while 300 did not read: %v", err)
	}
	peak := vmStatus(t, pid, "VmHWM")
	t.Logf("meterd RSS %d MB before, peak %d MB with 300 non-reading clients of a %s page",
		before>>20, peak>>20, "limit=100")
	if peak > 300<<20 {
		t.Errorf("meterd peak RSS %d MB, want under 300 MB", peak>>20)
	}
}
