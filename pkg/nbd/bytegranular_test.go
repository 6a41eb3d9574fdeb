package nbd_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/encblk/encblk/internal/testutil"
	"github.com/encblk/encblk/pkg/blockdev"
	"github.com/encblk/encblk/pkg/nbd"
)

// sectorDevice takes only whole 512-byte sectors, as an encrypted volume
// does, and sleeps after each read, like slow storage, which widens the
// window between a read-modify-write's read and its write.
type sectorDevice struct {
	*fileDevice
	misaligned atomic.Int64
}

const sectorSize = 512

func (d *sectorDevice) Info() blockdev.Info {
	i := allCaps()
	i.LogicalBlockSize = sectorSize
	return i
}

func (d *sectorDevice) check(off, n int64) error {
	if off%sectorSize != 0 || n%sectorSize != 0 {
		d.misaligned.Add(1)
		return fmt.Errorf("%d+%d is not whole sectors: %w", off, n, syscall.EINVAL)
	}
	return nil
}

func (d *sectorDevice) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := d.check(off, int64(len(p))); err != nil {
		return err
	}
	err := d.fileDevice.ReadAt(ctx, p, off)
	time.Sleep(50 * time.Microsecond)
	return err
}

func (d *sectorDevice) WriteAt(ctx context.Context, p []byte, off int64, fua bool) error {
	if err := d.check(off, int64(len(p))); err != nil {
		return err
	}
	return d.fileDevice.WriteAt(ctx, p, off, fua)
}

func (d *sectorDevice) Zero(ctx context.Context, off, n int64, f blockdev.ZeroFlags) error {
	if err := d.check(off, n); err != nil {
		return err
	}
	return d.fileDevice.Zero(ctx, off, n, f)
}

func (d *sectorDevice) Trim(ctx context.Context, off, n int64, fua bool) error {
	if err := d.check(off, n); err != nil {
		return err
	}
	return d.fileDevice.Trim(ctx, off, n, fua)
}

// TestByteGranularConnections serves a sector device through one
// blockdev.ByteGranular to several qemu-io clients at once, each on its
// own connection, each writing 3-byte runs of its own next to the others'
// runs in the same sectors (one run crosses a sector boundary), round
// after round. The runs are disjoint, so each must end holding its
// writer's last round: a read-modify-write that wrote back a stale copy of
// a sector over another connection's write would leave an older round.
// The device must never see a partial sector, and qemu sees a minimum
// block size of 1.
func TestByteGranularConnections(t *testing.T) {
	t.Parallel()
	qemuIO := testutil.RequireTool(t, "qemu-io", "qemu-utils")
	const writers, rounds, slots = 4, 30, 12
	f, path := newFileExport(t, 1<<20, allCaps())
	dev := &sectorDevice{fileDevice: f}
	s := startServer(t, nbd.StaticExports{"": {Device: blockdev.ByteGranular(dev), MultiConn: true}}, nil)
	// Writer w's run in slot k: bytes [b+3w-7, b+3w-4) around the sector
	// boundary b = (k+1)*512; writer 2's crosses it.
	run := func(w, k int) int64 { return int64(k+1)*sectorSize + int64(3*w) - 7 }
	var wg sync.WaitGroup
	errs := make([]error, writers)
	outs := make([][]byte, writers)
	for w := range writers {
		args := []string{"-f", "raw"}
		for r := 1; r <= rounds; r++ {
			for k := range slots {
				args = append(args, "-c", fmt.Sprintf("write -P %d %d 3", r, run(w, k)))
			}
		}
		args = append(args, s.uri(""))
		wg.Go(func() { outs[w], errs[w] = exec.Command(qemuIO, args...).CombinedOutput() })
	}
	wg.Wait()
	for w := range writers {
		if errs[w] != nil {
			t.Fatalf("qemu-io writer %d: %v\n%s", w, errs[w], outs[w])
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for w := range writers {
		for k := range slots {
			off := run(w, k)
			for i := off; i < off+3; i++ {
				if data[i] != rounds {
					t.Fatalf("writer %d slot %d: byte %d holds round %d, want its last round %d (lost update)", w, k, i, data[i], rounds)
				}
			}
		}
	}
	if n := dev.misaligned.Load(); n != 0 {
		t.Fatalf("the sector device received %d partial-sector requests", n)
	}
}
