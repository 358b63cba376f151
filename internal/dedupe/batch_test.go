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
	ok, err := x.ReserveBatch(ids, confirm(ids))
	if err != nil {
		t.Fatal(err)
	}
	for i := range ids {
		if want := i < 300; ok[i] != want {
			t.Fatalf("reserved[%d] (%s) = %v, want %v", i, ids[i], ok[i], want)
		}
	}
	// Pending identifiers collide with another batch.
	other := []string{"id-5", "fresh"}
	if ok2, _ := x.ReserveBatch(other, confirm(other)); !reflect.DeepEqual(ok2, []bool{false, true}) {
		t.Fatalf("second batch reserved %v, want [false true]", ok2)
	}
	x.ReleaseBatch(other, []bool{false, true})
	stored[1] = ids[:300]
	x.CommitBatch(ids, ok, 1)
	if st := x.Stats(); st.Pending != 0 || st.Used != 300 {
		t.Fatalf("after commit: %+v", st)
	}
	// Committed identifiers are found through confirm; released ones are free.
	again := []string{"id-0", "id-150", "fresh", "new"}
	ok3, _ := x.ReserveBatch(again, confirm(again))
	if !reflect.DeepEqual(ok3, []bool{false, false, true, true}) {
		t.Fatalf("third batch reserved %v", ok3)
	}
	// An error from confirm leaves nothing reserved.
	boom := errors.New("boom")
	bad := []string{"x1", "x2", "id-3"}
	if _, err := x.ReserveBatch(bad, func(int, uint64) (bool, error) { return false, boom }); err != boom {
		t.Fatalf("error %v, want boom", err)
	}
	if ok4, _ := x.ReserveBatch([]string{"x1", "x2"}, confirm([]string{"x1", "x2"})); !reflect.DeepEqual(ok4, []bool{true, true}) {
		t.Fatalf("after a failed batch, reserved %v", ok4)
	}
}
