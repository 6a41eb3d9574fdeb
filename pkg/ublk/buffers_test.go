package ublk

import (
	"context"
	"errors"
	"os"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/encblk/encblk/internal/testutil"
)

// newTestQueue makes a queue with newQueue, its "char device" a memfd.
func newTestQueue(t *testing.T, depth, bufSz int) (*queue, error) {
	t.Helper()
	fd, err := unix.MemfdCreate("ublkc", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "ublkc")
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(cmdBufMax); err != nil {
		t.Fatal(err)
	}
	return newQueue(0, depth, bufSz, int(f.Fd()), newMem(1<<20, 512), context.Background())
}

// TestQueueBuffersLocked: the tags' buffers, which hold plaintext, are
// locked in RAM and left out of core dumps.
func TestQueueBuffersLocked(t *testing.T) {
	t.Parallel()
	q, err := newTestQueue(t, 4, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	defer q.close()
	flags := testutil.VmFlags(t, uintptr(unsafe.Pointer(&q.bufs[0])))
	if !flags["lo"] || !flags["dd"] {
		t.Fatalf("buffers' VmFlags %v: want lo (locked) and dd (no dump)", flags)
	}
}

// TestQueueBuffersMemlockLimit: without CAP_IPC_LOCK and with an
// RLIMIT_MEMLOCK below the buffers' size, newQueue fails with ErrMemlock
// and a message naming the limit. The capability is dropped on one
// thread only (capabilities are per thread), which exits with the test's
// goroutine; the limit is process-wide, restored at once, and binds no
// other test's thread while they keep CAP_IPC_LOCK (as root).
func TestQueueBuffersMemlockLimit(t *testing.T) {
	res := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with this goroutine
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var caps [2]unix.CapUserData
		if err := unix.Capget(&hdr, &caps[0]); err != nil {
			res <- err
			return
		}
		caps[0].Effective &^= 1 << unix.CAP_IPC_LOCK
		if err := unix.Capset(&hdr, &caps[0]); err != nil {
			res <- err
			return
		}
		var old unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &old); err != nil {
			res <- err
			return
		}
		if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: 64 << 10, Max: old.Max}); err != nil {
			res <- err
			return
		}
		q, err := newTestQueue(t, 4, 64<<10) // 256 KiB
		if e := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &old); e != nil {
			t.Errorf("restoring RLIMIT_MEMLOCK: %v", e)
		}
		if err == nil {
			q.close()
			err = errors.New("newQueue succeeded")
		}
		res <- err
	}()
	err := <-res
	if !errors.Is(err, ErrMemlock) {
		t.Fatalf("newQueue over RLIMIT_MEMLOCK: %v, want ErrMemlock", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "RLIMIT_MEMLOCK 64 KiB") || !strings.Contains(msg, "256 KiB") {
		t.Fatalf("error %q does not name the limit and the size", msg)
	}
}
