package dedupe

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
)

func TestReserveBatch(t *testing.T) {
	x := New()
	stored := map[uint64][]string{} // what a journal holds at each location
	confirm := func(ids []string) func(i int, loc uint64) (bool, error) {
		return func(i int, loc uint64) (bool, error) {
			for _, s := range stored[loc] {
				if s == ids[i] {
					return true, nil
				}
			}
			return false, nil
		}
	}
	var ids []string
	for i := range 300 {
		ids = append(ids, fmt.Sprintf("id-%d", i))
	}
	ids = append(ids, "id-7", "id-299") // repeats within the batch
	r := new(Reservation)
	if err := x.ReserveBatch(r, ids, confirm(ids)); err != nil {
		t.Fatal(err)
	}
	ok := r.Reserved
	for i := range ids {
		if want := i < 300; ok[i] != want {
			t.Fatalf("reserved[%d] (%s) = %v, want %v", i, ids[i], ok[i], want)
		}
	}
	// Pending identifiers collide with another batch.
	other := []string{"id-5", "fresh"}
	r2 := new(Reservation)
	x.ReserveBatch(r2, other, confirm(other))
	if !reflect.DeepEqual(r2.Reserved, []bool{false, true}) {
		t.Fatalf("second batch reserved %v, want [false true]", r2.Reserved)
	}
	x.ReleaseBatch(r2)
	stored[1] = ids[:300]
	x.CommitBatch(r, 1)
	if st := x.Stats(); st.Pending != 0 || st.Used != 300 {
		t.Fatalf("after commit: %+v", st)
	}
	// Committed identifiers are found through confirm; released ones are free.
	again := []string{"id-0", "id-150", "fresh", "new"}
	r3 := new(Reservation)
	x.ReserveBatch(r3, again, confirm(again))
	if !reflect.DeepEqual(r3.Reserved, []bool{false, false, true, true}) {
		t.Fatalf("third batch reserved %v", r3.Reserved)
	}
	// An error from confirm leaves nothing reserved.
	boom := errors.New("boom")
	bad := []string{"x1", "x2", "id-3"}
	if err := x.ReserveBatch(new(Reservation), bad, func(int, uint64) (bool, error) { return false, boom }); err != boom {
		t.Fatalf("error %v, want boom", err)
	}
	if r4 := new(Reservation); x.ReserveBatch(r4, []string{"x1", "x2"}, confirm([]string{"x1", "x2"})) != nil || !reflect.DeepEqual(r4.Reserved, []bool{true, true}) {
		t.Fatalf("after a failed batch, reserved %v", r4.Reserved)
	}
}

func TestReserveSmallBatch(t *testing.T) {
	x := New()
	ids := []string{"a", "b", "a"}
	r := new(Reservation)
	err := x.ReserveBatch(r, ids, func(int, uint64) (bool, error) { return false, nil })
	if err != nil || !reflect.DeepEqual(r.Reserved, []bool{true, true, false}) {
		t.Fatalf("reserved %v, %v; want [true true false]", r.Reserved, err)
	}
	x.CommitBatch(r, 1)
	if st := x.Stats(); st.Pending != 0 || st.Used != 2 {
		t.Fatalf("after commit: %+v", st)
	}
}

// A Reservation is reusable whatever made its slices: a detached copy
// (whose slices append made, each rounded up to its own size class)
// reserves a larger batch after Reset.
func TestReservationReuseAfterDetach(t *testing.T) {
	x := New()
	no := func(int, uint64) (bool, error) { return false, nil }
	ids := func(p string, n int) []string {
		s := make([]string, n)
		for i := range s {
			s[i] = fmt.Sprint(p, i)
		}
		return s
	}
	var r Reservation
	if err := x.ReserveBatch(&r, ids("a", 1025), no); err != nil {
		t.Fatal(err)
	}
	c := r
	c.Detach()
	x.ReleaseBatch(&c)
	c.Reset()
	b := ids("b", 1160) // between the two copies' capacities (1152 flags, 1184 hashes)
	if err := x.ReserveBatch(&c, b, no); err != nil {
		t.Fatal(err)
	}
	for i, ok := range c.Reserved {
		if !ok {
			t.Fatalf("identifier %d of a fresh batch not reserved", i)
		}
	}
	if len(c.Reserved) != len(b) {
		t.Fatalf("%d reservations for %d identifiers", len(c.Reserved), len(b))
	}
}
