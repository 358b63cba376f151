package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
)

// The soak's clients and their ledger. Every event the clients create gets
// a number n (its identifier is soakID(n)) and an entry in the ledger,
// which records what the client knows of it: sent and not answered yet,
// acknowledged, or rejected for good; cancelled or not. An event is
// acknowledged when a request carrying it got 200, or when a retry of such
// a request was rejected as duplicate_meter_event (an earlier attempt was
// recorded although its answer was lost). A request that failed without a
// definitive answer (no connection, a reset, a timeout, 409, 429, 5xx) is
// queued and retried with the same identifiers until it gets one.

// soakKind is a kind of client request.
type soakKind int

const (
	kindV1      soakKind = iota // POST /v1/billing/meter_events, one event
	kindV2                      // POST /v2/billing/meter_events, one event
	kindStream                  // POST /v2/billing/meter_event_stream, 100 events
	kindCancel                  // POST /v1/billing/meter_event_adjustments
	kindSummary                 // GET /v1/billing/meters/{id}/event_summaries
	kindDup                     // an acknowledged event or cancel sent again
	kindRetry                   // a failed request sent again
	nKinds
)

var kindNames = [nKinds]string{"v1 events", "v2 events", "stream", "cancels", "summaries", "duplicates", "retries"}

func (k soakKind) String() string { return kindNames[k] }

// soakPhase is what the environment is going through; errors are counted
// per phase.
type soakPhase int32

const (
	phaseSteady   soakPhase = iota // meterd up, disk not full
	phaseOutage                    // meterd killed, not listening again yet
	phaseDiskFull                  // the tmpfs is full
	phaseRecovery                  // space freed, no write acknowledged since
	phaseRestart                   // meterd restarted because writes did not recover
	phaseDrain                     // load stopped, retrying what is unanswered
	phaseFinal                     // after the last restart: probes and the check
	nPhases
)

var phaseNames = [nPhases]string{"steady", "outage", "disk-full", "recovery", "restart", "drain", "final"}

func (p soakPhase) String() string { return phaseNames[p] }

// Ledger states of an event.
const (
	evPending  uint8 = iota // sent, no definitive answer yet
	evAcked                 // acknowledged: counts once
	evRejected              // rejected for good: counts nowhere
)

// Cancel states of an acknowledged event.
const (
	cancelNone    uint8 = iota
	cancelPending       // a cancel was sent, no definitive answer yet
	cancelDone          // cancelled: counts nowhere
)

// soakEvent is the ledger's entry for one event.
type soakEvent struct {
	ts     int64 // unix seconds
	value  int32
	cust   uint16
	meter  uint8
	state  uint8
	cancel uint8
}

// ledger holds every event the clients created, by number. It is safe
// for concurrent use.
type ledger struct {
	mu        sync.Mutex  // guards the fields below
	evs       []soakEvent // by number
	acked     []uint32    // numbers of acknowledged events
	cancelled []uint32    // numbers of cancelled events
}

// soakID is the identifier of event n.
func soakID(n uint32) string { return "soak_" + strconv.FormatUint(uint64(n), 36) }

// add records new pending events and returns the number of the first.
func (l *ledger) add(evs ...soakEvent) uint32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := uint32(len(l.evs))
	l.evs = append(l.evs, evs...)
	return n
}

func (l *ledger) get(n uint32) soakEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.evs[n]
}

// settle moves pending events to state (evAcked or evRejected). Events
// already settled stay as they are.
func (l *ledger) settle(ns []uint32, state uint8) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range ns {
		if l.evs[n].state != evPending {
			continue
		}
		l.evs[n].state = state
		if state == evAcked {
			l.acked = append(l.acked, n)
		}
	}
}

// setCancel sets the cancel state of event n.
func (l *ledger) setCancel(n uint32, c uint8) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c == cancelDone && l.evs[n].cancel != cancelDone {
		l.cancelled = append(l.cancelled, n)
	}
	l.evs[n].cancel = c
}

// pickAcked returns a random acknowledged event.
func (l *ledger) pickAcked(rng *rand.Rand) (uint32, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.acked) == 0 {
		return 0, false
	}
	return l.acked[rng.IntN(len(l.acked))], true
}

// pickCancellable returns a random acknowledged event that is not
// cancelled and has no cancel in flight, and marks its cancel pending.
func (l *ledger) pickCancellable(rng *rand.Rand) (uint32, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for range 16 {
		if len(l.acked) == 0 {
			return 0, false
		}
		n := l.acked[rng.IntN(len(l.acked))]
		if l.evs[n].cancel == cancelNone {
			l.evs[n].cancel = cancelPending
			return n, true
		}
	}
	return 0, false
}

// pickCancelled returns a random cancelled event.
func (l *ledger) pickCancelled(rng *rand.Rand) (uint32, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.cancelled) == 0 {
		return 0, false
	}
	return l.cancelled[rng.IntN(len(l.cancelled))], true
}

// soakReq is a request that creates events or cancels one, kept for its
// retries.
type soakReq struct {
	kind    soakKind // kindV1, kindV2, kindStream or kindCancel
	nums    []uint32 // the events it creates, or the one it cancels
	dups    []uint32 // acknowledged events resent in a stream request
	idem    string   // Idempotency-Key of the first attempt
	attempt int      // 0 for the first attempt
	due     time.Time
}

// retryQueue holds failed requests until they are due again. It is safe
// for concurrent use.
type retryQueue struct {
	mu       sync.Mutex // guards the fields below
	reqs     []*soakReq
	inFlight int
}

func (q *retryQueue) push(r *soakReq) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.reqs = append(q.reqs, r)
}

// pop returns the first due request, marking it in flight, or nil.
func (q *retryQueue) pop(now time.Time) *soakReq {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, r := range q.reqs {
		if !r.due.After(now) {
			q.reqs = slices.Delete(q.reqs, i, i+1)
			q.inFlight++
			return r
		}
	}
	return nil
}

// done ends the flight of a popped request (which may have been pushed
// back).
func (q *retryQueue) done() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.inFlight--
}

// size returns the number of queued and in-flight requests.
func (q *retryQueue) size() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.reqs) + q.inFlight
}

// kindStats counts one kind of request. It is safe for concurrent use.
type kindStats struct {
	ok     atomic.Int64 // requests answered as intended
	failed atomic.Int64 // requests that got anything else
	events atomic.Int64 // events acknowledged by them (fresh ones only)

	mu   sync.Mutex // guards the fields below
	lat  []int64    // latency reservoir, nanoseconds
	seen int64
	rng  *rand.Rand
}

const latencyReservoir = 1 << 16

func (k *kindStats) observe(d time.Duration) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.seen++
	if len(k.lat) < latencyReservoir {
		k.lat = append(k.lat, int64(d))
		return
	}
	if k.rng == nil {
		k.rng = rand.New(rand.NewPCG(1, 2))
	}
	if i := k.rng.Int64N(k.seen); i < latencyReservoir {
		k.lat[i] = int64(d)
	}
}

func (k *kindStats) latencies() []int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.lat)
}

// soakReply is what came back for one request.
type soakReply struct {
	status      int    // 0 when the exchange failed
	typ, code   string // of a Stripe error body
	shouldRetry string // the Stripe-Should-Retry header, if any
	replayed    bool   // Idempotent-Replayed: true
	err         error  // the exchange failed
	body        []byte
}

// retryable reports whether the reply leaves the request's outcome open,
// so that it must be sent again.
func (r soakReply) retryable() bool {
	return r.err != nil || r.status >= 500 || r.status == http.StatusTooManyRequests || r.status == http.StatusConflict
}

// describe names the reply for the error counts: "500 api_error",
// "503 api_error Stripe-Should-Retry: true", "connection refused".
func (r soakReply) describe() string {
	if r.err != nil {
		return netErrorKind(r.err)
	}
	s := strconv.Itoa(r.status)
	if r.code != "" {
		s += " " + r.code
	} else if r.typ != "" {
		s += " " + r.typ
	}
	if r.shouldRetry != "" {
		s += " Stripe-Should-Retry: " + r.shouldRetry
	}
	return s
}

// netErrorKind names a failed exchange.
func netErrorKind(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	case errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "Client.Timeout"):
		return "timeout"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed (EOF)"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	}
	// The innermost message, without addresses: "server closed idle
	// connection", "unexpected EOF".
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return "network error: " + msg
}

// errKey keys the error counts.
type errKey struct {
	phase soakPhase
	kind  soakKind
	what  string
}

// do sends one request to the running meterd with the API key (or session
// token) key.
func (s *soak) do(ctx context.Context, method, path, key string, body []byte, idem string) soakReply {
	ctx, cancel := context.WithTimeout(ctx, s.plan.RequestTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.d.URL()+path, rd)
	if err != nil {
		return soakReply{err: err}
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if body != nil {
		ct := "application/x-www-form-urlencoded"
		if strings.HasPrefix(path, "/v2/") {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	if idem != "" {
		req.Header.Set("Idempotency-Key", idem)
	}
	buf, res, err := httpSend(s.hc, req, nil)
	if err != nil {
		return soakReply{err: err}
	}
	rep := soakReply{status: res.StatusCode, shouldRetry: res.Header.Get("Stripe-Should-Retry"),
		replayed: res.Header.Get("Idempotent-Replayed") == "true", body: buf}
	if res.StatusCode != http.StatusOK {
		var e struct {
			Error struct {
				Type string `json:"type"`
				Code string `json:"code"`
			} `json:"error"`
		}
		if json.Unmarshal(buf, &e) == nil {
			rep.typ, rep.code = e.Error.Type, e.Error.Code
		}
	}
	return rep
}

// countError counts a reply that was not the one intended.
func (s *soak) countError(kind soakKind, rep soakReply) {
	k := errKey{s.phase(), kind, rep.describe()}
	s.errMu.Lock()
	s.errs[k]++
	s.errMu.Unlock()
}

// violation records a failure of exactness seen by a client.
func (s *soak) violation(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.errMu.Lock()
	defer s.errMu.Unlock()
	s.violationCount++
	if len(s.violations) < 50 {
		s.violations = append(s.violations, msg)
	}
}

// anomaly records a valid event or cancel rejected for good: it does not
// count, so the totals can still agree, but usage was refused.
func (s *soak) anomaly(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.errMu.Lock()
	defer s.errMu.Unlock()
	s.anomalyCount++
	if len(s.anomalies) < 50 {
		s.anomalies = append(s.anomalies, msg)
	}
}

// newEvents draws n fresh events, adds them to the ledger as pending and
// returns their numbers.
func (s *soak) newEvents(rng *rand.Rand, zipf *rand.Zipf, n int) []uint32 {
	now := time.Now().Unix()
	evs := make([]soakEvent, n)
	for i := range evs {
		c := rng.IntN(len(s.customers))
		if zipf != nil {
			c = int(zipf.Uint64())
		}
		evs[i] = soakEvent{
			ts: now - rng.Int64N(3600), value: int32(1 + rng.IntN(1000)),
			cust: uint16(c), meter: uint8(rng.IntN(len(s.meters))),
		}
	}
	first := s.led.add(evs...)
	ns := make([]uint32, n)
	for i := range ns {
		ns[i] = first + uint32(i)
	}
	return ns
}

// event returns event n as the clients send it.
func (s *soak) event(n uint32) event.Event {
	e := s.led.get(n)
	return event.Event{
		Name: s.meters[e.meter].EventName, Identifier: soakID(n),
		Payload: map[string]string{
			meter.DefaultCustomerKey: s.customers[e.cust],
			meter.DefaultValueKey:    strconv.Itoa(int(e.value)),
		},
		Timestamp: time.Unix(e.ts, 0).UTC(),
	}
}

// body returns the request body of r, the same bytes on every attempt.
func (s *soak) body(r *soakReq) []byte {
	switch r.kind {
	case kindV1:
		ev := s.event(r.nums[0])
		return httpAppendV1Event(nil, &ev)
	case kindV2:
		ev := s.event(r.nums[0])
		return httpAppendV2Event(nil, &ev)
	case kindStream:
		evs := make([]event.Event, 0, len(r.nums)+len(r.dups))
		for _, n := range r.nums {
			evs = append(evs, s.event(n))
		}
		for _, n := range r.dups {
			evs = append(evs, s.event(n))
		}
		return httpAppendV2Stream(nil, evs)
	case kindCancel:
		e := s.led.get(r.nums[0])
		form := url.Values{"event_name": {s.meters[e.meter].EventName}, "type": {"cancel"},
			"cancel[identifier]": {soakID(r.nums[0])}}
		return []byte(form.Encode())
	}
	panic("bench: no body for " + r.kind.String())
}

var kindPaths = [...]string{
	kindV1: "/v1/billing/meter_events", kindV2: "/v2/billing/meter_events",
	kindStream: "/v2/billing/meter_event_stream", kindCancel: "/v1/billing/meter_event_adjustments",
}

// idemKey returns a fresh Idempotency-Key.
func (s *soak) idemKey() string { return "soak-" + strconv.FormatUint(s.seq.Add(1), 36) }

// send makes one attempt of r and settles what its reply decides; a reply
// that decides nothing queues r again.
func (s *soak) send(ctx context.Context, r *soakReq) {
	statKind := r.kind
	if r.attempt > 0 {
		statKind = kindRetry
	}
	st := &s.stats[statKind]
	key, token := s.d.key, ""
	if r.kind == kindStream {
		var err error
		if token, err = s.sessionToken(ctx); err != nil {
			s.countError(statKind, soakReply{err: err})
			st.failed.Add(1)
			s.requeue(r)
			return
		}
		key = token
	}
	idem := r.idem
	if r.attempt%2 == 0 && r.attempt > 0 {
		// Every other retry comes with a new Idempotency-Key, as from a
		// client that lost the first one: the dedupe index, not the
		// idempotency record, must then keep it from counting twice.
		idem = s.idemKey()
	}
	t0, phase0 := time.Now(), s.phase()
	body := s.body(r)
	s.writesInFlight.Add(1)
	rep := s.do(ctx, http.MethodPost, kindPaths[r.kind], key, body, idem)
	s.writesInFlight.Add(-1)
	st.observe(time.Since(t0))
	if r.kind == kindCancel {
		s.settleCancel(r, rep, st)
		return
	}
	switch {
	case rep.status == http.StatusOK:
		st.ok.Add(1)
		s.led.settle(r.nums, evAcked)
		s.stats[r.kind].events.Add(int64(len(r.nums)))
		s.acked.Add(int64(len(r.nums)))
		s.stats[kindDup].ok.Add(int64(len(r.dups)))
		if r.attempt == 0 {
			s.noteFreshAck(t0, phase0)
		} else if rep.replayed {
			s.retryReplayed.Add(1)
		}
	case rep.status == http.StatusBadRequest && rep.code == "duplicate_meter_event" && r.kind != kindStream:
		if r.attempt == 0 {
			st.failed.Add(1)
			s.violation("%s: the new identifier %s was rejected as duplicate_meter_event", r.kind, soakID(r.nums[0]))
			s.led.settle(r.nums, evRejected)
			return
		}
		// An earlier attempt was recorded; its answer was lost.
		st.ok.Add(1)
		s.led.settle(r.nums, evAcked)
		s.stats[r.kind].events.Add(int64(len(r.nums)))
		s.acked.Add(int64(len(r.nums)))
		s.retryFoundDup.Add(1)
	case rep.status == http.StatusUnauthorized && r.kind == kindStream:
		// An expired or unknown session: nothing was recorded.
		st.failed.Add(1)
		s.countError(statKind, rep)
		s.dropSession(token)
		s.requeue(r)
	case rep.retryable():
		st.failed.Add(1)
		s.countError(statKind, rep)
		s.requeue(r)
	default:
		st.failed.Add(1)
		s.countError(statKind, rep)
		s.led.settle(r.nums, evRejected)
		s.anomaly("%s: valid event %s rejected for good: %s: %s", r.kind, soakID(r.nums[0]), rep.describe(), bytes.TrimSpace(rep.body))
	}
}

func (s *soak) settleCancel(r *soakReq, rep soakReply, st *kindStats) {
	n := r.nums[0]
	switch {
	case rep.status == http.StatusOK:
		st.ok.Add(1)
		s.led.setCancel(n, cancelDone)
		s.cancelledN.Add(1)
		if rep.replayed && r.attempt > 0 {
			s.retryReplayed.Add(1)
		}
	case rep.status == http.StatusBadRequest && rep.code == "meter_event_already_cancelled" && r.attempt > 0:
		// An earlier attempt cancelled it; its answer was lost.
		st.ok.Add(1)
		s.led.setCancel(n, cancelDone)
		s.cancelledN.Add(1)
		s.retryFoundDup.Add(1)
	case rep.retryable():
		st.failed.Add(1)
		s.countError(kindCancel, rep)
		s.requeue(r)
	case rep.status == http.StatusBadRequest && (rep.code == "meter_event_not_found" || rep.code == "meter_event_already_cancelled"):
		st.failed.Add(1)
		s.countError(kindCancel, rep)
		s.led.setCancel(n, cancelNone)
		s.violation("cancel of acknowledged event %s: %s", soakID(n), rep.describe())
	default:
		st.failed.Add(1)
		s.countError(kindCancel, rep)
		s.led.setCancel(n, cancelNone)
		s.anomaly("cancel of %s rejected: %s: %s", soakID(n), rep.describe(), bytes.TrimSpace(rep.body))
	}
}

// requeue schedules the next attempt of r with a capped exponential
// backoff.
func (s *soak) requeue(r *soakReq) {
	r.attempt++
	back := min(5*time.Second, 100*time.Millisecond<<min(r.attempt, 6))
	r.due = time.Now().Add(back)
	s.queue.push(r)
}

// noteFreshAck records that a write sent at t0, in phase p, was
// acknowledged.
func (s *soak) noteFreshAck(t0 time.Time, p soakPhase) {
	ns := t0.UnixNano()
	for {
		cur := s.lastAckSent.Load()
		if ns <= cur || s.lastAckSent.CompareAndSwap(cur, ns) {
			break
		}
	}
	if s.phase() == p {
		s.acksInPhase[p].Add(1)
	}
}

// sessionToken returns the stream's session token, creating a session
// when there is none.
func (s *soak) sessionToken(ctx context.Context) (string, error) {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	if s.token != "" && time.Since(s.tokenAt) < s.plan.SessionRenew {
		return s.token, nil
	}
	rep := s.do(ctx, http.MethodPost, "/v2/billing/meter_event_session", s.d.key, []byte("{}"), s.idemKey())
	if rep.status != http.StatusOK {
		if rep.err != nil {
			return "", rep.err
		}
		return "", fmt.Errorf("meter event session: %s", rep.describe())
	}
	var sess struct {
		Token string `json:"authentication_token"`
	}
	if err := json.Unmarshal(rep.body, &sess); err != nil || sess.Token == "" {
		return "", fmt.Errorf("meter event session without authentication_token: %s", rep.body)
	}
	s.token, s.tokenAt = sess.Token, time.Now()
	s.sessions.Add(1)
	return s.token, nil
}

// dropSession forgets token if it is still the current one.
func (s *soak) dropSession(token string) {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	if s.token == token {
		s.token = ""
	}
}

// sendDup resends an acknowledged event with a new Idempotency-Key, as
// v1 or v2, or cancels a cancelled one again: each must be refused.
func (s *soak) sendDup(ctx context.Context, rng *rand.Rand, i int) {
	st := &s.stats[kindDup]
	if i%8 == 7 {
		n, ok := s.led.pickCancelled(rng)
		if !ok {
			return
		}
		t0 := time.Now()
		rep := s.do(ctx, http.MethodPost, kindPaths[kindCancel], s.d.key, s.body(&soakReq{kind: kindCancel, nums: []uint32{n}}), s.idemKey())
		st.observe(time.Since(t0))
		switch {
		case rep.status == http.StatusBadRequest && rep.code == "meter_event_already_cancelled":
			st.ok.Add(1)
		case rep.status == http.StatusOK:
			st.failed.Add(1)
			s.violation("a second cancel of %s was accepted", soakID(n))
		default:
			st.failed.Add(1)
			s.countError(kindDup, rep)
		}
		return
	}
	n, ok := s.led.pickAcked(rng)
	if !ok {
		return
	}
	kind := kindV1
	if i%2 == 1 {
		kind = kindV2
	}
	t0 := time.Now()
	rep := s.do(ctx, http.MethodPost, kindPaths[kind], s.d.key, s.body(&soakReq{kind: kind, nums: []uint32{n}}), s.idemKey())
	st.observe(time.Since(t0))
	switch {
	case rep.status == http.StatusBadRequest && rep.code == "duplicate_meter_event":
		st.ok.Add(1)
	case rep.status == http.StatusOK:
		st.failed.Add(1)
		s.violation("%s: the acknowledged identifier %s was accepted again", kind, soakID(n))
	default:
		st.failed.Add(1)
		s.countError(kindDup, rep)
	}
}

// sendSummary asks for one customer's summary of one meter over the last
// hours, hourly or as one total.
func (s *soak) sendSummary(ctx context.Context, rng *rand.Rand, zipf *rand.Zipf, i int) {
	c := rng.IntN(len(s.customers))
	if zipf != nil {
		c = int(zipf.Uint64())
	}
	m := s.meterIDs[rng.IntN(len(s.meterIDs))]
	end := time.Now().Truncate(time.Hour).Add(time.Hour)
	q := url.Values{"customer": {s.customers[c]},
		"start_time": {strconv.FormatInt(end.Add(-3*time.Hour).Unix(), 10)}, "end_time": {strconv.FormatInt(end.Unix(), 10)}}
	if i%2 == 1 {
		q.Set("value_grouping_window", "hour")
	}
	st := &s.stats[kindSummary]
	t0 := time.Now()
	rep := s.do(ctx, http.MethodGet, "/v1/billing/meters/"+m+"/event_summaries?"+q.Encode(), s.d.key, nil, "")
	st.observe(time.Since(t0))
	if rep.status == http.StatusOK {
		st.ok.Add(1)
		return
	}
	st.failed.Add(1)
	s.countError(kindSummary, rep)
}

// pace calls fn every interval until stop is closed, catching up after a
// slow call but never by more than a second's worth of calls.
func pace(stop <-chan struct{}, interval time.Duration, fn func(i int)) {
	next := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		fn(i)
		next = next.Add(interval)
		d := time.Until(next)
		if d < -time.Second {
			next = time.Now()
			continue
		}
		if d <= 0 {
			continue
		}
		t.Reset(d)
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// runLoad starts the clients; they run until stop is closed, and the
// returned WaitGroup is done when every one of them has returned.
func (s *soak) runLoad(ctx context.Context, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	rate := float64(s.plan.Rate)
	worker := func(id int, perSec float64, fn func(rng *rand.Rand, zipf *rand.Zipf, i int)) {
		if perSec <= 0 {
			return
		}
		rng := rand.New(rand.NewPCG(s.plan.Seed, uint64(id)))
		var zipf *rand.Zipf
		if s.plan.Skew > 1 && len(s.customers) > 1 {
			zipf = rand.NewZipf(rng, s.plan.Skew, 1, uint64(len(s.customers)-1))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pace(stop, time.Duration(float64(time.Second)/perSec), func(i int) { fn(rng, zipf, i) })
		}()
	}
	// Fresh events: a tenth as v1, a tenth as v2, the rest in stream
	// requests of 100 of which streamDups are resends; 1 % of events are
	// cancelled; intentional duplicates and summaries at 1 % of the rate.
	const v1Workers, v2Workers, streamWorkers = 4, 4, 2
	id := 0
	for range v1Workers {
		id++
		worker(id, rate/10/v1Workers, func(rng *rand.Rand, zipf *rand.Zipf, _ int) {
			s.send(ctx, &soakReq{kind: kindV1, nums: s.newEvents(rng, zipf, 1), idem: s.idemKey()})
		})
	}
	for range v2Workers {
		id++
		worker(id, rate/10/v2Workers, func(rng *rand.Rand, zipf *rand.Zipf, _ int) {
			s.send(ctx, &soakReq{kind: kindV2, nums: s.newEvents(rng, zipf, 1), idem: s.idemKey()})
		})
	}
	for range streamWorkers {
		id++
		worker(id, rate*0.8/(100-streamDups)/streamWorkers, func(rng *rand.Rand, zipf *rand.Zipf, _ int) {
			r := &soakReq{kind: kindStream, nums: s.newEvents(rng, zipf, 100-streamDups), idem: s.idemKey()}
			for range streamDups {
				if n, ok := s.led.pickAcked(rng); ok {
					r.dups = append(r.dups, n)
				}
			}
			s.send(ctx, r)
		})
	}
	id++
	worker(id, rate/100, func(rng *rand.Rand, _ *rand.Zipf, _ int) {
		if n, ok := s.led.pickCancellable(rng); ok {
			s.send(ctx, &soakReq{kind: kindCancel, nums: []uint32{n}, idem: s.idemKey()})
		}
	})
	id++
	worker(id, rate/100, func(rng *rand.Rand, _ *rand.Zipf, i int) { s.sendDup(ctx, rng, i) })
	id++
	worker(id, rate/100, func(rng *rand.Rand, zipf *rand.Zipf, i int) { s.sendSummary(ctx, rng, zipf, i) })
	return &wg
}

// streamDups is how many acknowledged events each stream request resends.
const streamDups = 5

// runRetries starts workers that send queued requests when they are due,
// until quit is closed.
func (s *soak) runRetries(ctx context.Context, quit <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-quit:
					return
				default:
				}
				r := s.queue.pop(time.Now())
				if r == nil {
					select {
					case <-quit:
						return
					case <-time.After(20 * time.Millisecond):
					}
					continue
				}
				s.send(ctx, r)
				s.queue.done()
			}
		}()
	}
	return &wg
}

// probeDuplicates resends a sample of acknowledged events and cancels a
// sample of cancelled ones again after the last restart: each must be
// refused, from the dedupe index and cancellations read back from the
// file.
func (s *soak) probeDuplicates(ctx context.Context) {
	rng := rand.New(rand.NewPCG(s.plan.Seed, 1<<20))
	for i := range 200 {
		s.sendDup(ctx, rng, i)
	}
}
