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
// switches, about 25% less server CPU per request.
//
// Waiting for a request header is different: the client answers a batch
// of replies within microseconds, and the netpoller's spinning scheduler
// used to catch that without sleeping (4 KiB random reads lost 15% when
// every wait slept in read(2)). So Read, which fills the request buffer,
// first tries a few non-blocking reads (spinReads) before it blocks;
// readFull, for payloads whose length is known, blocks at once.
//
// The price is a thread, and while it runs a P, per connection: with more
// such connections than cores they would take turns through sysmon's
// retaking of Ps from system calls, which is slow; so a Server moves at
// most (GOMAXPROCS+1)/2 connections at a time to blocking sockets (see
// Server.BlockingConns) and serves the rest on the netpoller.
//
// Close shuts the socket down, which wakes blocked calls at once; read and
// write deadlines are noticed within sockTick, the socket's receive and
// send timeouts, which bound every blocking call.
type sockConn struct {
	fd           int
	laddr, raddr net.Addr
	release      func() // gives the server's blocking slot back; once, at Close

	// ops is held shared across every system call on fd and exclusively by
	// Close, so fd is not closed (and its number reused) under a call.
	ops     sync.RWMutex
	closing atomic.Bool
	// Deadlines in Unix nanoseconds, 0 for none.
	readDeadline, writeDeadline atomic.Int64

	iov []unix.Iovec // writeBuffers' scratch; one writer at a time
}

const (
	// sockTick bounds each blocking call (SO_RCVTIMEO, SO_SNDTIMEO): how
	// late a deadline can be noticed. Only a shutdown sets one.
	sockTick = 50 * time.Millisecond
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
	switch c.(type) {
	case *net.UnixConn, *net.TCPConn:
	default:
		return nil
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
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
	tv := unix.NsecToTimeval(int64(sockTick))
	if unix.SetNonblock(fd, false) != nil ||
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv) != nil ||
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv) != nil {
		_ = unix.Close(fd)
		return nil
	}
	s := &sockConn{fd: fd, laddr: c.LocalAddr(), raddr: c.RemoteAddr(), release: release}
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
		if err := c.check(&c.readDeadline); err != nil {
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
		case err == nil:
			return n, nil
		case err == unix.EAGAIN || err == unix.EINTR:
		default:
			return 0, c.opError("read", err)
		}
	}
}

// readFull reads exactly len(p) bytes, sleeping until they are all there
// (MSG_WAITALL: one system call for a whole payload, unless a tick or a
// signal interrupts it).
func (c *sockConn) readFull(p []byte) error {
	c.ops.RLock()
	defer c.ops.RUnlock()
	for len(p) > 0 {
		if err := c.check(&c.readDeadline); err != nil {
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
		case err == nil, err == unix.EAGAIN, err == unix.EINTR:
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
		if err := c.check(&c.writeDeadline); err != nil {
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
		case nil, unix.EAGAIN, unix.EINTR:
		default:
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
	c.readDeadline.Store(deadlineNanos(t))
	c.writeDeadline.Store(deadlineNanos(t))
	return nil
}

func (c *sockConn) SetReadDeadline(t time.Time) error {
	c.readDeadline.Store(deadlineNanos(t))
	return nil
}

func (c *sockConn) SetWriteDeadline(t time.Time) error {
	c.writeDeadline.Store(deadlineNanos(t))
	return nil
}

func deadlineNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return max(t.UnixNano(), 1)
}

// eof is what a read that found the end of the stream returns: io.EOF, or
// net.ErrClosed when it was Close that shut the socket down.
func (c *sockConn) eof() error {
	if c.closing.Load() {
		return c.opError("read", net.ErrClosed)
	}
	return io.EOF
}

// check is what every turn of a blocking loop asks first: closed, or past
// the deadline d?
func (c *sockConn) check(d *atomic.Int64) error {
	if c.closing.Load() {
		return net.ErrClosed
	}
	if dl := d.Load(); dl != 0 && time.Now().UnixNano() >= dl {
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
