package ublk

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/encblk/encblk/pkg/blockdev"
	"github.com/encblk/encblk/pkg/iouring"
)

// fakeKernel plays ublk_drv's part of one queue's ring for queue.run:
// it takes FETCH_REQ and COMMIT_AND_FETCH_REQ commands, hands injected
// requests to fetched tags (writing the descriptor and, for a write, the
// data into the tag's buffer as the kernel does before completing the
// fetch), copies a read's data out of the buffer at its commit, completes
// the eventfd read when the eventfd is written, and on abort completes
// every fetched tag with UBLK_IO_RES_ABORT, as STOP_DEV does.
type fakeKernel struct {
	t       *testing.T
	q       *queue
	sqes    []*iouring.SQE
	cqes    []iouring.CQE
	active  map[uint16]bool   // fetched, waiting for a request
	owned   map[uint16]fakeRq // handed to the server
	inject  chan fakeRq
	burst   chan []fakeRq // requests completed in one batch of CQEs
	results chan fakeResult
	abort   chan struct{}
	aborted bool
	wake    chan struct{}
	armed   bool
	refuse  map[uint16]syscall.Errno // fetches completed at once with this error
}

type fakeRq struct {
	d    ioDesc
	data []byte // a write's payload
}

type fakeResult struct {
	rq   fakeRq
	res  int32
	data []byte // a read's data, as the kernel copies it at the commit
}

func newFakeKernel(t *testing.T, q *queue) *fakeKernel {
	k := &fakeKernel{t: t, q: q, active: map[uint16]bool{}, owned: map[uint16]fakeRq{},
		inject: make(chan fakeRq), burst: make(chan []fakeRq), results: make(chan fakeResult, 64), abort: make(chan struct{}),
		wake: make(chan struct{}, 1)}
	q.newRing = func(uint32) (ring, error) { return k, nil }
	return k
}

func (k *fakeKernel) GetSQE() *iouring.SQE {
	s := new(iouring.SQE)
	k.sqes = append(k.sqes, s)
	return s
}

func (k *fakeKernel) Cmd(s *iouring.SQE) []byte {
	return unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(s), 48)), 16)
}

func (k *fakeKernel) Close() error { return nil }

func (k *fakeKernel) Submit() error {
	for _, s := range k.sqes {
		switch s.Opcode {
		case iouring.OpRead:
			if s.Fd != int32(k.q.efd) || s.UserData != wakeTag || s.Len != 8 || k.armed {
				k.t.Errorf("bad wake read %+v (armed %v)", *s, k.armed)
			}
			k.armed = true
			efd := k.q.efd
			go func() {
				var b [8]byte
				for {
					if _, err := unix.Read(efd, b[:]); err != unix.EINTR {
						break
					}
				}
				k.wake <- struct{}{}
			}()
		case iouring.OpUringCmd:
			c := *(*ioCmd)(unsafe.Pointer(&k.Cmd(s)[0]))
			if s.Fd != int32(k.q.cdev) || c.QID != k.q.id || uint64(c.Tag) != s.UserData ||
				c.Addr != uint64(uintptr(unsafe.Pointer(&k.q.buf(c.Tag)[0]))) {
				k.t.Errorf("bad command %+v %+v", *s, c)
			}
			switch uint32(s.Off) {
			case ioOp(ioFetchReq):
				if k.active[c.Tag] {
					k.t.Errorf("tag %d fetched twice", c.Tag)
				}
			case ioOp(ioCommitFetchReq):
				rq, ok := k.owned[c.Tag]
				if !ok {
					k.t.Errorf("tag %d committed but not owned", c.Tag)
				}
				delete(k.owned, c.Tag)
				r := fakeResult{rq: rq, res: c.Result}
				if rq.d.OpFlags&0xff == opRead && c.Result > 0 {
					r.data = bytes.Clone(k.q.buf(c.Tag)[:c.Result])
				}
				k.results <- r
			default:
				k.t.Errorf("unknown command op %#x", uint32(s.Off))
			}
			if e := k.refuse[c.Tag]; e != 0 {
				k.cqes = append(k.cqes, iouring.CQE{UserData: uint64(c.Tag), Res: -int32(e)})
			} else if k.aborted {
				k.cqes = append(k.cqes, iouring.CQE{UserData: uint64(c.Tag), Res: ioResAbort})
			} else {
				k.active[c.Tag] = true
			}
		default:
			k.t.Errorf("unexpected opcode %d", s.Opcode)
		}
	}
	k.sqes = k.sqes[:0]
	return nil
}

func (k *fakeKernel) Wait(n uint32) error {
	k.Submit()
	for uint32(len(k.cqes)) < n {
		var inject chan fakeRq
		var burst chan []fakeRq
		if len(k.active) > 0 {
			inject, burst = k.inject, k.burst
		}
		select {
		case rq := <-inject:
			k.hand(rq)
		case rqs := <-burst:
			if len(rqs) > len(k.active) {
				k.t.Fatalf("burst of %d requests, %d tags fetched", len(rqs), len(k.active))
			}
			for _, rq := range rqs {
				k.hand(rq)
			}
		case <-k.wake:
			k.armed = false
			k.cqes = append(k.cqes, iouring.CQE{UserData: wakeTag, Res: 8})
		case <-k.abort:
			k.abort = nil
			k.aborted = true
			for t := range k.active {
				k.cqes = append(k.cqes, iouring.CQE{UserData: uint64(t), Res: ioResAbort})
			}
			clear(k.active)
		}
	}
	return nil
}

// hand gives rq to the lowest fetched tag and queues its completion.
func (k *fakeKernel) hand(rq fakeRq) {
	tags := make([]int, 0, len(k.active))
	for t := range k.active {
		tags = append(tags, int(t))
	}
	sort.Ints(tags)
	tag := uint16(tags[0])
	delete(k.active, tag)
	k.owned[tag] = rq
	rq.d.Addr = uint64(uintptr(unsafe.Pointer(&k.q.buf(tag)[0])))
	k.q.descs[tag] = rq.d
	copy(k.q.buf(tag), rq.data)
	k.cqes = append(k.cqes, iouring.CQE{UserData: uint64(tag), Res: ioResOK})
}

func (k *fakeKernel) Reap(f func(*iouring.CQE)) int {
	n := len(k.cqes)
	for i := range k.cqes {
		f(&k.cqes[i])
	}
	k.cqes = k.cqes[:0]
	return n
}

// TestQueueFakeKernel drives queue.run with a fake kernel: more requests
// than tags, some run on the ring thread and some on goroutines (the
// inline policies' slow mark is negative, so they inline the first of each
// kind and then back off), each committed once with its result, reads returning
// what was written, a failing device committing -errno, and STOP_DEV's
// aborts ending the loop.
func TestQueueFakeKernel(t *testing.T) {
	t.Parallel()
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	const depth, bufSz = 4, 64 << 10
	m := newMem(1<<20, 512)
	q := &queue{id: 3, depth: depth, cdev: 42, dev: m, ctx: context.Background(), bufSz: bufSz,
		descs: make([]ioDesc, depth), bufs: make([]byte, depth*bufSz), efd: efd, efdB: new([8]byte),
		// A negative slow mark: every recorded inline request counts as
		// slow, so the first read and the first write run inline and the
		// rest on goroutines, whatever the timing.
		inlineReads: blockdev.InlinePolicy{Slow: -1}, inlineWrites: blockdev.InlinePolicy{Slow: -1}}
	k := newFakeKernel(t, q)
	fetched := make(chan error, 1)
	done := make(chan error, 1)
	go func() { done <- q.run(fetched) }()
	if err := <-fetched; err != nil {
		t.Fatal(err)
	}

	// Sixteen 4 KiB writes of distinct data, then reads of each.
	const n = 16
	want := map[uint64][]byte{}
	go func() {
		for i := uint64(0); i < n; i++ {
			data := bytes.Repeat([]byte{byte(i + 1)}, 4096)
			k.inject <- fakeRq{d: ioDesc{OpFlags: opWrite, NrSectors: 8, StartSector: i * 8}, data: data}
		}
	}()
	for i := 0; i < n; i++ {
		r := <-k.results
		if r.res != 4096 {
			t.Fatalf("write %+v: result %d", r.rq.d, r.res)
		}
		want[r.rq.d.StartSector] = r.rq.data
	}
	go func() {
		for i := uint64(0); i < n; i++ {
			k.inject <- fakeRq{d: ioDesc{OpFlags: opRead, NrSectors: 8, StartSector: i * 8}}
		}
	}()
	for i := 0; i < n; i++ {
		r := <-k.results
		if r.res != 4096 || !bytes.Equal(r.data, want[r.rq.d.StartSector]) {
			t.Fatalf("read %+v: result %d, data differs: %v", r.rq.d, r.res, !bytes.Equal(r.data, want[r.rq.d.StartSector]))
		}
	}

	m.mu.Lock()
	m.err = fmt.Errorf("disk gone: %w", syscall.EROFS)
	m.mu.Unlock()
	go func() { k.inject <- fakeRq{d: ioDesc{OpFlags: opFlush}} }()
	if r := <-k.results; r.res != -int32(syscall.EROFS) {
		t.Fatalf("failed flush committed %d, want -EROFS", r.res)
	}

	close(k.abort)
	if err := <-done; err != nil {
		t.Fatalf("run after abort: %v", err)
	}
	// A policy backs off only after recording an inline request: the first
	// write and the first read ran on the ring thread, the rest on
	// goroutines.
	if q.inlineReads.OK() || q.inlineWrites.OK() {
		t.Error("no request ran inline")
	}
	if len(k.owned) != 0 {
		t.Fatalf("tags never committed: %v", k.owned)
	}
	select {
	case r := <-k.results:
		t.Fatalf("extra commit %+v", r)
	default:
	}
}

// TestQueueBatchInline: the requests of one batch of completions that the
// inline policy allows run on the ring thread, the others (FUA writes
// here) on workers; a request that arrives alone runs on the ring thread
// too (with an inline policy that always allows it).
func TestQueueBatchInline(t *testing.T) {
	t.Parallel()
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	const depth, bufSz = 8, 4096
	m := newMem(1<<20, 512)
	q := &queue{id: 0, depth: depth, cdev: 42, dev: m, ctx: context.Background(), bufSz: bufSz,
		descs: make([]ioDesc, depth), bufs: make([]byte, depth*bufSz), efd: efd, efdB: new([8]byte),
		inlineReads: blockdev.InlinePolicy{Slow: time.Hour}, inlineWrites: blockdev.InlinePolicy{Slow: time.Hour}}
	k := newFakeKernel(t, q)
	fetched := make(chan error, 1)
	done := make(chan error, 1)
	go func() { done <- q.run(fetched) }()
	if err := <-fetched; err != nil {
		t.Fatal(err)
	}
	write := func(i uint64) fakeRq {
		return fakeRq{d: ioDesc{OpFlags: opWrite, NrSectors: 8, StartSector: i * 8}, data: bytes.Repeat([]byte{byte(i + 1)}, 4096)}
	}
	var rqs []fakeRq
	for i := uint64(0); i < depth; i++ {
		rq := write(i)
		if i%2 == 1 {
			rq.d.OpFlags |= ioFlagFUA // never inline
		}
		rqs = append(rqs, rq)
	}
	k.burst <- rqs
	for range depth {
		if r := <-k.results; r.res != 4096 {
			t.Fatalf("write %+v: result %d", r.rq.d, r.res)
		}
	}
	for i := uint64(0); i < 3; i++ {
		k.inject <- write(depth + i)
		if r := <-k.results; r.res != 4096 {
			t.Fatalf("write %+v: result %d", r.rq.d, r.res)
		}
	}
	close(k.abort)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i := uint64(0); i < depth+3; i++ {
		if !bytes.Equal(m.data[i*4096:(i+1)*4096], write(i).data) {
			t.Fatalf("block %d not written", i)
		}
	}
	// The burst: four inline, four (FUA) on workers; then three lone
	// requests, all inline.
	if got := q.stats.inline.Load(); got != 7 {
		t.Errorf("%d requests ran inline, want 7 (the burst's four plain writes and three lone ones)", got)
	}
	if got := q.stats.requests.Load(); got != depth+3 {
		t.Errorf("%d requests counted, want %d", got, depth+3)
	}
}

// BenchmarkQueueFakeKernel: 4 KiB writes through queue.run on the fake
// kernel, 32 in flight, with the inline policy off (every request on a
// worker, as under load in the test/vm guest). It measures the queue's
// own cost per request (handoff to a worker and back, the wake-ups) plus
// the fake kernel's channel traffic, not the kernel's.
func BenchmarkQueueFakeKernel(b *testing.B) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(efd)
	const depth, bufSz = 32, 4096
	m := newMem(1<<20, 512)
	q := &queue{id: 0, depth: depth, cdev: 42, dev: m, ctx: context.Background(), bufSz: bufSz,
		descs: make([]ioDesc, depth), bufs: make([]byte, depth*bufSz), efd: efd, efdB: new([8]byte),
		inlineReads: blockdev.InlinePolicy{Slow: -1}, inlineWrites: blockdev.InlinePolicy{Slow: -1}}
	t := &testing.T{}
	k := newFakeKernel(t, q)
	k.results = make(chan fakeResult, depth)
	fetched := make(chan error, 1)
	done := make(chan error, 1)
	go func() { done <- q.run(fetched) }()
	if err := <-fetched; err != nil {
		b.Fatal(err)
	}
	data := bytes.Repeat([]byte{7}, 4096)
	b.SetBytes(4096)
	b.ResetTimer()
	go func() {
		for i := 0; i < b.N; i++ {
			k.inject <- fakeRq{d: ioDesc{OpFlags: opWrite, NrSectors: 8, StartSector: uint64(i%256) * 8}, data: data}
		}
	}()
	for i := 0; i < b.N; i++ {
		if r := <-k.results; r.res != 4096 {
			b.Fatalf("result %d", r.res)
		}
	}
	b.StopTimer()
	close(k.abort)
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
