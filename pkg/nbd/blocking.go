package nbd

import (
	"net"
	"syscall"
	"time"
)

// halfCloser is a connection whose directions can be shut down separately
// (*net.TCPConn, *net.UnixConn).
type halfCloser interface {
	CloseRead() error
	CloseWrite() error
}

// useBlockingIO switches a plain (not TLS) socket to blocking mode for the
// transmission phase. Reads and writes then wait in the kernel, as in a
// threaded C server, instead of returning EAGAIN and going through the
// runtime's poller: that saves a failed read and an epoll_wait on most
// requests, a large part of the cost of a small request. Deadlines no
// longer interrupt I/O in this mode; stopRead and abort shut the socket
// down instead. It reports whether the switch was made.
func useBlockingIO(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	if _, ok := c.(halfCloser); !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = syscall.SetNonblock(int(fd), false) }); err != nil || serr != nil {
		return false
	}
	return true
}

// stopRead makes a pending or future read return: the reader then ends.
func stopRead(c net.Conn, blocking bool) {
	if hc, ok := c.(halfCloser); ok && blocking {
		_ = hc.CloseRead()
		return
	}
	_ = c.SetReadDeadline(aLongTimeAgo)
}

// abort ends the connection at once, waking any reader or writer blocked in
// the kernel, then closes it.
func abort(c net.Conn, blocking bool) {
	if hc, ok := c.(halfCloser); ok && blocking {
		_ = hc.CloseRead()
		_ = hc.CloseWrite()
	}
	_ = c.Close()
}

// aLongTimeAgo is a deadline that has passed.
var aLongTimeAgo = time.Unix(1, 0)

// A note on Close: the runtime believes the socket is still non-blocking,
// so net.Conn.Close waits for I/O in progress to return. Every path that
// closes the connection while the reader or a writer may be inside a read
// or write uses abort (or stopRead first), which shuts the socket down and
// so makes that I/O return.
