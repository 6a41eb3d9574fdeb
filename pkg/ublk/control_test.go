package ublk

import (
	"errors"
	"os"
	"syscall"
	"testing"
	"unsafe"

	"github.com/encblk/encblk/pkg/iouring"
)

// TestRunCancelable checks the cancellation START_DEV relies on, on the
// host's io_uring: a read of an empty pipe stands for the control command
// (both wait interruptibly; with IOSQE_ASYNC, like ublk's control
// commands, on a worker thread). Closing stop cancels it; without stop it
// completes with its result; the ring is reusable after either.
func TestRunCancelable(t *testing.T) {
	t.Parallel()
	ring, err := iouring.New(4, iouring.SetupSQE128)
	if errors.Is(err, iouring.ErrUnavailable) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer ring.Close()
	c := &Control{ring: ring}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	buf := new([8]byte)
	read := func(flags uint8) func(*iouring.SQE) {
		return func(s *iouring.SQE) {
			s.Opcode = iouring.OpRead
			s.Flags = flags
			s.Fd = int32(r.Fd())
			s.Addr = uint64(uintptr(unsafe.Pointer(&buf[0])))
			s.Len = uint32(len(buf))
		}
	}
	for _, flags := range []uint8{0, iouring.SQEAsync} {
		stop := make(chan struct{})
		close(stop)
		res, err := c.runCancelable(read(flags), stop)
		if err != nil {
			t.Fatal(err)
		}
		if e := syscall.Errno(-res); res >= 0 || e != syscall.EINTR && e != syscall.ECANCELED {
			t.Fatalf("flags %#x: cancelled read: %d, want -EINTR or -ECANCELED", flags, res)
		}
		if _, err := w.Write([]byte("abc")); err != nil {
			t.Fatal(err)
		}
		res, err = c.runCancelable(read(flags), make(chan struct{}))
		if err != nil || res != 3 || string(buf[:3]) != "abc" {
			t.Fatalf("flags %#x: read: %d %v %q", flags, res, err, buf[:3])
		}
	}
}
