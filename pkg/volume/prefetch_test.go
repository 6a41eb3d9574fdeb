package volume

import (
	"context"
	"errors"
	"syscall"
	"testing"

	"github.com/encblk/encblk/internal/backing"
	"github.com/encblk/encblk/pkg/blockdev"
)

// prefetchRecorder is a backing.File that records what it was asked to
// prefetch.
type prefetchRecorder struct {
	*backing.File
	calls [][2]int64
}

func (p *prefetchRecorder) Prefetch(off, length int64) error {
	p.calls = append(p.calls, [2]int64{off, length})
	return p.File.Prefetch(off, length)
}

// TestPrefetch: a volume prefetches the backing's ciphertext of a range
// (past the data offset), locked or not, through blockdev.ByteGranular as
// the NBD server does (so NBD_CMD_CACHE is offered), and refuses ranges
// outside the volume.
func TestPrefetch(t *testing.T) {
	t.Parallel()
	tv := newTestVolume(t, Config{SectorSize: 4096})
	rec := &prefetchRecorder{File: tv.backing}
	v, err := New(rec, tv.cfg, nil) // locked: no key needed
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	p, ok := blockdev.ByteGranular(v).(blockdev.Prefetcher)
	if !ok {
		t.Fatal("the byte-granular volume is not a blockdev.Prefetcher: NBD would not offer CACHE")
	}
	ctx := context.Background()
	if err := p.Prefetch(ctx, 5000, 10000); err != nil {
		t.Fatal(err)
	}
	// Widened to whole 4096-byte sectors: 4096..16384.
	if want := [2]int64{testDataOffset + 4096, 12288}; len(rec.calls) != 1 || rec.calls[0] != want {
		t.Fatalf("backing prefetches %v, want [%v]", rec.calls, want)
	}
	if err := v.Prefetch(ctx, v.Size()-4096, 8192); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("prefetch past the end: %v, want EINVAL", err)
	}
}
