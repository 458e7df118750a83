package deliver

import "testing"

// TestFormatted: each event of a record counts once, whether the record is
// sent again whole, a send stops early, or only the events after a
// rejected one are sent again.
func TestFormatted(t *testing.T) {
	var f formatted
	steps := []struct {
		seq       uint64
		n         int // events in the batch (a suffix of the record)
		wantFresh int
		hi        int // events of the batch formatted by this send
	}{
		{1, 10, 0, 4},  // first send stops after 4 (a failed request)
		{1, 10, 4, 10}, // sent again whole: 4.. are new
		{1, 10, 10, 10},
		{1, 5, 5, 5},  // the suffix after a rejection at 4: nothing new
		{2, 10, 0, 3}, // a new record; formatting stops at an oversize event 3 (dead-lettered)
		{2, 6, 0, 6},  // events 4.. sent: all new
		{2, 6, 6, 6},
	}
	for i, s := range steps {
		if got := f.begin(s.seq, s.n); got != s.wantFresh {
			t.Errorf("step %d: begin(%d, %d) = %d, want %d", i, s.seq, s.n, got, s.wantFresh)
		}
		f.upTo(s.seq, s.n, s.hi)
	}
}
