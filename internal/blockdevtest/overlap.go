package blockdevtest

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/encblk/encblk/pkg/blockdev"
)

// OverlappingWrites runs writers goroutines of rounds writes each, some
// unaligned and some of whole blocks, over the same blocks of d, a
// byte-granular device over blocks of bs bytes (at least 16 of them), and
// checks the result is linearizable: every 2-byte cell holds the id of a
// write that covered it, and no write that covered it started after that
// write had finished. A read-modify-write that wrote back a stale copy of
// its block over a concurrent write (a lost update) leaves an older id;
// mixed data leaves garbage. Run it with -race.
func OverlappingWrites(t *testing.T, d blockdev.Device, bs int64, writers, rounds int) {
	t.Helper()
	ctx := context.Background()
	size := d.Size()
	if err := d.Zero(ctx, 0, size, 0); err != nil {
		t.Fatal(err)
	}
	type op struct {
		off, n     int64
		start, end int64 // logical clock before and after WriteAt
	}
	ops := make([]op, 1+writers*rounds) // id 0: never written
	var clock atomic.Int64
	var wg sync.WaitGroup
	for w := range writers {
		rng := rand.New(rand.NewPCG(uint64(w), uint64(bs)))
		wg.Go(func() {
			p := make([]byte, 2*bs)
			for r := range rounds {
				id := 1 + w*rounds + r
				// Even offsets and lengths: each 2-byte cell holds one id.
				off := 2 * rng.Int64N((size-2*bs)/2)
				n := 2 + 2*rng.Int64N(bs/2)
				if rng.IntN(3) == 0 {
					off, n = off/bs*bs, bs*(1+rng.Int64N(2))
				}
				for i := int64(0); i < n; i += 2 {
					binary.LittleEndian.PutUint16(p[i:], uint16(id))
				}
				o := op{off: off, n: n, start: clock.Add(1)}
				if err := d.WriteAt(ctx, p[:n], off, false); err != nil {
					t.Error(err)
					return
				}
				o.end = clock.Add(1)
				ops[id] = o
			}
		})
	}
	wg.Wait()
	// latestStart[c]: the latest start of any write covering cell c.
	latestStart := make([]int64, size/2)
	for _, o := range ops[1:] {
		for c := o.off / 2; c < (o.off+o.n)/2; c++ {
			latestStart[c] = max(latestStart[c], o.start)
		}
	}
	got := make([]byte, size)
	if err := d.ReadAt(ctx, got, 0); err != nil {
		t.Fatal(err)
	}
	for c := range latestStart {
		id := int(binary.LittleEndian.Uint16(got[2*c:]))
		switch {
		case id == 0 && latestStart[c] == 0:
		case id == 0 || id >= len(ops):
			t.Fatalf("byte %d holds %#x, no write's id (torn block)", 2*c, id)
		case ops[id].off > int64(2*c) || ops[id].off+ops[id].n <= int64(2*c):
			t.Fatalf("byte %d holds the id of a write that did not cover it", 2*c)
		case ops[id].end < latestStart[c]:
			t.Fatalf("byte %d holds write %d, overwritten by a later write (lost update)", 2*c, id)
		}
	}
}
