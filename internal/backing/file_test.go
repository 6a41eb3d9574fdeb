package backing

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/encblk/encblk/internal/testutil"
)

// newSparse creates a sparse file of size bytes in a temp dir.
func newSparse(t *testing.T, size int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "backing")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestOpenFileReadWrite(t *testing.T) {
	t.Parallel()
	for _, direct := range []bool{false, true} {
		t.Run(map[bool]string{false: "buffered", true: "direct"}[direct], func(t *testing.T) {
			path := newSparse(t, 1<<20)
			f, err := Open(path, Options{Direct: direct})
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Size() != 1<<20 || f.IsDevice() || f.BlockSize() != 512 {
				t.Fatalf("size %d device %v block %d", f.Size(), f.IsDevice(), f.BlockSize())
			}
			// An aligned buffer (direct path) and an unaligned one (page cache).
			buf := alignedBuf(8192, 4096)
			for i := range buf {
				buf[i] = byte(i * 7)
			}
			for _, c := range []struct {
				p   []byte
				off int64
			}{{buf, 8192}, {buf[3:1000], 12345}} {
				if _, err := f.WriteAt(c.p, c.off); err != nil {
					t.Fatal(err)
				}
				got := alignedBuf(len(c.p), 4096)
				if _, err := f.ReadAt(got, c.off); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, c.p) {
					t.Fatalf("read back at %d differs", c.off)
				}
			}
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			// Reading past the end is an EIO, not a silent short read.
			_, err = f.ReadAt(make([]byte, 100), 1<<20-50)
			if !errors.Is(err, syscall.EIO) {
				t.Fatalf("read past end: %v, want EIO", err)
			}
		})
	}
}

func alignedBuf(n, align int) []byte {
	b := make([]byte, n+align)
	skip := (align - int(uintptr(unsafe.Pointer(&b[0])))%align) % align
	return b[skip : skip+n : skip+n]
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "missing"), Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Open(dir, Options{}); err == nil {
		t.Errorf("directory accepted")
	}
	if _, err := Open("/dev/null", Options{}); err == nil || !strings.Contains(err.Error(), "neither") {
		t.Errorf("character device: %v", err)
	}
}

func TestLockBusy(t *testing.T) {
	t.Parallel()
	path := newSparse(t, 4096)
	f, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to the open file description, so a second Open in
	// the same process conflicts just like a second server would.
	if _, err := Open(path, Options{ReadOnly: true}); !errors.Is(err, ErrBusy) {
		t.Fatalf("second open: %v, want ErrBusy", err)
	}
	g, err := Open(path, Options{NoLock: true, ReadOnly: true})
	if err != nil {
		t.Fatalf("NoLock open of a locked backing: %v", err)
	}
	g.Close()
	f.Close()
	h, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	h.Close()
}

// TestLockMomentaryHolder: a lock held only for a moment (a prober such as
// `encblk status` of a backing that is not served) does not make Open fail
// as busy; Open waits it out. The holder lets go a millisecond after Open
// began, far inside Open's patience of a second.
func TestLockMomentaryHolder(t *testing.T) {
	t.Parallel()
	path := newSparse(t, 4096)
	probe, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	opened := make(chan error, 1)
	go func() {
		f, err := Open(path, Options{})
		if err == nil {
			f.Close()
		}
		opened <- err
	}()
	time.Sleep(time.Millisecond)
	probe.Close()
	if err := <-opened; err != nil {
		t.Fatalf("open while a prober held the lock a moment: %v", err)
	}
}

func TestReadOnly(t *testing.T) {
	t.Parallel()
	f, err := Open(newSparse(t, 4096), Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{1}, 0); !errors.Is(err, syscall.EPERM) {
		t.Errorf("write: %v, want EPERM", err)
	}
	if err := f.Discard(0, 4096); !errors.Is(err, syscall.EPERM) {
		t.Errorf("discard: %v, want EPERM", err)
	}
}

func TestDiscardAndAllocation(t *testing.T) {
	t.Parallel()
	f, err := Open(newSparse(t, 1<<20), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data := bytes.Repeat([]byte{0xaa}, 256<<10)
	if _, err := f.WriteAt(data, 256<<10); err != nil {
		t.Fatal(err)
	}
	d, end, err := f.Allocation(0)
	if err != nil {
		t.Fatal(err)
	}
	if d || end != 256<<10 {
		t.Skipf("file system does not report holes (data=%v end=%d)", d, end)
	}
	if d, end, _ := f.Allocation(256 << 10); !d || end != 512<<10 {
		t.Fatalf("data run: data=%v end=%d", d, end)
	}
	if d, end, _ := f.Allocation(600 << 10); d || end != 1<<20 {
		t.Fatalf("tail hole: data=%v end=%d", d, end)
	}
	if err := f.Discard(256<<10, 128<<10); err != nil {
		t.Fatal(err)
	}
	if d, end, _ := f.Allocation(256 << 10); d || end != 384<<10 {
		t.Fatalf("after discard: data=%v end=%d", d, end)
	}
	got := make([]byte, 128<<10)
	if _, err := f.ReadAt(got, 256<<10); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, make([]byte, len(got))) {
		t.Fatal("discarded range of a file does not read as zeros")
	}
	if err := f.ZeroRange(384<<10, 4096, false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadAt(got[:4096], 384<<10); err != nil || !bytes.Equal(got[:4096], make([]byte, 4096)) {
		t.Fatalf("zero range: %v", err)
	}
}

// TestBlockDevice opens a loop device with 4096-byte logical blocks and
// checks size and block size come from the kernel.
// loopDevice is a loop device of 8 MiB with 4096-byte sectors over a
// sparse file, detached when the test ends.
func loopDevice(t *testing.T) string {
	t.Helper()
	testutil.RequireRoot(t)
	losetup := testutil.RequireTool(t, "losetup", "mount")
	path := newSparse(t, 8<<20)
	out, err := exec.Command(losetup, "--find", "--show", "--sector-size", "4096", path).CombinedOutput()
	if err != nil {
		if testutil.ToolsRequired() {
			t.Fatalf("losetup: %v: %s", err, out)
		}
		t.Skipf("no loop devices here: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command(losetup, "-d", dev).Run() })
	return dev
}

// Exclusive refuses a block device that is mounted, mapped or claimed
// (here: opened O_EXCL by another descriptor), as cryptsetup's offline
// operations do, with ErrInUse; without Exclusive it opens.
func TestExclusiveBlockDevice(t *testing.T) {
	dev := loopDevice(t)
	holder, err := os.OpenFile(dev, os.O_RDWR|syscall.O_EXCL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if f, err := Open(dev, Options{Exclusive: true, Direct: true}); !errors.Is(err, ErrInUse) {
		if err == nil {
			f.Close()
		}
		t.Fatalf("exclusive open of a claimed device: %v", err)
	}
	if c, err := Claim(dev, os.O_RDWR, 0); !errors.Is(err, ErrInUse) {
		if err == nil {
			c.Close()
		}
		t.Fatalf("Claim of a claimed device: %v", err)
	}
	f, err := Open(dev, Options{})
	if err != nil {
		t.Fatalf("shared open of a claimed device: %v", err)
	}
	f.Close()
	holder.Close()
	f, err = Open(dev, Options{Exclusive: true, Direct: true})
	if err != nil {
		t.Fatalf("exclusive open: %v", err)
	}
	f.Close()
	// A regular file is not claimed: Exclusive changes nothing for it.
	if f, err := Open(newSparse(t, 1<<20), Options{Exclusive: true}); err != nil {
		t.Fatal(err)
	} else {
		f.Close()
	}
}

// Claim refuses a file an encblk server holds (its flock): ErrBusy.
func TestClaimServed(t *testing.T) {
	t.Parallel()
	path := newSparse(t, 1<<20)
	served, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := Claim(path, os.O_RDWR, 0); !errors.Is(err, ErrBusy) {
		if err == nil {
			c.Close()
		}
		t.Fatalf("Claim of a served file: %v", err)
	}
	served.Close()
	c, err := Claim(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestBlockDevice(t *testing.T) {
	dev := loopDevice(t)
	f, err := Open(dev, Options{Direct: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !f.IsDevice() || f.Size() != 8<<20 || f.BlockSize() != 4096 {
		t.Fatalf("device %v size %d block %d", f.IsDevice(), f.Size(), f.BlockSize())
	}
	buf := alignedBuf(4096, 4096)
	for i := range buf {
		buf[i] = byte(i)
	}
	if _, err := f.WriteAt(buf, 4096); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	got := alignedBuf(4096, 4096)
	if _, err := f.ReadAt(got, 4096); err != nil || !bytes.Equal(got, buf) {
		t.Fatalf("device round trip: %v", err)
	}
	if err := f.Discard(0, 1<<20); err != nil && !errors.Is(err, syscall.ENOTSUP) {
		t.Fatalf("BLKDISCARD: %v", err)
	}
	if d, end, err := f.Allocation(0); err != nil || !d || end != f.Size() {
		t.Fatalf("device allocation: %v %d %v", d, end, err)
	}
}
