package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/encblk/encblk/internal/bufpool"
	"github.com/encblk/encblk/pkg/blockdev"
)

// transmission is the transmission phase of one connection. Its data path:
//
//   - one reader goroutine decodes request headers from a buffered reader
//     (a burst of headers costs one read), validates them, takes the
//     request's payload bytes from the connection's budget (waiting when
//     the client is too far ahead: backpressure), reads WRITE payloads
//     straight into a pooled buffer; the budget bounds how many requests
//     are in flight. Small reads, writes and block-status queries, writes
//     of any size to a device with serial writes, and reads and writes of
//     any size on a blocking socket (never flushes or FUA writes), it runs
//     itself while such requests are quick (see blockdev.InlinePolicy); the rest it
//     hands to an idle worker goroutine (up to
//     maxWorkers per connection, kept for the connection's life);
//   - handlers call the device concurrently and queue their reply; replies
//     go out in completion order, not request order, each batch of ready
//     replies with one writev, written by whichever handler finds the
//     connection idle (flat combining, see queue), so no goroutine handoff
//     sits between a completion and its reply;
//   - the reader keeps the replies of the requests it runs itself (see
//     runInline) and queues them in one batch before it does anything
//     that may block (reading from the socket, waiting for budget or a
//     worker) or once maxHeldReplies are waiting; only while an inline
//     device call blocks (a volume locked with LockWait) do the replies
//     held before it wait with it. Workers' replies never wait for the
//     reader: a flush or FUA write is answered as soon as it is done,
//     whatever the reader is running.
//
// No lock is held across I/O; the only shared state on the hot path is the
// work channel, the reply queue's mutex and the budget's mutex.
//
// On a blocking socket (t.sock, see sockConn) the reader reads each WRITE
// payload past what is buffered in one call, and goes through the
// scheduler every millisecond or so (see yield).
//
// Why inline: on a 2-core machine in the page cache, a 4 KiB request costs
// a few microseconds and a goroutine handoff (futex wake, context switch)
// as much again; buffered writes to a file are serialized by the kernel's
// inode lock, so concurrent workers only spin on it (perf: 10-17% of
// server samples in rwsem_spin_on_owner before, context switches 40% of
// samples).
type transmission struct {
	conn       net.Conn
	sock       *sockConn // conn, when it is a blocking socket (see sockConn)
	br         *bufio.Reader
	exp        *negotiated
	log        *slog.Logger
	debug      bool
	structured bool
	meta       bool

	ctx    context.Context // passed to the device
	cancel context.CancelFunc

	budget   *budget
	inflight sync.WaitGroup

	// The reply path (see queue): wmu guards pending, spare and writing;
	// vec and writeErr belong to the goroutine that is writing.
	wmu      sync.Mutex
	pending  []*request
	spare    []*request
	writing  bool
	vec      [][]byte
	writeErr error

	stop     chan struct{} // closed when the connection is going down
	stopOnce sync.Once
	shutdown atomic.Bool
	idled    atomic.Bool // Server.IdleTimeout passed: reading was ended

	work     chan *request // to idle workers
	workers  sync.WaitGroup
	nworkers int // started; reader only

	hdr [requestHeaderLen]byte

	// Inline requests (see runInline); reader only. held: the replies of
	// the requests the reader ran, waiting for unhold.
	inlineReads  blockdev.InlinePolicy
	inlineWrites blockdev.InlinePolicy
	held         []*request
	yielded      time.Time // last yield; reader only
}

func newTransmission(s *session, exp *negotiated) *transmission {
	maxReqs := s.srv.maxInFlightRequests()
	sock, _ := s.conn.(*sockConn)
	t := &transmission{
		conn:         s.conn,
		sock:         sock,
		br:           s.br,
		exp:          exp,
		log:          s.log.With("export", exp.name),
		debug:        s.log.Enabled(context.Background(), slog.LevelDebug),
		structured:   s.structured,
		meta:         s.metaSet && s.metaExport == exp.name,
		budget:       newBudget(s.srv.maxInFlightBytes(), maxReqs),
		pending:      make([]*request, 0, maxReqs),
		spare:        make([]*request, 0, maxReqs),
		stop:         make(chan struct{}),
		work:         make(chan *request),
		inlineReads:  blockdev.InlinePolicy{Slow: blockdev.InlineSlow},
		inlineWrites: blockdev.InlinePolicy{Slow: blockdev.InlineSlow},
	}
	if exp.info.SerialWrites {
		t.inlineWrites.Slow = blockdev.InlineSlowSerial
	}
	return t
}

func (t *transmission) closeStop() { t.stopOnce.Do(func() { close(t.stop) }) }

// errClientGone is the client closing the connection between requests.
var errClientGone = errors.New("nbd: client closed the connection")

// errDisconnect is the client's NBD_CMD_DISC.
var errDisconnect = errors.New("nbd: client disconnected")

// errIdle ends a connection that was idle for Server.IdleTimeout.
var errIdle = errors.New("nbd: connection idle")

// run serves requests until the client leaves, ctx is cancelled or (if
// idle > 0) no request has been in flight for idle, then drains: every
// request read is answered (if the connection still works), the device
// is flushed after a clean end, and the connection is closed by the
// caller.
func (t *transmission) run(ctx context.Context, grace, idle time.Duration) error {
	t.ctx, t.cancel = context.WithCancel(context.WithoutCancel(ctx))
	defer t.cancel()
	if idle > 0 {
		defer t.watchIdle(idle)()
	}
	var hard *time.Timer
	var hardMu sync.Mutex
	stopWatch := context.AfterFunc(ctx, func() {
		// Graceful shutdown: read nothing more, let in-flight requests
		// finish, and close hard if that takes longer than grace.
		t.shutdown.Store(true)
		t.cancel()
		t.closeStop()
		t.endReading()
		hardMu.Lock()
		hard = time.AfterFunc(grace, func() { _ = t.conn.Close() })
		hardMu.Unlock()
	})
	defer func() {
		stopWatch()
		hardMu.Lock()
		if hard != nil {
			hard.Stop()
		}
		hardMu.Unlock()
	}()

	err := t.readLoop()
	clean := errors.Is(err, errDisconnect)
	switch {
	case t.shutdown.Load():
		err = ErrServerClosed
		clean = true
	case t.idled.Load():
		err = fmt.Errorf("%w for %v", errIdle, idle)
		clean = true
	}
	if !clean {
		// The client is gone or broke the protocol: abandon waits.
		t.cancel()
	}
	t.inflight.Wait()
	close(t.work)
	t.workers.Wait()
	if clean && t.exp.info.CanFlush && !t.exp.info.ReadOnly {
		// Graceful end: make what was acknowledged durable before closing.
		if ferr := t.exp.Device.Flush(context.WithoutCancel(ctx)); ferr != nil {
			t.log.Warn("nbd flush at disconnect failed", "err", ferr)
		}
	}
	if errors.Is(err, errDisconnect) || errors.Is(err, errClientGone) {
		return nil
	}
	if t.writeErr != nil && !errors.Is(err, ErrServerClosed) {
		// A failed reply closed the connection, which is why reading
		// failed: the reply's error is the one that says what happened.
		err = t.writeErr
	}
	return err
}

// watchIdle ends reading once no request has been in flight for idle
// (the connection then ends as a graceful shutdown's does, with nothing to
// drain); it returns the function that stops watching. A request that
// arrives just as the timeout passes may find the connection closing,
// unanswered: as with any idle timeout, a client must expect that.
func (t *transmission) watchIdle(idle time.Duration) (stop func()) {
	t.budget.trackIdle(time.Now())
	var (
		mu      sync.Mutex
		stopped bool
		timer   *time.Timer
	)
	check := func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		since, ok := t.budget.idleSince()
		if !ok {
			timer.Reset(idle)
			return
		}
		if left := idle - time.Since(since); left > 0 {
			timer.Reset(left)
			return
		}
		t.idled.Store(true)
		// On a blocking socket this shuts the read side down, which
		// endReading waits to do until nothing is in flight: nothing is.
		_ = t.conn.SetReadDeadline(time.Now())
	}
	mu.Lock()
	timer = time.AfterFunc(idle, check)
	mu.Unlock()
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		timer.Stop()
	}
}

// endReading, in a graceful shutdown, ends the reader's wait for the
// client. On the netpoller a read deadline does that at once. On a
// blocking socket the one way to wake a blocked read is shutting the
// socket's read side down (see sockConn), and on a unix socket that also
// makes the client's writes fail (EPIPE): libnbd and the kernel's client
// then drop the connection, and with it the replies to the requests still
// in flight, which a server shutting down SHOULD answer first (NBD spec,
// "Terminating the transmission phase"). So there it waits until no
// request is in flight: send calls it again after every batch of replies
// during a shutdown, and the reader starts no new read once shutdown is
// set (see readLoop).
func (t *transmission) endReading() {
	if t.sock == nil || t.budget.idle() {
		_ = t.conn.SetReadDeadline(time.Now())
	}
}

// readLoop reads and dispatches requests until the client disconnects, an
// error occurs or the server shuts down.
func (t *transmission) readLoop() error {
	defer t.unhold()
	for nreq := uint(0); ; nreq++ {
		if t.sock != nil && nreq%yieldCheckEvery == 0 {
			t.yield()
		}
		if t.br.Buffered() < requestHeaderLen {
			if t.shutdown.Load() {
				// Read nothing more from the client (see endReading).
				return errServerStopping
			}
			// Reading may block: the replies held so far go first.
			t.unhold()
		}
		if _, err := io.ReadFull(t.br, t.hdr[:]); err != nil {
			if err == io.EOF {
				// Hung up between requests without NBD_CMD_DISC: libnbd
				// clients (fio, nbdfuse) commonly do. Not an error.
				return errClientGone
			}
			return fmt.Errorf("nbd: read request: %w", err)
		}
		r := getRequest()
		if !decodeRequest(t.hdr[:], r) {
			putRequest(r)
			return fmt.Errorf("%w: bad request magic %#x", errProtocol, binary.BigEndian.Uint32(t.hdr[:]))
		}
		if t.debug {
			t.log.Debug("nbd request", "command", cmdName(r.typ), "flags", r.flags, "offset", r.off, "length", r.count, "cookie", r.cookie)
		}
		if r.typ == cmdDisc {
			putRequest(r)
			return errDisconnect
		}

		errno, msg := r.validate(t.exp, t.structured, t.meta)
		if errno != 0 {
			if r.typ == cmdWrite {
				// The payload follows whatever we think of the request. Skip
				// it if that is reasonable, else hang up (spec: DoS).
				if n := r.count; n > 2*maxPayload {
					putRequest(r) // r may be reused at once: n, not r.count
					return fmt.Errorf("%w: NBD_CMD_WRITE of %d bytes", errProtocol, n)
				}
				if t.br.Buffered() < int(r.count) {
					t.unhold()
				}
				if _, err := t.br.Discard(int(r.count)); err != nil {
					putRequest(r)
					return fmt.Errorf("nbd: skip write payload: %w", err)
				}
			}
			if !t.acquire(0) {
				putRequest(r)
				return errServerStopping
			}
			if t.debug {
				t.log.Debug("nbd request refused", "command", cmdName(r.typ), "errno", errno, "msg", msg)
			}
			r.errorReply(t.structured, errno, msg)
			t.inflight.Add(1)
			t.queue(r)
			continue
		}

		var n int64
		if r.typ == cmdRead || r.typ == cmdWrite {
			n = int64(r.count)
		}
		r.charge = t.budget.charge(n)
		if !t.acquire(r.charge) {
			putRequest(r)
			return errServerStopping
		}
		if n > 0 {
			// Aligned: a READ buffer can go down to an O_DIRECT file as it is.
			r.buf = bufpool.Get(int(n))
		}
		if r.typ == cmdWrite {
			if t.br.Buffered() < int(n) {
				t.unhold()
			}
			if err := t.readPayload(r.data()); err != nil {
				t.budget.release(r.charge)
				putRequest(r)
				return fmt.Errorf("nbd: read write payload: %w", err)
			}
		}
		t.inflight.Add(1)
		if p := t.inlinePolicy(r); p != nil {
			t.runInline(r, p)
		} else {
			t.unhold()
			t.dispatch(r)
		}
	}
}

// readPayload reads a WRITE payload into p: what the buffered reader holds
// of it, then, on a blocking socket, the rest in one call (sockConn.readFull).
func (t *transmission) readPayload(p []byte) error {
	if t.sock == nil || t.br.Buffered() >= len(p) {
		_, err := io.ReadFull(t.br, p)
		return err
	}
	n := t.br.Buffered()
	if n > 0 {
		// Only copies from the buffer: it is not empty.
		if _, err := t.br.Read(p[:n]); err != nil {
			return err
		}
	}
	return t.sock.readFull(p[n:])
}

// yield lets the reader go through the scheduler now and then when it runs
// on a blocking socket. Such a reader never parks, it only sleeps in
// system calls; after 10 ms on the same scheduling tick the runtime's
// sysmon takes its P away in the middle of one, and, as every P it gets
// back looks just as overdue, keeps doing so: about 900 P handoffs a
// second in 1 MiB sequential writes, which a Gosched every millisecond or
// so brings to a quarter (and server CPU per request down 20%).
func (t *transmission) yield() {
	now := time.Now()
	if now.Sub(t.yielded) >= yieldEvery {
		t.yielded = now
		runtime.Gosched()
	}
}

// yieldEvery is how often a reader on a blocking socket goes through the
// scheduler, and yieldCheckEvery how many requests it lets pass between
// looks at the clock.
const (
	yieldEvery      = time.Millisecond
	yieldCheckEvery = 16
)

// inlinePolicy returns the policy under which the reader may run r itself,
// or nil if r goes to a worker: small reads, writes and block-status
// queries may be inlined, writes of any size to a device whose writes run
// one at a time anyway (Info.SerialWrites), and reads and writes of any
// size on a blocking socket; flushes, FUA writes (both wait for the disk)
// and the rest never are.
func (t *transmission) inlinePolicy(r *request) *blockdev.InlinePolicy {
	if r.flags&cmdFlagFUA != 0 {
		return nil
	}
	var p *blockdev.InlinePolicy
	switch {
	case r.typ == cmdWrite && t.exp.info.SerialWrites:
		p = &t.inlineWrites
	case r.count > inlineMaxBytes && t.sock == nil:
		// On a blocking socket the reader runs large requests too: its
		// thread keeps its P while it waits for the client, so a worker
		// would often wait for sysmon to hand it one (1 MiB sequential
		// reads, 7 alternated runs: 2838-5767 IOPS at 205-269 us per
		// request inline, 1881-4392 at 248-351 on workers).
		return nil
	case r.typ == cmdRead || r.typ == cmdBlockStatus:
		p = &t.inlineReads
	case r.typ == cmdWrite:
		p = &t.inlineWrites
	default:
		return nil
	}
	if !p.OK() {
		return nil
	}
	return p
}

// runInline runs r on the reader, rather than hand it to another goroutine
// (a handoff costs more than a small request in the page cache). Its reply
// is held with those of the other requests already buffered, and they go
// out together when reading would block or maxHeldReplies are waiting.
func (t *transmission) runInline(r *request, p *blockdev.InlinePolicy) {
	start := time.Now()
	t.handle(r, true)
	p.Record(time.Since(start), r.count)
	if len(t.held) >= maxHeldReplies {
		t.unhold()
	}
}

// maxHeldReplies is how many inline replies the reader holds before it
// sends them, so that the client has the first answers of a deep queue
// while the rest are being done. (Large read replies held too: sending
// each 1 MiB one at once measured no faster, 3663 against 4030 IOPS
// averaged over 4 alternated runs; the payload they hold is bounded by
// the connection's budget, which sends them when it runs out.)
const maxHeldReplies = 8

// acquire takes a request's charge from the budget; if that has to wait,
// the held replies go out first (sending replies is what gives budget back).
func (t *transmission) acquire(n int64) bool {
	if t.budget.tryAcquire(n) {
		return true
	}
	t.unhold()
	return t.budget.acquire(n, t.stop)
}

// unhold queues the replies the reader holds, in one batch.
func (t *transmission) unhold() {
	if len(t.held) == 0 {
		return
	}
	n := len(t.held)
	t.wmu.Lock()
	t.pending = append(t.pending, t.held...)
	clear(t.held)
	t.held = t.held[:0]
	t.retire(n)
}

// maxWorkers bounds the handler goroutines of one connection: enough for
// deep queues on real disks (nbdkit runs 16 threads per connection).
const maxWorkers = 64

// dispatch hands a request to an idle worker, starting one if none is idle
// and there are fewer than maxWorkers, else waiting for one. Workers live
// as long as the connection, so their stacks stay grown and a request
// costs no goroutine creation.
func (t *transmission) dispatch(r *request) {
	select {
	case t.work <- r:
		return
	default:
	}
	if t.nworkers < maxWorkers {
		t.nworkers++
		t.workers.Add(1)
		go t.worker(r)
		return
	}
	t.work <- r
}

func (t *transmission) worker(r *request) {
	defer t.workers.Done()
	t.handle(r, false)
	for r := range t.work {
		t.handle(r, false)
	}
}

// inlineMaxBytes is the largest request the reader may run itself, but for
// writes to a device with serial writes and on a blocking socket.
const inlineMaxBytes = 64 << 10

// errServerStopping ends the read loop when the connection is going down.
var errServerStopping = errors.New("nbd: connection stopping")

// handle runs one request against the device and queues its reply.
func (t *transmission) handle(r *request, inline bool) {
	b := t.exp.Device
	fua := r.flags&cmdFlagFUA != 0
	var err error
	switch r.typ {
	case cmdRead:
		if r.count > 0 {
			err = b.ReadAt(t.ctx, r.data(), int64(r.off))
		}
		if err == nil {
			if t.structured {
				r.readReply(r.data())
			} else {
				r.simpleReply(0, r.data())
			}
			t.finish(r, inline)
			return
		}
	case cmdWrite:
		if r.count > 0 {
			err = b.WriteAt(t.ctx, r.data(), int64(r.off), fua)
		}
	case cmdFlush:
		err = b.Flush(t.ctx)
	case cmdTrim:
		if r.count > 0 {
			err = b.Trim(t.ctx, int64(r.off), int64(r.count), fua)
		}
	case cmdWriteZeroes:
		var zf blockdev.ZeroFlags
		if fua {
			zf |= blockdev.ZeroFUA
		}
		if r.flags&cmdFlagNoHole != 0 {
			zf |= blockdev.ZeroNoHole
		}
		if r.flags&cmdFlagFastZero != 0 {
			zf |= blockdev.ZeroFast
		}
		if r.count > 0 {
			err = b.Zero(t.ctx, int64(r.off), int64(r.count), zf)
		}
	case cmdCache:
		if r.count > 0 {
			err = t.exp.prefetcher.Prefetch(t.ctx, int64(r.off), int64(r.count))
		}
	case cmdBlockStatus:
		if err = t.blockStatus(r); err == nil {
			r.blockStatusReply()
			t.finish(r, inline)
			return
		}
	}
	if err != nil {
		errno := nbdErrno(err)
		level := slog.LevelWarn
		if errno == errNotSup || errno == errShutdown {
			level = slog.LevelDebug
		}
		t.log.Log(t.ctx, level, "nbd request failed", "command", cmdName(r.typ), "offset", r.off, "length", r.count, "err", err)
		r.errorReply(t.structured, errno, err.Error())
	} else {
		r.simpleReply(0, nil)
	}
	t.finish(r, inline)
}

// blockStatus fills r.scratch with a base:allocation chunk payload (context
// ID slot, then descriptors) for the request's range.
func (t *transmission) blockStatus(r *request) error {
	length := int64(r.count)
	exts := r.extents[:0]
	if t.exp.extenter != nil {
		var err error
		exts, err = t.exp.extenter.Extents(t.ctx, exts, int64(r.off), length)
		if err != nil {
			return err
		}
	}
	r.extents = exts
	if len(exts) == 0 {
		// No BlockStatuser (or nothing said): all allocated, not known zero.
		exts = append(exts, blockdev.Extent{Length: length})
		r.extents = exts
	}
	p := append(r.scratch[:0], 0, 0, 0, 0)
	var sum int64
	var last uint32
	n := 0
	for _, e := range exts {
		if e.Length <= 0 || sum >= length {
			break
		}
		l := min(e.Length, length-sum)
		var st uint32
		if e.Hole {
			st |= stateHole
		}
		if e.Zero {
			st |= stateZero
		}
		if n > 0 && st == last {
			// Merge runs with the same status into one descriptor.
			i := len(p) - 8
			binary.BigEndian.PutUint32(p[i:], binary.BigEndian.Uint32(p[i:])+uint32(l))
		} else {
			if n == maxExtents {
				break
			}
			p = binary.BigEndian.AppendUint32(p, uint32(l))
			p = binary.BigEndian.AppendUint32(p, st)
			n++
			last = st
		}
		sum += l
		if r.flags&cmdFlagReqOne != 0 {
			break
		}
	}
	r.scratch = p
	if n == 0 {
		return fmt.Errorf("nbd: device returned no usable extent at offset %d: %w", r.off, errBadExtents)
	}
	return nil
}

// errBadExtents is a BlockStatuser breaking its contract.
var errBadExtents = errors.New("invalid extents from the device")

// finish hands a handled request's reply on: the reader keeps those of
// requests it ran inline (see unhold), the rest are queued.
func (t *transmission) finish(r *request, inline bool) {
	if inline {
		t.held = append(t.held, r)
		return
	}
	t.queue(r)
}

// queue hands a finished request to the reply path and retires it from
// the in-flight count. Replies are written by flat combining: the first
// handler to find nobody writing becomes the writer and sends everything
// queued, its own reply and those queued meanwhile, in one writev per
// batch; the others just append and leave. So a reply costs no goroutine
// handoff, and under load replies coalesce.
func (t *transmission) queue(r *request) {
	t.wmu.Lock()
	t.pending = append(t.pending, r)
	t.retire(1)
}

// retire, called with wmu held after n requests were added to pending,
// sends them unless someone else is writing, and retires them from the
// in-flight count. It unlocks wmu.
func (t *transmission) retire(n int) {
	if t.writing {
		t.wmu.Unlock()
	} else {
		t.writing = true
		t.drain()
	}
	t.inflight.Add(-n)
}

// drain is the writer's loop: called with wmu held and the writer role
// taken, it sends batches until nothing is pending, then gives up the role
// and wmu.
func (t *transmission) drain() {
	for len(t.pending) > 0 {
		batch := t.pending
		t.pending = t.spare[:0]
		t.wmu.Unlock()
		t.send(batch)
		t.wmu.Lock()
		clear(batch)
		t.spare = batch[:0]
	}
	t.writing = false
	t.wmu.Unlock()
}

// send writes a batch of replies, recycles the requests and gives their
// budget back with one release. It runs in one goroutine at a time (the
// combiner in queue).
func (t *transmission) send(batch []*request) {
	if t.writeErr == nil {
		vec := t.vec[:0]
		for _, r := range batch {
			vec = append(vec, r.hdr[:r.hdrLen])
			if len(r.payload) > 0 {
				vec = append(vec, r.payload)
			}
		}
		var err error
		if t.sock != nil {
			_, err = t.sock.writeBuffers(vec)
		} else {
			// Written through t.vec, not a local net.Buffers: WriteTo
			// takes its address, which would move a local to the heap
			// every batch. WriteTo consumes what it writes, so t.vec is
			// set back after.
			t.vec = vec
			_, err = (*net.Buffers)(&t.vec).WriteTo(t.conn)
		}
		t.vec = vec
		if err != nil {
			t.writeErr = fmt.Errorf("nbd: send reply: %w", err)
			// Nothing more can reach the client: stop everything.
			t.cancel()
			t.closeStop()
			_ = t.conn.Close()
		}
		clear(vec) // slots past len were cleared by earlier batches
	}
	var charged int64
	for _, r := range batch {
		charged += r.charge
		putRequest(r)
	}
	t.budget.releaseBatch(charged, len(batch))
	if t.sock != nil && t.shutdown.Load() {
		t.endReading()
	}
}
