package nbd

import "testing"

// TestBudget: bytes and request slots are both limits; a batch release
// gives back several requests' worth at once and wakes a waiting reader.
func TestBudget(t *testing.T) {
	t.Parallel()
	b := newBudget(100, 3)
	if got := b.charge(500); got != 100 {
		t.Errorf("charge(500) = %d, want the whole budget, 100", got)
	}
	for _, c := range []struct {
		n    int64
		want bool
	}{
		{40, true},
		{40, true},
		{40, false}, // 20 bytes left
		{10, true},  // the last request slot
		{0, false},  // no slot left
	} {
		if got := b.tryAcquire(c.n); got != c.want {
			t.Fatalf("tryAcquire(%d) = %v, want %v", c.n, got, c.want)
		}
	}

	got := make(chan bool)
	go func() { got <- b.acquire(50, nil) }()
	b.releaseBatch(80, 2) // the two 40-byte requests
	if !<-got {
		t.Fatal("acquire(50) failed after a batch release")
	}
	// Left: 100-10-50 = 40 bytes and one slot.
	if b.tryAcquire(41) {
		t.Fatal("tryAcquire(41) succeeded with 40 bytes left")
	}
	if !b.tryAcquire(40) {
		t.Fatal("tryAcquire(40) failed with 40 bytes and a slot left")
	}
	if b.tryAcquire(0) {
		t.Fatal("tryAcquire(0) succeeded with no slot left")
	}
	b.release(10)
	if !b.tryAcquire(0) {
		t.Fatal("tryAcquire(0) failed after release")
	}

	stop := make(chan struct{})
	close(stop)
	if b.acquire(1, stop) {
		t.Fatal("acquire succeeded with nothing free")
	}
}
