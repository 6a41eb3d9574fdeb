package nbd

import (
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sockConn is the socket of a plain (not TLS) unix or TCP connection in
// transmission, taken out of the Go runtime's network poller and read and
// written with blocking system calls on the calling goroutine's thread,
// the way nbdkit's threads use their sockets.
//
// Why: on the netpoller, every wait for the client (a WRITE payload
// arrives in slices of the client's socket buffer, 208 KiB by default, so
// a 1 MiB write waits about five times) parks the reader; the process goes
// idle, which puts the runtime's sysmon thread to sleep, and the next
// system call wakes it polling every 20 us again; each wait also costs a
// failed read and an epoll_wait, and every reply the client takes wakes
// the epoll waiter (EPOLLOUT edge). perf, 1 MiB sequential writes at
// iodepth 16 on a 2-core VM: sysmon's sleeps were 10% of server samples,
// parking 6%; 18-20 system calls and 6-7 context switches per request
// against nbdkit's 11 and 5. Blocking: 7-8 system calls, 2 context
// switches, 15-30% less server CPU per request in same-run comparisons.
//
// Waiting for a request header is different: the client answers a batch
// of replies within microseconds, and the netpoller's spinning scheduler
// used to catch that without sleeping (4 KiB random reads lost about 12%
// when every wait slept in read(2)). So Read, which fills the request buffer,
// first tries a few non-blocking reads (spinReads) before it blocks;
// readFull, for payloads whose length is known, blocks at once.
//
// The price is a thread, and while it runs a P, per connection: with more
// such connections than cores they would take turns through sysmon's
// retaking of Ps from system calls, which is slow; so a Server moves at
// most (GOMAXPROCS+1)/2 connections at a time to blocking sockets (see
// Server.BlockingConns) and serves the rest on the netpoller.
//
// Blocking calls sleep until they can go on: an idle connection costs no
// wake-ups. Close shuts the socket down, which wakes them at once; so does
// a deadline when it passes (a timer shuts down that direction of the
// socket), which is why a sockConn's deadlines are final: once one has
// passed, that direction stays shut. A graceful shutdown's
// SetReadDeadline(now) is the one deadline transmission sets, and only
// once no request is in flight: on a unix socket, shutting the read side
// down also makes the client's writes fail (see transmission.endReading).
type sockConn struct {
	fd           int
	laddr, raddr net.Addr
	release      func() // gives the server's blocking slot back; once, at Close

	// ops is held shared across every system call on fd (and by deadline
	// timers when they shut fd down) and exclusively by Close, so fd is not
	// closed (and its number reused) under a call.
	ops     sync.RWMutex
	closing atomic.Bool

	dmu         sync.Mutex // guards the deadlines' timers
	read, write sockDeadline

	iov []unix.Iovec // writeBuffers' scratch; one writer at a time
}

// sockDeadline is one direction's deadline: a timer that, when it fires,
// marks the deadline passed and shuts that direction of the socket down.
type sockDeadline struct {
	timer  *time.Timer
	passed atomic.Bool
	how    int // unix.SHUT_RD or SHUT_WR
}

const (
	// spinReads is how many non-blocking reads Read tries before it sleeps
	// in a blocking one (about as long as the netpoller's scheduler spins).
	spinReads = 4
	// maxIovecs is IOV_MAX on Linux.
	maxIovecs = 1024
)

// detachSocket moves c, a plain unix or TCP connection, to a blocking
// sockConn. It returns nil (and c is untouched) when c is something else
// or the socket can't be moved. release is called when the sockConn is
// closed.
func detachSocket(c net.Conn, release func()) *sockConn {
	var sc syscall.Conn
	switch c := c.(type) {
	case *net.UnixConn:
		sc = c
	case *net.TCPConn:
		sc = c
	default:
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	fd := -1
	if err := rc.Control(func(s uintptr) {
		fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil || fd < 0 {
		return nil
	}
	if unix.SetNonblock(fd, false) != nil {
		_ = unix.Close(fd)
		return nil
	}
	s := &sockConn{fd: fd, laddr: c.LocalAddr(), raddr: c.RemoteAddr(), release: release}
	s.read.how, s.write.how = unix.SHUT_RD, unix.SHUT_WR
	// Closing c takes its descriptor out of the runtime's epoll set; the
	// socket lives on in fd.
	_ = c.Close()
	return s
}

// Read reads what the socket has, up to len(p): a few non-blocking tries
// first (see spinReads), then a blocking read.
func (c *sockConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.ops.RLock()
	defer c.ops.RUnlock()
	for i := 0; ; i++ {
		if err := c.check(&c.read); err != nil {
			return 0, c.opError("read", err)
		}
		flags := 0
		if i < spinReads {
			flags = unix.MSG_DONTWAIT
		}
		n, err := recv(c.fd, p, flags)
		switch {
		case err == nil && n == 0:
			return 0, c.eof()
		case err == unix.EINTR:
		case err == nil:
			return n, nil
		case err == unix.EAGAIN && i < spinReads:
		default:
			return 0, c.opError("read", err)
		}
	}
}

// readFull reads exactly len(p) bytes, sleeping until they are all there
// (MSG_WAITALL: one system call for a whole payload, unless a signal
// interrupts it).
func (c *sockConn) readFull(p []byte) error {
	c.ops.RLock()
	defer c.ops.RUnlock()
	for len(p) > 0 {
		if err := c.check(&c.read); err != nil {
			return c.opError("read", err)
		}
		n, err := recv(c.fd, p, unix.MSG_WAITALL)
		p = p[n:]
		switch {
		case err == nil && n == 0:
			if err := c.eof(); err != io.EOF {
				return err
			}
			return io.ErrUnexpectedEOF
		case err == nil, err == unix.EINTR:
		default:
			return c.opError("read", err)
		}
	}
	return nil
}

func (c *sockConn) Write(p []byte) (int, error) {
	bufs := [][]byte{p}
	n, err := c.writeBuffers(bufs)
	return int(n), err
}

// writeBuffers writes all of bufs with writev, blocking while the socket
// buffer is full. It may change bufs.
func (c *sockConn) writeBuffers(bufs [][]byte) (int64, error) {
	c.ops.RLock()
	defer c.ops.RUnlock()
	var total int64
	for len(bufs) > 0 {
		if err := c.check(&c.write); err != nil {
			return total, c.opError("write", err)
		}
		iov := c.iov[:0]
		for _, b := range bufs {
			if len(iov) == maxIovecs {
				break
			}
			if len(b) > 0 {
				v := unix.Iovec{Base: &b[0]}
				v.SetLen(len(b))
				iov = append(iov, v)
			}
		}
		c.iov = iov
		if len(iov) == 0 {
			break
		}
		n, err := writev(c.fd, iov)
		clear(iov) // no pointers into the caller's buffers stay behind
		if n > 0 {
			total += int64(n)
			for n > 0 {
				k := min(n, len(bufs[0]))
				bufs[0] = bufs[0][k:]
				n -= k
				if len(bufs[0]) == 0 {
					bufs = bufs[1:]
				}
			}
		}
		for len(bufs) > 0 && len(bufs[0]) == 0 {
			bufs = bufs[1:]
		}
		switch err {
		case nil, unix.EINTR:
		default:
			if e := c.check(&c.write); e != nil {
				err = e // EPIPE from a deadline's shutdown
			}
			return total, c.opError("write", err)
		}
	}
	return total, nil
}

// Close shuts the socket down (waking calls blocked on it), waits for them
// to return and closes it.
func (c *sockConn) Close() error {
	if c.closing.Swap(true) {
		return c.opError("close", net.ErrClosed)
	}
	c.dmu.Lock()
	for _, d := range []*sockDeadline{&c.read, &c.write} {
		if d.timer != nil {
			d.timer.Stop()
		}
	}
	c.dmu.Unlock()
	_ = unix.Shutdown(c.fd, unix.SHUT_RDWR)
	c.ops.Lock()
	err := unix.Close(c.fd)
	c.ops.Unlock()
	if c.release != nil {
		c.release()
	}
	if err != nil {
		return c.opError("close", err)
	}
	return nil
}

func (c *sockConn) LocalAddr() net.Addr  { return c.laddr }
func (c *sockConn) RemoteAddr() net.Addr { return c.raddr }

func (c *sockConn) SetDeadline(t time.Time) error {
	c.setDeadline(&c.read, t)
	c.setDeadline(&c.write, t)
	return nil
}

func (c *sockConn) SetReadDeadline(t time.Time) error {
	c.setDeadline(&c.read, t)
	return nil
}

func (c *sockConn) SetWriteDeadline(t time.Time) error {
	c.setDeadline(&c.write, t)
	return nil
}

// setDeadline sets or (t zero) clears d's timer; one that has passed stays
// passed.
func (c *sockConn) setDeadline(d *sockDeadline, t time.Time) {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	if t.IsZero() || d.passed.Load() {
		return
	}
	if wait := time.Until(t); wait > 0 {
		d.timer = time.AfterFunc(wait, func() { c.expire(d) })
		return
	}
	c.expire(d)
}

// expire marks d passed and shuts its direction down, waking a call
// blocked on it.
func (c *sockConn) expire(d *sockDeadline) {
	d.passed.Store(true)
	c.ops.RLock()
	if !c.closing.Load() {
		_ = unix.Shutdown(c.fd, d.how)
	}
	c.ops.RUnlock()
}

// eof is what a read that found the end of the stream returns: io.EOF,
// unless it was Close or a deadline that shut the socket down.
func (c *sockConn) eof() error {
	if err := c.check(&c.read); err != nil {
		return c.opError("read", err)
	}
	return io.EOF
}

// check is what every turn of a blocking loop asks first: closed, or past
// the deadline d?
func (c *sockConn) check(d *sockDeadline) error {
	if c.closing.Load() {
		return net.ErrClosed
	}
	if d.passed.Load() {
		return os.ErrDeadlineExceeded
	}
	return nil
}

func (c *sockConn) opError(op string, err error) error {
	if err == io.EOF {
		return err
	}
	return &net.OpError{Op: op, Net: c.laddr.Network(), Source: c.laddr, Addr: c.raddr, Err: err}
}

// recv is recvfrom(2) without a source address (x/sys's Recvfrom decodes
// one, which allocates, for every read of a unix socket).
func recv(fd int, p []byte, flags int) (int, error) {
	r, _, e := syscall.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), uintptr(flags), 0, 0)
	runtime.KeepAlive(p)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// writev is writev(2) on iovecs the caller keeps (x/sys's Writev builds
// them anew, allocating, for every call).
func writev(fd int, iov []unix.Iovec) (int, error) {
	r, _, e := syscall.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	runtime.KeepAlive(iov)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
