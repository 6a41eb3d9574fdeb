package volume

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"slices"
	"sync"
	"testing"

	"github.com/encblk/encblk/pkg/xts"
)

// rewriteZone does what the reencryptor does to a locked zone [lo, lo+n):
// raw old ciphertext -> plaintext -> new ciphertext, on the backing.
func rewriteZone(t *testing.T, v *testVolume, newKey []byte, lo, n int64) {
	t.Helper()
	oldC, err := xts.New(v.key)
	if err != nil {
		t.Fatal(err)
	}
	defer oldC.Close()
	newC, err := xts.New(newKey)
	if err != nil {
		t.Fatal(err)
	}
	defer newC.Close()
	buf := make([]byte, n)
	if _, err := v.backing.ReadAt(buf, testDataOffset+lo); err != nil {
		t.Fatal(err)
	}
	ss := v.cfg.SectorSize
	if err := oldC.DecryptSectors(buf, buf, ss, uint64(lo)/512, uint64(ss/512)); err != nil {
		t.Fatal(err)
	}
	if err := newC.EncryptSectors(buf, buf, ss, uint64(lo)/512, uint64(ss/512)); err != nil {
		t.Fatal(err)
	}
	if _, err := v.backing.WriteAt(buf, testDataOffset+lo); err != nil {
		t.Fatal(err)
	}
}

// During an online reencryption every request reads back what was
// written, whichever side of the boundary (or both) it falls on; after
// the last zone the volume runs on the new key alone, and the backing
// holds new ciphertext everywhere.
func TestReencryptionRouting(t *testing.T) {
	t.Parallel()
	for _, ss := range []int{512, 4096} {
		const size = 256 << 10
		v := newTestVolume(t, Config{SectorSize: ss, Size: size})
		ctx := context.Background()
		want := make([]byte, size)
		crand.Read(want)
		if err := v.WriteAt(ctx, bytes.Clone(want), 0, false); err != nil {
			t.Fatal(err)
		}
		newKey := make([]byte, 64)
		crand.Read(newKey)
		if err := v.StartReencryption(newDEK(t, newKey), 0); err != nil {
			t.Fatal(err)
		}
		const zone = 48 << 10
		for done := int64(0); done < size; {
			n := min(zone, size-done)
			lo, err := v.LockZone(ctx, n)
			if err != nil || lo != done {
				t.Fatalf("LockZone: %d, %v", lo, err)
			}
			rewriteZone(t, v, newKey, lo, n)
			v.ZoneDone()
			done += n
			// Requests on both sides and across the boundary, with
			// writes of new plaintext in between.
			for _, r := range [][2]int64{{0, size}, {done - int64(ss), 2 * int64(ss)}, {done, int64(ss)}, {0, int64(ss)}} {
				off, n := r[0], r[1]
				if off < 0 || off+n > size {
					continue
				}
				patch := make([]byte, n)
				crand.Read(patch)
				if err := v.WriteAt(ctx, bytes.Clone(patch), off, false); err != nil {
					t.Fatal(err)
				}
				copy(want[off:], patch)
				got := make([]byte, size)
				if err := v.ReadAt(ctx, got, 0); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("ss %d, boundary %d: request %d+%d: data differs", ss, done, off, n)
				}
			}
		}
		if err := v.FinishReencryption(); err != nil {
			t.Fatal(err)
		}
		// The backing holds new ciphertext everywhere.
		raw := make([]byte, size)
		if _, err := v.backing.ReadAt(raw, testDataOffset); err != nil {
			t.Fatal(err)
		}
		c, _ := xts.New(newKey)
		if err := c.DecryptSectors(raw, raw, ss, 0, uint64(ss/512)); err != nil {
			t.Fatal(err)
		}
		c.Close()
		if !bytes.Equal(raw, want) {
			t.Fatalf("ss %d: backing is not under the new key", ss)
		}
	}
}

// A write in flight over the next zone keeps LockZone waiting; a write
// that arrives while the zone is hot waits for ZoneDone and then goes to
// the new key. Order is checked through an event log, not through time.
func TestReencryptionHotZoneExcludesWrites(t *testing.T) {
	t.Parallel()
	v := newTestVolume(t, Config{SectorSize: 4096, Size: 64 << 10})
	ctx := context.Background()
	newKey := make([]byte, 64)
	crand.Read(newKey)
	if err := v.StartReencryption(newDEK(t, newKey), 0); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var events []string
	logEv := func(s string) { mu.Lock(); events = append(events, s); mu.Unlock() }

	// Request A is in flight inside the future zone: it holds its span
	// until released.
	r := v.router()
	a, _, err := r.enter(ctx, 8192, 4096)
	if err != nil {
		t.Fatal(err)
	}
	locked := make(chan struct{})
	go func() {
		if _, err := v.LockZone(ctx, 32<<10); err != nil {
			t.Error(err)
		}
		logEv("zone locked")
		close(locked)
	}()
	logEv("A done")
	r.leave(a)
	<-locked

	// Request B arrives while the zone is hot.
	bDone := make(chan struct{})
	go func() {
		p := bytes.Repeat([]byte{0xb}, 4096)
		if err := v.WriteAt(ctx, p, 4096, false); err != nil {
			t.Error(err)
		}
		logEv("B written")
		close(bDone)
	}()
	rewriteZone(t, v, newKey, 0, 32<<10)
	logEv("zone done")
	v.ZoneDone()
	<-bDone
	mu.Lock()
	got := append([]string(nil), events...)
	mu.Unlock()
	if want := []string{"A done", "zone locked", "zone done", "B written"}; !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	// B went to the new key: the raw sector decrypts with it.
	raw := make([]byte, 4096)
	if _, err := v.backing.ReadAt(raw, testDataOffset+4096); err != nil {
		t.Fatal(err)
	}
	c, _ := xts.New(newKey)
	defer c.Close()
	c.DecryptSectors(raw, raw, 4096, 4096/512, 8)
	if !bytes.Equal(raw, bytes.Repeat([]byte{0xb}, 4096)) {
		t.Fatal("the write that waited for the hot zone is not under the new key")
	}
	// Locking wipes the new key; unlocking with the old one alone is refused.
	if err := v.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := v.Unlock(newDEK(t, v.key)); err == nil {
		t.Fatal("unlock with the old key after a lock during reencryption succeeded")
	}
}
