package ublk

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/encblk/encblk/pkg/blockdev"
	"github.com/encblk/encblk/pkg/iouring"
)

// wakeTag is the user data of the eventfd read that wakes a queue's ring
// when workers have results to commit; request tags are below 4096.
const wakeTag = 1 << 32

// queue serves one hardware queue of a ublk device. Its ring lives on one
// OS thread: the kernel takes a queue's commands only from the task that
// fetched them (ubq_daemon), so run locks its goroutine to its thread for
// good, and only that thread enters the ring.
//
// Each tag owns a data buffer (its address goes to the kernel with every
// FETCH and COMMIT_AND_FETCH): the kernel copies a write's data into it
// before completing the fetch, and a read's data out of it when the
// result is committed. A request runs on a worker goroutine, or on the
// ring thread (see run and inline); workers' results come back through
// done, and through an eventfd whose read sits in the ring when the ring
// thread sleeps.
type queue struct {
	id    uint16
	depth int
	cdev  int
	dev   blockdev.Device
	ctx   context.Context // cancelled when the server gives up on waiting I/O
	bufSz int

	descs []ioDesc // the kernel's read-only descriptor array (mmap)
	bufs  []byte   // depth * bufSz, anonymous mmap
	efd   int
	efdB  *[8]byte // the eventfd read's buffer; heap, so it does not move

	// Inline requests (see inline); ring thread only.
	inlineReads, inlineWrites blockdev.InlinePolicy

	// newRing makes the queue's ring (nil: an io_uring; tests give a fake
	// kernel).
	newRing func(entries uint32) (ring, error)
	// refused, if set, hears of the first command the driver refuses (a
	// fetch that will never count towards START_DEV's wait); served, if
	// set, is set at the first request.
	refused chan<- error
	served  *atomic.Bool

	stats queueStats

	mu       sync.Mutex
	done     []completion   // results for the ring thread to commit
	spare    []completion   // the ring thread's previous done, for reuse
	notified bool           // the eventfd is written, its read not reaped yet
	awake    bool           // the ring thread is not waiting in io_uring_enter
	quit     bool           // abandon: leave the ring at the next wake-up
	idle     []chan request // parked workers (see serve)
	ended    bool           // run has returned: workers do not park
}

// ring is what a queue uses of an io_uring (*iouring.Ring).
type ring interface {
	GetSQE() *iouring.SQE
	Cmd(*iouring.SQE) []byte
	Submit() error
	Wait(n uint32) error
	Reap(func(*iouring.CQE)) int
	Close() error
}

type completion struct {
	tag uint16
	res int32
}

func newQueue(id uint16, depth, bufSz, cdev int, dev blockdev.Device, ctx context.Context) (*queue, error) {
	q := &queue{id: id, depth: depth, cdev: cdev, dev: dev, ctx: ctx, bufSz: bufSz, efd: -1, efdB: new([8]byte),
		inlineReads:  blockdev.InlinePolicy{Slow: blockdev.InlineSlow},
		inlineWrites: blockdev.InlinePolicy{Slow: blockdev.InlineSlow}}
	if dev.Info().SerialWrites {
		q.inlineWrites.Slow = blockdev.InlineSlowSerial
	}
	descSz := (depth*int(unsafe.Sizeof(ioDesc{})) + unix.Getpagesize() - 1) &^ (unix.Getpagesize() - 1)
	m, err := unix.Mmap(cdev, int64(id)*cmdBufMax, descSz, unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("ublk: mmap queue %d descriptors: %w", id, err)
	}
	q.descs = unsafe.Slice((*ioDesc)(unsafe.Pointer(&m[0])), depth)
	if q.bufs, err = unix.Mmap(-1, 0, depth*bufSz, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS); err != nil {
		q.close()
		return nil, fmt.Errorf("ublk: queue %d buffers: %w", id, err)
	}
	if err := lockBuffers(q.bufs); err != nil {
		q.close()
		return nil, fmt.Errorf("ublk: queue %d: %w", id, err)
	}
	if q.efd, err = unix.Eventfd(0, unix.EFD_CLOEXEC); err != nil {
		q.close()
		return nil, fmt.Errorf("ublk: queue %d eventfd: %w", id, err)
	}
	return q, nil
}

// ErrMemlock is wrapped by Start's error when the tags' buffers cannot be
// locked in RAM.
var ErrMemlock = errors.New("cannot lock the request buffers in RAM")

// lockBuffers keeps b, which holds plaintext (a write's data before it is
// encrypted, a read's after), out of swap (mlock) and out of core dumps
// (MADV_DONTDUMP). The lock counts against RLIMIT_MEMLOCK unless the
// process has CAP_IPC_LOCK (root has); its error names the limit.
func lockBuffers(b []byte) error {
	if err := unix.Madvise(b, unix.MADV_DONTDUMP); err != nil {
		return fmt.Errorf("madvise(MADV_DONTDUMP): %w", err)
	}
	if err := unix.Mlock(b); err != nil {
		var lim unix.Rlimit
		limit := "unknown"
		if unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim) == nil {
			limit = memlockString(lim.Cur)
		}
		return fmt.Errorf("%w: mlock %d KiB: %v (RLIMIT_MEMLOCK %s without CAP_IPC_LOCK: raise it, e.g. ulimit -l or systemd's LimitMEMLOCK=, or lower the queue depth or count)",
			ErrMemlock, len(b)>>10, err, limit)
	}
	return nil
}

func memlockString(v uint64) string {
	if v == unix.RLIM_INFINITY {
		return "unlimited"
	}
	return fmt.Sprintf("%d KiB", v>>10)
}

func (q *queue) close() {
	if q.descs != nil {
		sz := (q.depth*int(unsafe.Sizeof(ioDesc{})) + unix.Getpagesize() - 1) &^ (unix.Getpagesize() - 1)
		_ = unix.Munmap(unsafe.Slice((*byte)(unsafe.Pointer(&q.descs[0])), sz))
		q.descs = nil
	}
	if q.bufs != nil {
		_ = unix.Munmap(q.bufs)
		q.bufs = nil
	}
	if q.efd >= 0 {
		unix.Close(q.efd)
		q.efd = -1
	}
}

func (q *queue) buf(tag uint16) []byte {
	return q.bufs[int(tag)*q.bufSz : (int(tag)+1)*q.bufSz]
}

// run fetches every tag, reports on fetched (nil, or why it could not),
// then serves requests until the kernel aborts every tag (STOP_DEV, or the
// device going away). The goroutine stays locked to its thread, which
// exits with it: the kernel watches that task.
func (q *queue) run(fetched chan<- error) error {
	runtime.LockOSThread()
	newRing := q.newRing
	if newRing == nil {
		newRing = func(entries uint32) (ring, error) { return iouring.New(entries, 0) }
	}
	ring, err := newRing(uint32(q.depth + 1))
	if err != nil {
		fetched <- fmt.Errorf("ublk: queue %d: %w", q.id, err)
		return err
	}
	defer ring.Close()
	defer q.endWorkers()
	for tag := 0; tag < q.depth; tag++ {
		q.prep(ring, ioFetchReq, uint16(tag), 0)
	}
	q.armWake(ring)
	if err := ring.Submit(); err != nil {
		fetched <- fmt.Errorf("ublk: queue %d: submit FETCH_REQ: %w", q.id, err)
		return err
	}
	fetched <- nil

	var inflight, aborted int
	var served bool
	var quitting bool // abandoned: wait for the requests running, commit nothing
	var failed error
	var fresh []uint16 // the requests of one batch of completions
	// commit queues the results workers handed back; they reach the
	// kernel with the next io_uring_enter, all in one.
	commit := func(done []completion) {
		for _, d := range done {
			inflight--
			if !quitting {
				q.prep(ring, ioCommitFetchReq, d.tag, d.res)
			}
		}
	}
	for {
		// Before sleeping, take what workers finished while this thread
		// was busy: they did not wake it (see serve), and their commits
		// go out with the wait's submission.
		q.mu.Lock()
		done := q.done
		q.done = q.spare[:0]
		q.spare = done
		quitting = q.quit
		q.awake = false
		q.mu.Unlock()
		commit(done)
		if inflight == 0 && (quitting || aborted >= q.depth) {
			break
		}
		q.stats.waits.Add(1)
		if err := ring.Wait(1); err != nil {
			return fmt.Errorf("ublk: queue %d: %w", q.id, err)
		}
		q.mu.Lock()
		q.awake = true
		q.mu.Unlock()
		fresh = fresh[:0]
		ring.Reap(func(c *iouring.CQE) {
			if c.UserData == wakeTag {
				q.stats.wakes.Add(1)
				q.mu.Lock()
				done := q.done
				q.done = q.spare[:0]
				q.spare = done
				quitting = q.quit
				q.notified = false
				q.mu.Unlock()
				commit(done)
				if inflight > 0 || !quitting && aborted < q.depth {
					q.armWake(ring)
				}
				return
			}
			tag := uint16(c.UserData)
			switch {
			case quitting:
			case c.Res == ioResOK:
				fresh = append(fresh, tag)
			case c.Res == ioResAbort:
				aborted++
			default:
				// The driver refused the command (a state error): the tag
				// is dead for this server.
				aborted++
				if failed == nil {
					failed = fmt.Errorf("queue %d tag %d: the driver refused the command: %w", q.id, tag, syscall.Errno(-c.Res))
					if q.refused != nil {
						select {
						case q.refused <- failed:
						default:
						}
					}
				}
			}
		})
		if len(fresh) > 0 && !served && q.served != nil {
			served = true
			q.served.Store(true)
		}
		// The batch's requests that the inline policy leaves to workers
		// are dispatched first, then this thread runs the others itself.
		// (Session 6 tried running at most the batch's last request here
		// and handing the rest to workers: on a quiet host 4 KiB writes
		// then cost 196-203 us of server CPU instead of 123-153 and 0.9
		// context switches instead of 0.1, 0.78-0.80x the IOPS; see
		// bench/README.md.)
		run := fresh[:0]
		for _, tag := range fresh {
			desc := q.descs[tag] // copy: the kernel rewrites it at the next request
			q.stats.requests.Add(1)
			if q.inline(desc) != nil {
				run = append(run, tag)
				continue
			}
			inflight++
			q.dispatch(tag, desc)
		}
		for _, tag := range run {
			desc := q.descs[tag]
			p := q.inline(desc)
			if p == nil { // the policy turned while this batch ran
				inflight++
				q.dispatch(tag, desc)
				continue
			}
			q.stats.inline.Add(1)
			start := time.Now()
			res := handle(q.ctx, q.dev, desc, q.buf(tag))
			p.Record(time.Since(start), desc.NrSectors<<9)
			q.prep(ring, ioCommitFetchReq, tag, res)
		}
	}
	return failed
}

// inlineMaxBytes is the largest read or write the ring thread runs itself.
const inlineMaxBytes = 64 << 10

// inline returns the policy under which the ring thread may run d itself,
// or nil if d goes to a goroutine of its own: reads and writes up to
// inlineMaxBytes, while they are quick; flushes and FUA writes (both wait
// for the disk), trims, zeroing and larger requests never. Inlining saves
// the handoff to a goroutine and the eventfd wake-up back, but holds up
// the queue's other requests while it runs. Unlike pkg/nbd, large writes
// to a device with serial writes are not inlined: a single submitter's
// requests mostly land on one queue (blk-mq maps queues to the submitting
// CPU), and encrypting them on goroutines uses every core.
func (q *queue) inline(d ioDesc) *blockdev.InlinePolicy {
	op := d.OpFlags & 0xff
	if d.OpFlags&ioFlagFUA != 0 || op != opRead && op != opWrite || d.NrSectors<<9 > inlineMaxBytes {
		return nil
	}
	p := &q.inlineReads
	if op == opWrite {
		p = &q.inlineWrites
	}
	if !p.OK() {
		return nil
	}
	return p
}

// prep queues a FETCH_REQ or COMMIT_AND_FETCH_REQ for tag. The ring has
// room for every tag plus the wake read, so GetSQE cannot fail.
func (q *queue) prep(ring ring, nr uint32, tag uint16, res int32) {
	s := ring.GetSQE()
	s.Opcode = iouring.OpUringCmd
	s.Fd = int32(q.cdev)
	s.SetCmdOp(ioOp(nr))
	s.UserData = uint64(tag)
	*(*ioCmd)(unsafe.Pointer(&ring.Cmd(s)[0])) = ioCmd{QID: q.id, Tag: tag, Result: res,
		Addr: uint64(uintptr(unsafe.Pointer(&q.buf(tag)[0])))}
}

func (q *queue) armWake(ring ring) {
	s := ring.GetSQE()
	s.Opcode = iouring.OpRead
	s.Fd = int32(q.efd)
	s.Addr = uint64(uintptr(unsafe.Pointer(&q.efdB[0])))
	s.Len = 8
	s.UserData = wakeTag
}

// serve runs one request on the device and hands its result to the ring's
// thread.
// A worker that finishes parks for the next request unless
// maxIdleWorkers wait already or the queue has ended; the ring's thread
// hands requests to parked workers first. A goroutine per request costs
// its creation and, each time, the growth of its stack through the
// encryption path (runtime.newstack/copystack: about a tenth of the
// server's CPU per 4 KiB request in the test/vm profile); a parked
// worker's stack is grown already.
func (q *queue) serve(tag uint16, d ioDesc) {
	var ch chan request
	for {
		res := handle(q.ctx, q.dev, d, q.buf(tag))
		q.mu.Lock()
		q.done = append(q.done, completion{tag, res})
		// A ring thread that is awake takes the result before it sleeps
		// again; one that sleeps needs the eventfd, once per batch.
		wake := !q.awake && !q.notified
		q.notified = q.notified || wake
		park := !q.ended && len(q.idle) < maxIdleWorkers
		if park {
			if ch == nil {
				ch = make(chan request, 1)
			}
			q.idle = append(q.idle, ch)
		}
		q.mu.Unlock()
		if wake {
			q.writeEventfd()
		}
		if !park {
			return
		}
		r, ok := <-ch
		if !ok {
			return
		}
		tag, d = r.tag, r.d
	}
}

// maxIdleWorkers bounds a queue's parked workers.
const maxIdleWorkers = 32

type request struct {
	tag uint16
	d   ioDesc
}

// dispatch runs a request on a parked worker, or a new one.
func (q *queue) dispatch(tag uint16, d ioDesc) {
	q.mu.Lock()
	if n := len(q.idle); n > 0 {
		ch := q.idle[n-1]
		q.idle = q.idle[:n-1]
		q.mu.Unlock()
		ch <- request{tag, d} // buffered: never blocks
		return
	}
	q.mu.Unlock()
	go q.serve(tag, d)
}

// endWorkers lets the parked workers go once the ring is done.
func (q *queue) endWorkers() {
	q.mu.Lock()
	q.ended = true
	for _, ch := range q.idle {
		close(ch)
	}
	q.idle = nil
	q.mu.Unlock()
}

// abandon makes run return without waiting for the kernel's aborts; its
// ring closes, and the kernel cancels the fetches it holds.
func (q *queue) abandon() {
	q.mu.Lock()
	q.quit = true
	wake := !q.notified
	q.notified = true
	q.mu.Unlock()
	if wake {
		q.writeEventfd()
	}
}

// writeEventfd wakes the ring thread: the eventfd's read completes.
func (q *queue) writeEventfd() {
	one := [8]byte{1}
	for {
		if _, err := unix.Write(q.efd, one[:]); err != unix.EINTR {
			break
		}
	}
}

// handle runs the request d on dev with buf as its data and returns what
// COMMIT_AND_FETCH_REQ reports: the bytes done for reads and writes, 0 for
// the others, or a negated errno.
func handle(ctx context.Context, dev blockdev.Device, d ioDesc, buf []byte) int32 {
	off := int64(d.StartSector) << 9
	n := int64(d.NrSectors) << 9
	fua := d.OpFlags&ioFlagFUA != 0
	var err error
	switch d.OpFlags & 0xff {
	case opRead, opWrite:
		if n > int64(len(buf)) || n == 0 {
			return -int32(unix.EINVAL)
		}
		if d.OpFlags&0xff == opRead {
			err = dev.ReadAt(ctx, buf[:n], off)
		} else {
			err = dev.WriteAt(ctx, buf[:n], off, fua)
		}
		if err == nil {
			return int32(n)
		}
	case opFlush:
		err = dev.Flush(ctx)
	case opDiscard:
		err = dev.Trim(ctx, off, n, fua)
	case opWriteZeroes:
		var f blockdev.ZeroFlags
		if fua {
			f |= blockdev.ZeroFUA
		}
		if d.OpFlags&ioFlagNoUnmap != 0 {
			f |= blockdev.ZeroNoHole
		}
		err = dev.Zero(ctx, off, n, f)
	default:
		return -int32(unix.EOPNOTSUPP)
	}
	if err == nil {
		return 0
	}
	return -int32(errnoOf(err))
}

// errnoOf is the errno an error wraps, EIO if none.
func errnoOf(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) && e != 0 {
		return e
	}
	return unix.EIO
}
