package meter

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Registry holds the meters of one database. The zero value is not usable;
// call NewRegistry.
//
// Readers load an immutable snapshot with one atomic load. Writers serialize
// on a mutex, build a new snapshot, call the persist hook (still under the
// mutex, so the stored order matches the published order), and publish the
// snapshot only when the hook succeeds.
type Registry struct {
	mu   sync.Mutex // serializes writers
	snap atomic.Pointer[snapshot]
}

// snapshot is never modified after it is published.
type snapshot struct {
	byEvent map[string]*Meter
	byID    map[string]*Meter
	ordered []*Meter // by Seq, oldest first
}

// NewRegistry returns a registry holding copies of ms, which may come from
// storage in any order. It fails when two meters share an id or event name.
func NewRegistry(ms []Meter) (*Registry, error) {
	s := &snapshot{byEvent: map[string]*Meter{}, byID: map[string]*Meter{}}
	for i := range ms {
		m := ms[i]
		if _, dup := s.byID[m.ID]; dup {
			return nil, fmt.Errorf("meter: duplicate meter id %q", m.ID)
		}
		if _, dup := s.byEvent[m.EventName]; dup {
			return nil, fmt.Errorf("meter: duplicate event name %q", m.EventName)
		}
		s.byID[m.ID], s.byEvent[m.EventName] = &m, &m
		s.ordered = append(s.ordered, &m)
	}
	sort.Slice(s.ordered, func(i, j int) bool { return s.ordered[i].Seq < s.ordered[j].Seq })
	r := &Registry{}
	r.snap.Store(s)
	return r, nil
}

// Lookup returns the meter for an event name. The returned meter is shared
// and must not be modified. It is the fast path of ingest: one atomic load
// and one map lookup.
func (r *Registry) Lookup(eventName string) (*Meter, bool) {
	m, ok := r.snap.Load().byEvent[eventName]
	return m, ok
}

// BySeq returns the meter with the given Seq. The returned meter is
// shared and must not be modified.
func (r *Registry) BySeq(seq uint64) (*Meter, bool) {
	s := r.snap.Load()
	// Seqs are dense from 1 (meters are never removed): ordered[seq-1]
	// holds it, unless a stored registry had gaps.
	if seq > 0 && seq <= uint64(len(s.ordered)) && s.ordered[seq-1].Seq == seq {
		return s.ordered[seq-1], true
	}
	i := sort.Search(len(s.ordered), func(i int) bool { return s.ordered[i].Seq >= seq })
	if i < len(s.ordered) && s.ordered[i].Seq == seq {
		return s.ordered[i], true
	}
	return nil, false
}

// Get returns a copy of the meter with the given id.
func (r *Registry) Get(id string) (Meter, error) {
	m, ok := r.snap.Load().byID[id]
	if !ok {
		return Meter{}, notFound(id)
	}
	return *m, nil
}

// Len returns the number of meters.
func (r *Registry) Len() int { return len(r.snap.Load().ordered) }

// All returns copies of every meter, oldest first.
func (r *Registry) All() []Meter {
	s := r.snap.Load()
	out := make([]Meter, len(s.ordered))
	for i, m := range s.ordered {
		out[i] = *m
	}
	return out
}

func notFound(id string) *Error {
	return &Error{Code: CodeResourceMissing, Param: "id", Err: ErrNotFound,
		Message: fmt.Sprintf("No such billing.meter: '%s'", id)}
}

// Create validates p, assigns an id, Seq and timestamps, calls persist with
// the new meter and publishes it if persist returns nil. persist may be nil.
func (r *Registry) Create(p Params, now time.Time, persist func(Meter) error) (Meter, error) {
	return r.CreateWithID(p, "", now, persist)
}

// CreateWithID is Create with the meter's id chosen by the caller; an
// empty id means a new random one. A replicated database uses it to create
// the meter a writer named, with the same id on every replica. It fails
// with ErrEventNameTaken when the event name is used; an id already used
// is a programmer error and panics.
func (r *Registry) CreateWithID(p Params, id string, now time.Time, persist func(Meter) error) (Meter, error) {
	if err := p.Validate(); err != nil {
		return Meter{}, err
	}
	p = p.withDefaults()
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.snap.Load()
	if _, taken := old.byEvent[p.EventName]; taken {
		return Meter{}, &Error{Code: CodeEventNameTaken, Param: "event_name", Err: ErrEventNameTaken,
			Message: fmt.Sprintf("A meter with event_name %q already exists. Each event name can be used by only one meter.", p.EventName)}
	}
	var seq uint64 = 1
	if n := len(old.ordered); n > 0 {
		seq = old.ordered[n-1].Seq + 1
	}
	now = now.Truncate(time.Second).UTC()
	if id != "" && old.byID[id] != nil {
		panic(fmt.Sprintf("meter: CreateWithID with the id %q of an existing meter", id))
	}
	if id == "" {
		id = NewID()
	}
	m := Meter{
		ID: id, Seq: seq, DisplayName: p.DisplayName, EventName: p.EventName,
		Formula: p.Formula, CustomerKey: p.CustomerKey, ValueKey: p.ValueKey,
		EventTimeWindow: p.EventTimeWindow, Status: Active, Created: now, Updated: now,
	}
	for old.byID[m.ID] != nil {
		m.ID = NewID()
	}
	if persist != nil {
		if err := persist(m); err != nil {
			return Meter{}, err
		}
	}
	s := old.clone()
	stored := m
	s.byID[m.ID], s.byEvent[m.EventName] = &stored, &stored
	s.ordered = append(s.ordered, &stored)
	r.snap.Store(s)
	return m, nil
}

// SetDisplayName changes a meter's display name and bumps Updated.
func (r *Registry) SetDisplayName(id, name string, now time.Time, persist func(Meter) error) (Meter, error) {
	switch {
	case name == "":
		return Meter{}, invalid(CodeParameterInvalid, "display_name", "Invalid display_name: must not be empty.")
	case len(name) > MaxDisplayNameLength:
		return Meter{}, tooLong("display_name", MaxDisplayNameLength)
	}
	return r.modify(id, persist, func(m *Meter) bool {
		m.DisplayName = name
		m.Updated = now.Truncate(time.Second).UTC()
		return true
	})
}

// SetStatus deactivates or reactivates a meter. It is idempotent: setting
// the status a meter already has returns it unchanged. Deactivation sets
// DeactivatedAt; reactivation clears it.
func (r *Registry) SetStatus(id string, st Status, now time.Time, persist func(Meter) error) (Meter, error) {
	if st != Active && st != Inactive {
		panic(fmt.Sprintf("meter: SetStatus with invalid status %q", st))
	}
	return r.modify(id, persist, func(m *Meter) bool {
		if m.Status == st {
			return false
		}
		now = now.Truncate(time.Second).UTC()
		m.Status, m.Updated = st, now
		m.DeactivatedAt = time.Time{}
		if st == Inactive {
			m.DeactivatedAt = now
		}
		return true
	})
}

// modify applies change to a copy of meter id and publishes it when change
// reports a change and persist succeeds.
func (r *Registry) modify(id string, persist func(Meter) error, change func(*Meter) bool) (Meter, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.snap.Load()
	cur, ok := old.byID[id]
	if !ok {
		return Meter{}, notFound(id)
	}
	m := *cur
	if !change(&m) {
		return m, nil
	}
	if persist != nil {
		if err := persist(m); err != nil {
			return Meter{}, err
		}
	}
	s := old.clone()
	stored := m
	s.byID[id], s.byEvent[m.EventName] = &stored, &stored
	for i, o := range s.ordered {
		if o.ID == id {
			s.ordered[i] = &stored
		}
	}
	r.snap.Store(s)
	return m, nil
}

func (s *snapshot) clone() *snapshot {
	c := &snapshot{
		byEvent: make(map[string]*Meter, len(s.byEvent)+1),
		byID:    make(map[string]*Meter, len(s.byID)+1),
		ordered: append(make([]*Meter, 0, len(s.ordered)+1), s.ordered...),
	}
	for k, v := range s.byEvent {
		c.byEvent[k] = v
	}
	for k, v := range s.byID {
		c.byID[k] = v
	}
	return c
}

// ListParams select a page of meters, newest first. StartingAfter and
// EndingBefore are meter ids and are mutually exclusive.
type ListParams struct {
	Status        Status // "" for all
	Limit         int    // 1 to 100; 0 means 10
	StartingAfter string
	EndingBefore  string
}

// List returns one page of meters, newest first, and whether more follow in
// the direction of travel (older meters for StartingAfter or no cursor,
// newer ones for EndingBefore).
func (r *Registry) List(p ListParams) (page []Meter, hasMore bool, err error) {
	switch {
	case p.Limit == 0:
		p.Limit = 10
	case p.Limit < 1 || p.Limit > 100:
		return nil, false, invalid(CodeParameterInvalid, "limit", "Invalid limit: must be between 1 and 100.")
	}
	if p.Status != "" && p.Status != Active && p.Status != Inactive {
		return nil, false, invalid(CodeParameterInvalid, "status", "Invalid status: must be one of active or inactive.")
	}
	if p.StartingAfter != "" && p.EndingBefore != "" {
		return nil, false, invalid(CodeParameterExclusive, "starting_after",
			"You may only specify one of these parameters: starting_after, ending_before.")
	}
	s := r.snap.Load()
	// newest first: walk s.ordered backwards.
	var ms []*Meter
	for i := len(s.ordered) - 1; i >= 0; i-- {
		if p.Status == "" || s.ordered[i].Status == p.Status {
			ms = append(ms, s.ordered[i])
		}
	}
	cursorIndex := func(id, param string) (int, error) {
		c, ok := s.byID[id]
		if !ok {
			e := notFound(id)
			e.Param = param
			return 0, e
		}
		// position of the first meter older than the cursor (in newest-first order)
		return sort.Search(len(ms), func(i int) bool { return ms[i].Seq < c.Seq }), nil
	}
	lo, hi := 0, len(ms)
	switch {
	case p.StartingAfter != "":
		if lo, err = cursorIndex(p.StartingAfter, "starting_after"); err != nil {
			return nil, false, err
		}
		if hi > lo+p.Limit {
			hi, hasMore = lo+p.Limit, true
		}
	case p.EndingBefore != "":
		c, ok := s.byID[p.EndingBefore]
		if !ok {
			e := notFound(p.EndingBefore)
			e.Param = "ending_before"
			return nil, false, e
		}
		hi = sort.Search(len(ms), func(i int) bool { return ms[i].Seq <= c.Seq })
		if hi-p.Limit > 0 {
			lo, hasMore = hi-p.Limit, true
		}
	default:
		if hi > p.Limit {
			hi, hasMore = p.Limit, true
		}
	}
	page = make([]Meter, 0, hi-lo)
	for _, m := range ms[lo:hi] {
		page = append(page, *m)
	}
	return page, hasMore, nil
}
