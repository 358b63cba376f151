package stripeapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/stripeapi/internal/wire"
)

// idemNamespace is the DB key-value namespace of idempotency records.
const idemNamespace = "stripeapi.idempotency"

// idempotency replays the responses of POST requests that carry an
// Idempotency-Key. Records live in the DB's key-value area (the same file as the
// events), keyed by caller scope and key, for ttl. A key is in flight from
// the moment its request passed validation until its response is stored;
// a second request with it meanwhile gets 409 idempotency_key_in_use, or,
// once the response is known but still being stored (idemAsync routes),
// the replay. It is safe for concurrent use.
type idempotency struct {
	db  *meterdb.DB
	ttl time.Duration

	mu sync.Mutex // guards inflight
	// inflight holds the keys being executed (nil) or whose record is
	// being stored (the record).
	inflight map[string]*idemRecord
}

// idemRecord is what the key-value area stores for one key.
type idemRecord struct {
	Fingerprint string `json:"f"` // of method, path and parameters
	Status      int    `json:"s"`
	Body        []byte `json:"b"`
}

func newIdempotency(db *meterdb.DB, ttl time.Duration) *idempotency {
	return &idempotency{db: db, ttl: ttl, inflight: map[string]*idemRecord{}}
}

// do executes run at most once per (caller, key, parameters) within the
// record's lifetime: a repeat with the same parameters replays the stored
// status and body, a repeat with other parameters (or another endpoint)
// gets idempotency_error. Responses with status 409, 429 or 5xx are not
// stored: they report that nothing was done, so a retry may do it. For a
// route with idemAsync the record is stored after the response is sent
// (see route.idemAsync); a crash in between loses only the replay.
func (s *idempotency) do(c *call, run execFunc) response {
	k := c.key.scope + "/" + c.idemKey
	fp := fingerprint(c)
	s.mu.Lock()
	if rec, busy := s.inflight[k]; busy {
		s.mu.Unlock()
		if rec != nil {
			return s.replay(c, rec, fp)
		}
		e := wire.InvalidRequest(http.StatusConflict, codeIdempotencyKeyInUse, "",
			"There is currently another in-progress request using this idempotency key. Retry once it completes.")
		retry := true
		e.Retry = &retry
		return c.errorResponse(e)
	}
	s.inflight[k] = nil
	s.mu.Unlock()
	release := func() {
		s.mu.Lock()
		delete(s.inflight, k)
		s.mu.Unlock()
	}
	async := false // set when a goroutine took over storing the record
	defer func() {
		if !async {
			release()
		}
	}()

	ctx := c.r.Context()
	raw, ok, err := s.db.GetKV(ctx, idemNamespace, k)
	if err != nil {
		return c.errorResponse(err)
	}
	if ok {
		var rec idemRecord
		if err := json.Unmarshal(raw, &rec); err == nil && rec.Status != 0 {
			return s.replay(c, &rec, fp)
		}
		// An unreadable record (from an incompatible version) is treated
		// as absent; one without a status is another replica's claim,
		// which claim below waits on.
	}
	claimed := false
	if s.db.Replicated() {
		// Other processes serve the same keys: the first claim of the key
		// in the shared log's order executes the request, everywhere.
		res, won := s.claim(c, k, fp)
		if !won {
			return res
		}
		claimed = true
	}
	c.idem = func(v any) (meterdb.KVWrite, error) {
		body, err := encodeBody(v)
		if err != nil {
			return meterdb.KVWrite{}, err
		}
		enc, _ := json.Marshal(&idemRecord{Fingerprint: fp, Status: http.StatusOK, Body: body})
		return meterdb.KVWrite{Namespace: idemNamespace, Key: k, Value: enc, Expires: c.now.Add(s.ttl)}, nil
	}
	res := c.execute(run)
	if c.idemStored && res.status < 400 {
		return res // the record was committed with the events
	}
	if res.status >= 400 {
		// A rejection (validation, a rule such as no_meter, 409, 429) or
		// a failure: nothing was done, so the key stays free for the
		// corrected request.
		if claimed {
			s.db.DeleteKV(context.WithoutCancel(ctx), idemNamespace, k)
		}
		return res
	}
	rec := &idemRecord{Fingerprint: fp, Status: res.status, Body: res.body}
	enc, _ := json.Marshal(rec)
	store := func(ctx context.Context) {
		if err := s.db.PutKV(ctx, idemNamespace, k, enc, c.now.Add(s.ttl)); err != nil && !errors.Is(err, meterdb.ErrClosed) {
			// The work is done; the client hears about it. Only a replay of
			// this key is lost, which the engine's identifier dedupe covers
			// for meter events.
			c.h.log.LogAttrs(ctx, slog.LevelError, "storing idempotency record",
				slog.String("request_id", c.id), slog.Any("error", err))
		}
	}
	// With a claim, the record replaces it before the response leaves, so
	// that a replica waiting on the claim finds it.
	if c.rt.idemAsync && !claimed {
		// The key stays in flight, with its response, until the record
		// is stored, so a repeat meanwhile gets the replay rather than a
		// second execution.
		async = true
		s.mu.Lock()
		s.inflight[k] = rec
		s.mu.Unlock()
		go func() {
			defer release()
			store(context.WithoutCancel(ctx))
		}()
		return res
	}
	store(ctx)
	return res
}

// replay returns the stored response rec, or idempotency_error when the
// request's fingerprint fp differs from the first one's.
func (s *idempotency) replay(c *call, rec *idemRecord, fp string) response {
	if rec.Fingerprint != fp {
		return c.errorResponse(&apiError{Status: http.StatusBadRequest, Type: typeIdempotency, Message: "Keys for " +
			"idempotent requests can only be used with the same parameters they were first used with. Try using " +
			"a key other than '" + c.idemKey + "' if you meant to execute a different request."})
	}
	return response{status: rec.Status, body: rec.Body, replayed: true}
}

// fingerprint identifies a request's method, path and parameters.
func fingerprint(c *call) string {
	h := sha256.New()
	h.Write([]byte(c.r.Method))
	h.Write([]byte{0})
	h.Write([]byte(c.r.URL.EscapedPath()))
	h.Write([]byte{0})
	h.Write(c.params())
	return hex.EncodeToString(h.Sum(nil))
}

// params returns the canonical encoding of c's parameters.
func (c *call) params() []byte {
	if c.canonical == nil && c.formRoot != nil {
		c.canonical = c.formRoot.Canonical()
	}
	return c.canonical
}

// derivedIdentifier returns a meter event identifier derived from the
// caller and Idempotency-Key of c, for events sent without one: a retry
// whose idempotency record was lost (a crash between recording the event
// and storing the record) then meets the engine's dedupe instead of
// counting twice.
func derivedIdentifier(c *call) string {
	sum := sha256.Sum256([]byte(c.key.scope + "\x00" + c.idemKey))
	return "mev_" + hex.EncodeToString(sum[:12])
}

// claimWait is how long a request waits for another replica's execution of
// its Idempotency-Key before it answers idempotency_key_in_use.
const claimWait = 10 * time.Second

// claim claims key k for the request c (fingerprint fp) in a replicated
// database. It reports true when c is to execute; otherwise it returns
// the response to send: the replay of the execution of another process,
// once its record is stored, or 409 idempotency_key_in_use.
func (s *idempotency) claim(c *call, k, fp string) (response, bool) {
	ctx := c.r.Context()
	// A claim that its process never completed (it crashed) frees the key
	// after claimWait.
	pending, _ := json.Marshal(&idemRecord{Fingerprint: fp})
	cur, won, err := s.db.ClaimKV(ctx, idemNamespace, k, pending, c.now.Add(claimWait))
	if err != nil {
		return c.errorResponse(err), false
	}
	if won {
		return response{}, true
	}
	deadline := time.Now().Add(claimWait)
	for {
		var rec idemRecord
		if json.Unmarshal(cur, &rec) == nil && rec.Status != 0 {
			return s.replay(c, &rec, fp), false
		}
		if rec.Fingerprint != fp && cur != nil {
			return s.replay(c, &rec, fp), false // idempotency_error
		}
		if cur == nil || time.Now().After(deadline) {
			break // the other request failed and freed the key, or is slow
		}
		select {
		case <-ctx.Done():
			return c.errorResponse(ctx.Err()), false
		case <-time.After(20 * time.Millisecond):
		}
		if err := s.db.WaitApplied(ctx); err != nil {
			return c.errorResponse(err), false
		}
		var ok bool
		if cur, ok, err = s.db.GetKV(ctx, idemNamespace, k); err != nil {
			return c.errorResponse(err), false
		} else if !ok {
			cur = nil
		}
	}
	e := wire.InvalidRequest(http.StatusConflict, codeIdempotencyKeyInUse, "",
		"There is currently another in-progress request using this idempotency key. Retry once it completes.")
	retry := true
	e.Retry = &retry
	return c.errorResponse(e), false
}
