package volume

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/encblk/encblk/internal/backing"
	"github.com/encblk/encblk/pkg/blockdev"
)

// watchedBacking counts reads and writes that reach the backing while the
// test says the volume is locked.
type watchedBacking struct {
	*backing.File
	locked     atomic.Bool
	violations atomic.Int64
	ops        atomic.Int64
}

func (b *watchedBacking) ReadAt(p []byte, off int64) (int, error) {
	b.check()
	return b.File.ReadAt(p, off)
}

func (b *watchedBacking) WriteAt(p []byte, off int64) (int, error) {
	b.check()
	return b.File.WriteAt(p, off)
}

func (b *watchedBacking) check() {
	b.ops.Add(1)
	if b.locked.Load() {
		b.violations.Add(1)
	}
}

// TestLockRacingRequests locks and unlocks a volume over and over while
// goroutines read and write it: no request may reach the backing between
// Lock's return and Unlock (one admitted after Lock began waiting would),
// and every request eventually completes. Run it with -race.
func TestLockRacingRequests(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tv := newTestVolume(t, Config{SectorSize: 512, Size: 64 << 10})
	wb := &watchedBacking{File: tv.backing}
	v, err := New(wb, tv.cfg, newDEK(t, tv.key))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	d := blockdev.ByteGranular(v) // unaligned requests, as over NBD

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := make([]byte, 1000)
			off := int64(g) * 8192
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				var err error
				if i%2 == 0 {
					err = d.WriteAt(ctx, p, off+int64(i%7)*100, false)
				} else {
					err = d.ReadAt(ctx, p, off+int64(i%5)*100)
				}
				if err != nil {
					t.Errorf("request: %v", err)
					return
				}
			}
		}()
	}
	for range 200 {
		if err := v.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		wb.locked.Store(true)
		for range 10 {
			runtime.Gosched()
		}
		wb.locked.Store(false)
		if err := v.Unlock(newDEK(t, tv.key)); err != nil {
			t.Fatal(err)
		}
		runtime.Gosched()
	}
	close(stop)
	wg.Wait()
	if n := wb.violations.Load(); n != 0 {
		t.Errorf("%d reads or writes reached the backing while the volume was locked", n)
	}
	if wb.ops.Load() == 0 {
		t.Error("no request ran")
	}
}
