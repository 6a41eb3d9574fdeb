package nbd

import (
	"testing"
	"time"
)

// TestRefusalLog: the first refusal is logged at once, the next ones at
// most once per interval, each line counting those it stands for.
func TestRefusalLog(t *testing.T) {
	t.Parallel()
	var r refusalLog
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, step := range []struct {
		at   time.Duration
		want int64
	}{
		{0, 1},
		{time.Second, 0},
		{2 * time.Second, 0},
		{refusalLogEvery - time.Nanosecond, 0},
		{refusalLogEvery, 4}, // three held back and this one
		{refusalLogEvery + time.Second, 0},
		{10 * refusalLogEvery, 2},
		{time.Hour, 1},
	} {
		if got := r.note(t0.Add(step.at)); got != step.want {
			t.Errorf("refusal at +%v: line for %d refusals, want %d", step.at, got, step.want)
		}
	}
}
