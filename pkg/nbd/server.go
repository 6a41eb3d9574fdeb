package nbd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Server serves Exports over NBD. The zero value is not usable: Exports must
// be set. Fields must not change once Serve or ServeConn has been called.
type Server struct {
	// Exports are the devices served, by export name ("" is the default).
	Exports Exports

	// TLS, when not nil, lets clients upgrade with NBD_OPT_STARTTLS. Use
	// TLSConfig to build one (TLS 1.3, optional client-certificate
	// verification). Without it STARTTLS is refused with NBD_REP_ERR_UNSUP.
	TLS *tls.Config
	// RequireTLS refuses every option but NBD_OPT_STARTTLS and NBD_OPT_ABORT
	// until TLS is up (the spec's FORCEDTLS mode). It needs TLS.
	RequireTLS bool

	// Logger receives connection events at info level and every option and
	// command, named as in the spec, at debug level. nil discards.
	Logger *slog.Logger

	// MaxInFlightBytes bounds the payload bytes one connection holds in
	// buffers at once (requests read but not yet answered); the server
	// stops reading from a client that is past it. 0 means 32 MiB. One
	// request larger than the bound is still served, alone.
	MaxInFlightBytes int64
	// MaxInFlightRequests bounds the requests of one connection being
	// processed at once. 0 means 128.
	MaxInFlightRequests int

	// HandshakeTimeout bounds option haggling (and the TLS handshake); 0
	// means one minute. Transmission has no timeout.
	HandshakeTimeout time.Duration
	// ShutdownTimeout is how long a shutdown waits for a connection's
	// in-flight requests and replies before closing it hard; 0 means 30 s.
	ShutdownTimeout time.Duration

	// BlockingConns is how many connections at a time may run
	// transmission on a blocking socket (a thread of their own, like
	// nbdkit's; see sockConn) instead of the runtime's network poller: 0
	// means (GOMAXPROCS+1)/2, negative none. Only plain unix and TCP
	// sockets qualify, not TLS.
	BlockingConns int

	// MaxConnections bounds the connections served at once (in option
	// haggling or transmission, on all exports): a client past it is
	// closed as soon as it is accepted, before the greeting, as nbdkit's
	// limit filter does, and the refusal is logged (at most one line every
	// refusalLogEvery; see refusalLog). 0 means DefaultMaxConnections,
	// negative no limit. A connection costs about 65 KiB stalled in its
	// handshake, 20 KiB idle in transmission, and up to MaxInFlightBytes
	// of request buffers busy.
	MaxConnections int

	// IdleTimeout, when positive, ends a connection in transmission that
	// has had no request in flight for that long (no request read and
	// none unanswered), after flushing the device as a clean disconnect
	// does. 0 means never: the kernel's NBD client keeps a device's
	// connections open, idle, for as long as the device exists.
	IdleTimeout time.Duration

	conns    atomic.Int64 // connections in ServeConn now
	blocking atomic.Int64 // connections on a sockConn now
	refusals refusalLog
}

// DefaultMaxConnections is the connection limit of a Server whose
// MaxConnections is 0: room for several multi-connection clients (the
// kernel's nbd-client opens one per CPU with -connections) on a few
// exports, at most a few MiB of handshake buffers for stalled clients.
const DefaultMaxConnections = 64

// ErrTooManyConnections is returned by ServeConn for a connection it
// refused because MaxConnections were being served.
var ErrTooManyConnections = errors.New("nbd: too many connections")

// Connections is the number of connections being served now (by Serve or
// ServeConn), in option haggling or transmission, on all exports.
func (s *Server) Connections() int64 { return s.conns.Load() }

// ErrServerClosed is returned by Serve and ServeConn when ctx was cancelled
// and the server shut down gracefully.
var ErrServerClosed = errors.New("nbd: server closed")

const (
	defaultMaxInFlightBytes    = 32 << 20
	defaultMaxInFlightRequests = 128
	defaultHandshakeTimeout    = time.Minute
	defaultShutdownTimeout     = 30 * time.Second
)

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (s *Server) maxInFlightBytes() int64 {
	if s.MaxInFlightBytes > 0 {
		return s.MaxInFlightBytes
	}
	return defaultMaxInFlightBytes
}

func (s *Server) maxInFlightRequests() int {
	if s.MaxInFlightRequests > 0 {
		return s.MaxInFlightRequests
	}
	return defaultMaxInFlightRequests
}

func (s *Server) handshakeTimeout() time.Duration {
	if s.HandshakeTimeout > 0 {
		return s.HandshakeTimeout
	}
	return defaultHandshakeTimeout
}

func (s *Server) shutdownTimeout() time.Duration {
	if s.ShutdownTimeout > 0 {
		return s.ShutdownTimeout
	}
	return defaultShutdownTimeout
}

// takeBlockingSlot reserves one of the BlockingConns slots; the caller
// gives it back with releaseBlockingSlot.
func (s *Server) takeBlockingSlot() bool {
	limit := int64(s.BlockingConns)
	if limit == 0 {
		limit = int64(runtime.GOMAXPROCS(0)+1) / 2
	}
	for {
		n := s.blocking.Load()
		if n >= limit {
			return false
		}
		if s.blocking.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (s *Server) releaseBlockingSlot() { s.blocking.Add(-1) }

func (s *Server) maxConnections() int64 {
	switch {
	case s.MaxConnections > 0:
		return int64(s.MaxConnections)
	case s.MaxConnections < 0:
		return -1
	}
	return DefaultMaxConnections
}

// admit counts a new connection in unless MaxConnections are being
// served; the caller takes it out again (s.conns.Add(-1)) when it ends.
func (s *Server) admit() bool {
	limit := s.maxConnections()
	for {
		n := s.conns.Load()
		if limit >= 0 && n >= limit {
			return false
		}
		if s.conns.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// refuse logs a connection past MaxConnections, without flooding the log,
// and closes it.
func (s *Server) refuse(c net.Conn) {
	if n := s.refusals.note(time.Now()); n > 0 {
		s.logger().Warn("nbd connections refused: too many connections",
			"limit", s.maxConnections(), "refused", n, "last_remote", remoteName(c))
	}
	_ = c.Close()
}

func (s *Server) check() error {
	if s.Exports == nil {
		return errors.New("nbd: Server.Exports is nil")
	}
	if s.RequireTLS && s.TLS == nil {
		return errors.New("nbd: Server.RequireTLS without a TLS config")
	}
	return nil
}

// Serve accepts connections on every listener and serves each until ctx is
// cancelled. Then it shuts down gracefully: it stops accepting (closing the
// listeners), lets every connection finish its in-flight requests, flushes
// and closes it, and returns ErrServerClosed once all are gone. An accept
// error other than a temporary one stops Serve the same way and is returned.
func (s *Server) Serve(ctx context.Context, listeners ...net.Listener) error {
	if err := s.check(); err != nil {
		return err
	}
	if len(listeners) == 0 {
		return errors.New("nbd: Serve with no listener")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	log := s.logger()

	var (
		conns     sync.WaitGroup
		accepts   sync.WaitGroup
		errOnce   sync.Once
		acceptErr error
	)
	for _, l := range listeners {
		accepts.Add(1)
		go func() {
			defer accepts.Done()
			for {
				c, err := l.Accept()
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						time.Sleep(10 * time.Millisecond)
						continue
					}
					errOnce.Do(func() { acceptErr = fmt.Errorf("nbd: accept on %s: %w", l.Addr(), err) })
					cancel()
					return
				}
				// Refused here, not in ServeConn: a flood of clients past
				// the limit costs no goroutine each.
				if !s.admit() {
					s.refuse(c)
					continue
				}
				conns.Add(1)
				go func() {
					defer conns.Done()
					defer s.conns.Add(-1)
					if err := s.serveConn(ctx, c); err != nil && !errors.Is(err, ErrServerClosed) {
						log.Info("nbd connection ended", "remote", c.RemoteAddr().String(), "err", err)
					}
				}()
			}
		}()
	}
	<-ctx.Done()
	for _, l := range listeners {
		_ = l.Close()
	}
	accepts.Wait()
	conns.Wait()
	if acceptErr != nil {
		return acceptErr
	}
	return ErrServerClosed
}

// ServeConn runs the NBD protocol on one connection until the client
// disconnects or ctx is cancelled, and closes c. It returns nil after a
// clean disconnect (NBD_OPT_ABORT, NBD_CMD_DISC), ErrServerClosed after a
// graceful shutdown, ErrTooManyConnections when MaxConnections were being
// served already, and otherwise the error that ended the connection.
// In transmission a plain unix or TCP c may have its socket moved to a
// blocking one (see BlockingConns) and c closed: closing c or setting its
// deadlines from outside then has no effect; cancel ctx to end it.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) error {
	if err := s.check(); err != nil {
		_ = c.Close()
		return err
	}
	if !s.admit() {
		s.refuse(c)
		return ErrTooManyConnections
	}
	defer s.conns.Add(-1)
	return s.serveConn(ctx, c)
}

// serveConn is ServeConn for a connection admitted and counted.
func (s *Server) serveConn(ctx context.Context, c net.Conn) error {
	log := s.logger().With("remote", remoteName(c))
	sess := &session{srv: s, conn: c, log: log}
	defer func() { _ = sess.conn.Close() }()

	// Option haggling under a deadline; a shutdown interrupts it.
	_ = c.SetDeadline(time.Now().Add(s.handshakeTimeout()))
	// c, not sess.conn: negotiation may replace that with a TLS conn; a
	// deadline on the socket underneath stops both.
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	exp, err := sess.negotiate(ctx)
	stopped := !stop()
	if err != nil {
		if stopped || ctx.Err() != nil {
			return ErrServerClosed
		}
		if errors.Is(err, errAbort) {
			return nil
		}
		return err
	}
	if stopped {
		return ErrServerClosed
	}
	_ = sess.conn.SetDeadline(time.Time{})
	setSendBuffer(c)
	sess.detach()
	log.Debug("nbd transmission", "export", exp.name, "size", exp.size, "structured", sess.structured)
	return newTransmission(sess, exp).run(ctx, s.shutdownTimeout(), s.IdleTimeout)
}

// sendBufferSize is the socket send buffer asked for in transmission: a
// whole 1 MiB read reply and more fits, so the writer rarely finds the
// socket full and parks on the poller for each slice of a large reply
// (perf, 1 MiB sequential reads over a unix socket: about 40% more
// throughput than the 208 KiB default). The kernel caps it at
// net.core.wmem_max: that was 4 MiB on the host measured, but is 208 KiB
// on a stock Debian kernel, where the buffer only doubles (the kernel
// doubles what it grants) unless the administrator raises the sysctl.
const sendBufferSize = 4 << 20

// setSendBuffer raises c's socket send buffer to sendBufferSize where the
// socket allows (unix and TCP sockets; not a net.Pipe). Best effort: the
// buffer size affects speed only.
func setSendBuffer(c net.Conn) {
	if w, ok := c.(interface{ SetWriteBuffer(int) error }); ok {
		_ = w.SetWriteBuffer(sendBufferSize)
	}
}

func remoteName(c net.Conn) string {
	if a := c.RemoteAddr(); a != nil && a.String() != "" {
		return a.String()
	}
	return "local"
}

// errAbort ends negotiation on the client's NBD_OPT_ABORT.
var errAbort = errors.New("nbd: client aborted negotiation")
