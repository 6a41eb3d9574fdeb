package iouring

import (
	"errors"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// newRing sets up a ring or skips when the host refuses io_uring (a
// container's seccomp profile, kernel.io_uring_disabled): that is the
// environment's choice, and New's error says so.
func newRing(t *testing.T, entries, flags uint32) *Ring {
	t.Helper()
	r, err := New(entries, flags)
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("host: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// TestNop submits more NOPs than the ring holds, in batches, and checks
// that every completion comes back once with its user data, for 64- and
// 128-byte entries.
func TestNop(t *testing.T) {
	t.Parallel()
	for _, flags := range []uint32{0, SetupSQE128} {
		r := newRing(t, 8, flags)
		if got, want := len(r.Cmd(r.GetSQE())), map[uint32]int{0: 16, SetupSQE128: 80}[flags]; got != want {
			t.Fatalf("flags %#x: command area %d bytes, want %d", flags, got, want)
		}
		// The entry above is a zeroed NOP with user data 0.
		seen := map[uint64]int{}
		const total = 100
		next := uint64(1)
		for next <= total || len(seen) < total+1 {
			for next <= total {
				s := r.GetSQE()
				if s == nil {
					break
				}
				s.Opcode = OpNop
				s.UserData = next
				next++
			}
			if err := r.Wait(1); err != nil {
				t.Fatal(err)
			}
			r.Reap(func(c *CQE) {
				if c.Res != 0 {
					t.Errorf("NOP %d: res %d", c.UserData, c.Res)
				}
				seen[c.UserData]++
			})
		}
		for i := uint64(0); i <= total; i++ {
			if seen[i] != 1 {
				t.Errorf("flags %#x: user data %d completed %d times", flags, i, seen[i])
			}
		}
	}
}

// TestSQEFull: GetSQE returns nil once the queue is full of unsubmitted
// entries, and entries again after a Submit.
func TestSQEFull(t *testing.T) {
	t.Parallel()
	r := newRing(t, 4, 0)
	n := 0
	for r.GetSQE() != nil {
		n++
	}
	if n != int(r.SQEntries()) {
		t.Fatalf("got %d entries before full, ring has %d", n, r.SQEntries())
	}
	if err := r.Submit(); err != nil {
		t.Fatal(err)
	}
	if r.GetSQE() == nil {
		t.Fatal("no entry after Submit")
	}
}

// TestWaitRetriesEINTR blocks a locked thread in Wait on an eventfd read,
// interrupts it with signals (SIGURG, which Go's runtime handles, as its
// own preemption does) until an interrupted io_uring_enter was observed,
// then completes the read: Wait must return the completion, not EINTR.
func TestWaitRetriesEINTR(t *testing.T) {
	t.Parallel()
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	tid := make(chan int, 1)
	done := make(chan error, 1)
	buf := make([]byte, 8)
	var r *Ring
	ready := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var err error
		r, err = New(4, 0)
		if err != nil {
			close(ready)
			done <- err
			return
		}
		close(ready)
		s := r.GetSQE()
		s.Opcode = OpRead
		s.Fd = int32(efd)
		s.Addr = uint64(uintptr(unsafe.Pointer(&buf[0])))
		s.Len = 8
		s.UserData = 7
		tid <- unix.Gettid()
		err = r.Wait(1)
		if err == nil {
			r.Reap(func(c *CQE) {
				if c.UserData != 7 || c.Res != 8 {
					err = errors.New("wrong completion")
				}
			})
		}
		done <- err
	}()
	<-ready
	if r == nil {
		if err := <-done; errors.Is(err, ErrUnavailable) {
			t.Skipf("host: %v", err)
		} else {
			t.Fatal(err)
		}
	}
	defer r.Close()
	id := <-tid
	// Kernels that restart an interrupted wait themselves (-ERESTARTSYS
	// under SA_RESTART) never show EINTR: then there is nothing to retry.
	for i := 0; r.interrupted.Load() == 0 && i < 2000; i++ {
		if err := unix.Tgkill(unix.Getpid(), id, unix.SIGURG); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := unix.Write(efd, []byte{1, 0, 0, 0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Wait after %d interruptions: %v", r.interrupted.Load(), err)
	}
	if r.interrupted.Load() == 0 {
		t.Skip("2000 signals never interrupted io_uring_enter with EINTR on this kernel")
	}
	runtime.KeepAlive(buf)
}
