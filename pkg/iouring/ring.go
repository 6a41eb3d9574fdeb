package iouring

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrUnavailable is wrapped by New's error when the kernel refuses
// io_uring altogether: not built in (CONFIG_IO_URING), disabled by the
// kernel.io_uring_disabled sysctl, or blocked by a seccomp filter (as
// container runtimes' default profiles do).
var ErrUnavailable = errors.New("io_uring is not available")

// Ring is an io_uring instance with its queues mapped into memory.
type Ring struct {
	fd      int
	sqeSize uintptr

	sqRing, cqRing, sqeMem []byte

	// Submission queue: the kernel reads tail and array, advances head.
	sqHead, sqTail, sqMask *uint32
	sqArray                unsafe.Pointer
	sqEntries              uint32
	sqLocalTail            uint32 // entries handed out by GetSQE, not yet published

	// Completion queue: the kernel advances tail, we advance head.
	cqHead, cqTail, cqMask *uint32
	cqes                   unsafe.Pointer
	cqEntries              uint32

	// interrupted counts io_uring_enter calls that returned EINTR and were
	// retried (a test observes it).
	interrupted atomic.Uint64
}

// New sets up a ring with at least entries submission entries (rounded up
// to a power of two by the kernel) and flags (SetupSQE128 or 0).
func New(entries uint32, flags uint32) (*Ring, error) {
	var p params
	p.Flags = flags
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, setupError(errno)
	}
	r := &Ring{fd: int(fd), sqeSize: 64}
	if flags&SetupSQE128 != 0 {
		r.sqeSize = 128
	}
	if err := r.mmap(&p); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// setupError explains why io_uring_setup failed, naming the sysctl when
// it is what refuses.
func setupError(errno syscall.Errno) error {
	switch errno {
	case unix.ENOSYS:
		return fmt.Errorf("%w: io_uring_setup: %v (kernel built without CONFIG_IO_URING, or a seccomp filter blocks it)", ErrUnavailable, errno)
	case unix.EPERM, unix.EACCES:
		why := "a seccomp filter (a container's default profile) or the sysctl kernel.io_uring_disabled"
		if b, err := os.ReadFile("/proc/sys/kernel/io_uring_disabled"); err == nil {
			if v := strings.TrimSpace(string(b)); v != "0" {
				why = "sysctl kernel.io_uring_disabled=" + v + "; 0 enables it"
			}
		}
		return fmt.Errorf("%w: io_uring_setup: %v (%s)", ErrUnavailable, errno, why)
	}
	return fmt.Errorf("io_uring_setup: %w", errno)
}

func (r *Ring) mmap(p *params) error {
	sqSize := uintptr(p.SQOff.Array) + uintptr(p.SQEntries)*4
	cqSize := uintptr(p.CQOff.CQEs) + uintptr(p.CQEntries)*unsafe.Sizeof(CQE{})
	if p.Features&featSingleMmap != 0 && cqSize > sqSize {
		sqSize = cqSize
	}
	var err error
	prot, fl := unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE
	if r.sqRing, err = unix.Mmap(r.fd, offSQRing, int(sqSize), prot, fl); err != nil {
		return fmt.Errorf("io_uring: mmap submission queue: %w", err)
	}
	if p.Features&featSingleMmap != 0 {
		r.cqRing = r.sqRing
	} else if r.cqRing, err = unix.Mmap(r.fd, offCQRing, int(cqSize), prot, fl); err != nil {
		return fmt.Errorf("io_uring: mmap completion queue: %w", err)
	}
	if r.sqeMem, err = unix.Mmap(r.fd, offSQEs, int(uintptr(p.SQEntries)*r.sqeSize), prot, fl); err != nil {
		return fmt.Errorf("io_uring: mmap submission entries: %w", err)
	}
	sq := unsafe.Pointer(&r.sqRing[0])
	r.sqHead = (*uint32)(unsafe.Add(sq, p.SQOff.Head))
	r.sqTail = (*uint32)(unsafe.Add(sq, p.SQOff.Tail))
	r.sqMask = (*uint32)(unsafe.Add(sq, p.SQOff.RingMask))
	r.sqArray = unsafe.Add(sq, p.SQOff.Array)
	r.sqEntries = p.SQEntries
	r.sqLocalTail = atomic.LoadUint32(r.sqTail)
	cq := unsafe.Pointer(&r.cqRing[0])
	r.cqHead = (*uint32)(unsafe.Add(cq, p.CQOff.Head))
	r.cqTail = (*uint32)(unsafe.Add(cq, p.CQOff.Tail))
	r.cqMask = (*uint32)(unsafe.Add(cq, p.CQOff.RingMask))
	r.cqes = unsafe.Add(cq, p.CQOff.CQEs)
	r.cqEntries = p.CQEntries
	return nil
}

// Close unmaps the queues and closes the ring. Requests still in flight
// are cancelled by the kernel.
func (r *Ring) Close() error {
	if r.sqeMem != nil {
		_ = unix.Munmap(r.sqeMem)
	}
	if r.cqRing != nil && (r.sqRing == nil || &r.cqRing[0] != &r.sqRing[0]) {
		_ = unix.Munmap(r.cqRing)
	}
	if r.sqRing != nil {
		_ = unix.Munmap(r.sqRing)
	}
	r.sqeMem, r.cqRing, r.sqRing = nil, nil, nil
	if r.fd < 0 {
		return nil
	}
	err := unix.Close(r.fd)
	r.fd = -1
	return err
}

// Fd is the ring's file descriptor.
func (r *Ring) Fd() int { return r.fd }

// SQEntries is the submission queue's size.
func (r *Ring) SQEntries() uint32 { return r.sqEntries }

// GetSQE returns the next free submission entry, zeroed (all of it, the
// command area of an SQE128 ring included), or nil if the submission queue
// is full: Submit first. The entry goes to the kernel at the next Submit or
// Wait.
func (r *Ring) GetSQE() *SQE {
	head := atomic.LoadUint32(r.sqHead)
	if r.sqLocalTail-head >= r.sqEntries {
		return nil
	}
	idx := r.sqLocalTail & *r.sqMask
	off := uintptr(idx) * r.sqeSize
	clear(r.sqeMem[off : off+r.sqeSize])
	*(*uint32)(unsafe.Add(r.sqArray, uintptr(idx)*4)) = idx
	r.sqLocalTail++
	return (*SQE)(unsafe.Pointer(&r.sqeMem[off]))
}

// Cmd is the command area of s (IORING_OP_URING_CMD's payload): 16 bytes,
// or 80 in a ring set up with SetupSQE128. s must come from r.GetSQE.
func (r *Ring) Cmd(s *SQE) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(&s.cmd[0])), r.sqeSize-48)
}

// pending publishes the entries handed out by GetSQE and returns how many
// the kernel has not consumed yet.
func (r *Ring) pending() uint32 {
	atomic.StoreUint32(r.sqTail, r.sqLocalTail)
	return r.sqLocalTail - atomic.LoadUint32(r.sqHead)
}

// Submit hands every filled entry to the kernel without waiting.
func (r *Ring) Submit() error { return r.enter(0) }

// Wait submits every filled entry and blocks until at least n completions
// are ready to be reaped (n = 0: do not wait).
func (r *Ring) Wait(n uint32) error { return r.enter(n) }

func (r *Ring) enter(minComplete uint32) error {
	for {
		toSubmit := r.pending()
		if toSubmit == 0 && minComplete == 0 {
			return nil
		}
		if minComplete > 0 && r.Ready() >= minComplete && toSubmit == 0 {
			return nil
		}
		var flags uintptr
		if minComplete > 0 {
			flags = enterGetEvents
		}
		_, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit),
			uintptr(minComplete), flags, 0, 0)
		switch errno {
		case 0:
			if minComplete == 0 || r.Ready() >= minComplete {
				return nil
			}
			// Woken with fewer completions than asked (a task_work run):
			// wait again.
		case unix.EINTR:
			r.interrupted.Add(1)
		case unix.EAGAIN, unix.EBUSY:
			// The completion queue is full or the kernel is short of
			// memory: the caller must reap. Report it when the caller
			// would otherwise wait forever.
			if r.Ready() > 0 {
				return nil
			}
			return fmt.Errorf("io_uring_enter: %w", errno)
		default:
			return fmt.Errorf("io_uring_enter: %w", errno)
		}
	}
}

// Ready is the number of completions waiting to be reaped.
func (r *Ring) Ready() uint32 {
	return atomic.LoadUint32(r.cqTail) - atomic.LoadUint32(r.cqHead)
}

// Reap calls f for each completion ready, in order, and frees their
// slots; it returns how many it reaped. f must not keep the pointer.
func (r *Ring) Reap(f func(*CQE)) int {
	head := atomic.LoadUint32(r.cqHead)
	tail := atomic.LoadUint32(r.cqTail)
	n := 0
	for ; head != tail; head++ {
		c := (*CQE)(unsafe.Add(r.cqes, uintptr(head&*r.cqMask)*unsafe.Sizeof(CQE{})))
		f(c)
		n++
	}
	atomic.StoreUint32(r.cqHead, head)
	return n
}
