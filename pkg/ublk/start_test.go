package ublk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestStartNoDriver: without ublk_drv, Start fails at once with a line
// that names the module.
func TestStartNoDriver(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat(ControlPath); err == nil {
		t.Skipf("%s exists: this kernel has ublk (the test/vm scenarios cover it)", ControlPath)
	}
	_, err := Start(context.Background(), newMem(1<<20, 512), Options{ID: AutoID})
	if !errors.Is(err, ErrNoDriver) || !strings.Contains(err.Error(), "ublk_drv") {
		t.Fatalf("Start: %v, want ErrNoDriver naming ublk_drv", err)
	}
}

// fakeDriver plays ublk_drv's control side for start: a device of the
// geometry asked for, START_DEV waiting (as the kernel does) until every
// queue's tags are fetched, or until cancelled; STOP_DEV aborting the
// fetches. Each queue's ring is a fakeKernel that refuses the fetch of
// the tags in refuse.
type fakeDriver struct {
	t       *testing.T
	refuse  map[uint16]syscall.Errno
	mu      sync.Mutex
	kernels []*fakeKernel
	calls   []string
}

func (f *fakeDriver) record(c string) {
	f.mu.Lock()
	f.calls = append(f.calls, c)
	f.mu.Unlock()
}

func (f *fakeDriver) DevInfo(id uint32) (DevInfo, error) { return DevInfo{}, unix.ENODEV }
func (f *fakeDriver) AddDev(info DevInfo) (DevInfo, error) {
	f.record("ADD_DEV")
	info.DevID = 7
	return info, nil
}
func (f *fakeDriver) setParams(uint32, params) error { return nil }
func (f *fakeDriver) simple(nr, id uint32, data0 uint64) error {
	f.record(cmdName(nr))
	return nil
}
func (f *fakeDriver) startDev(nr, id uint32, pid uint64, stop <-chan struct{}) error {
	f.record(cmdName(nr))
	// A refused fetch never counts: the kernel waits until interrupted.
	<-stop
	return fmt.Errorf("ublk: %s dev %d: %w", cmdName(nr), id, unix.EINTR)
}
func (f *fakeDriver) StopDev(uint32) error {
	f.record("STOP_DEV")
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range f.kernels {
		select {
		case <-k.abort:
		default:
			close(k.abort)
		}
	}
	return nil
}
func (f *fakeDriver) DelDev(uint32) error { f.record("DEL_DEV"); return nil }
func (f *fakeDriver) Close() error        { return nil }

// openCharDev gives a memfd in place of /dev/ublkcN: the queues mmap
// their descriptor arrays from it.
func (f *fakeDriver) openCharDev(id uint32) (*os.File, error) {
	fd, err := unix.MemfdCreate("ublkc", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	file := os.NewFile(uintptr(fd), "ublkc")
	return file, file.Truncate(4 * cmdBufMax)
}

func (f *fakeDriver) newRing(q *queue, _ uint32) (ring, error) {
	k := newFakeKernel(f.t, q)
	k.refuse = f.refuse
	f.mu.Lock()
	f.kernels = append(f.kernels, k)
	f.mu.Unlock()
	return k, nil
}

// TestStartRefusedFetch: a queue whose fetch the driver refuses would
// leave START_DEV waiting in the kernel forever; the queue reports it,
// START_DEV is cancelled, the device stopped and deleted, and Start
// returns one error that names the refused command.
func TestStartRefusedFetch(t *testing.T) {
	t.Parallel()
	f := &fakeDriver{t: t, refuse: map[uint16]syscall.Errno{2: unix.EINVAL}}
	res := make(chan error, 1)
	go func() {
		_, err := start(context.Background(), f, newMem(1<<20, 512), Options{Queues: 2, Depth: 4, MaxIO: 64 << 10, ID: 7})
		res <- err
	}()
	var err error
	select {
	case err = <-res:
	case <-time.After(5 * time.Minute): // a hang, not a timing: fail instead of waiting for go test's limit
		t.Fatal("start hung on a refused fetch")
	}
	if err == nil {
		t.Fatal("start succeeded with a refused fetch")
	}
	msg := err.Error()
	for _, want := range []string{"START_DEV of /dev/ublkb7 cancelled", "tag 2", "refused", "invalid argument"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if strings.Count(msg, "ublk:") != 1 || strings.Contains(msg, "\n") {
		t.Errorf("error %q: want one line, ublk: once", msg)
	}
	f.mu.Lock()
	calls := strings.Join(f.calls, " ")
	f.mu.Unlock()
	if calls != "ADD_DEV START_DEV STOP_DEV DEL_DEV" {
		t.Errorf("driver saw %q", calls)
	}
}

// TestStartCancelled: cancelling Start's context while START_DEV waits
// cancels the command: Start returns the context's error and removes the
// device.
func TestStartCancelled(t *testing.T) {
	t.Parallel()
	f := &fakeDriver{t: t}
	// No refusal, but START_DEV never returns on its own (the fake waits
	// for cancellation whatever happens).
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() {
		_, err := start(ctx, f, newMem(1<<20, 512), Options{Queues: 1, Depth: 2, MaxIO: 64 << 10, ID: 7})
		res <- err
	}()
	cancel()
	err := <-res
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "START_DEV of /dev/ublkb7 cancelled") {
		t.Fatalf("start: %v, want it cancelled", err)
	}
}
