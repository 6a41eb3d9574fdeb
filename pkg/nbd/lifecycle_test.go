package nbd_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/encblk/encblk/pkg/blockdev"
	"github.com/encblk/encblk/pkg/nbd"
)

func TestListenUnixPermissions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "nbd.sock")
	l, err := nbd.ListenUnix(ctx, path, -1)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600 socket", st.Mode())
	}
	// A second listener on a live socket is refused; a stale one replaced.
	if _, err := nbd.ListenUnix(ctx, path, -1); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("listening twice: %v, want EADDRINUSE", err)
	}
	_ = l.Close()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after Close: %v", err)
	}
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	_ = stale.Close()
	l, err = nbd.ListenUnix(ctx, path, -1)
	if err != nil {
		t.Fatalf("replacing a stale socket: %v", err)
	}
	_ = l.Close()
	// Not a socket: refused, untouched.
	if err := os.WriteFile(path, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := nbd.ListenUnix(ctx, path, -1); err == nil {
		t.Error("ListenUnix replaced a regular file")
	}

	// With a group: 0660 and that group.
	gid := os.Getgid()
	if g, err := user.LookupGroup("disk"); err == nil {
		gid, _ = strconv.Atoi(g.Gid)
	}
	gpath := filepath.Join(dir, "g.sock")
	l, err = nbd.ListenUnix(ctx, gpath, gid)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	st, err = os.Stat(gpath)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o660 || int(st.Sys().(*syscall.Stat_t).Gid) != gid {
		t.Errorf("group socket mode %v gid %d, want 0660 gid %d", st.Mode(), st.Sys().(*syscall.Stat_t).Gid, gid)
	}
}

// TestServeSeveralListeners serves one export on a unix socket and on TCP
// at once and queries both with nbdinfo.
func TestServeSeveralListeners(t *testing.T) {
	t.Parallel()
	b, _ := newFileExport(t, 1<<20, blockdev.Info{})
	ctx, cancel := context.WithCancel(context.Background())
	tl, err := nbd.ListenTCP(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "s")
	ul, err := nbd.ListenUnix(ctx, sock, -1)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	srv := &nbd.Server{Exports: nbd.StaticExports{"": {Device: b}}}
	go func() { done <- srv.Serve(ctx, tl, ul) }()
	for _, uri := range []string{"nbd://" + tl.Addr().String() + "/", "nbd+unix:///?socket=" + sock} {
		if v := nbdinfo(t, uri); v.Exports[0].Size != 1<<20 {
			t.Errorf("%s: size %d", uri, v.Exports[0].Size)
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, nbd.ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := net.Dial("tcp", tl.Addr().String()); err == nil {
		t.Error("TCP listener still open after shutdown")
	}
}

// TestConnections counts connections from the greeting on and stops
// counting each once it has ended.
func TestConnections(t *testing.T) {
	t.Parallel()
	b, _ := newFileExport(t, 1<<20, blockdev.Info{})
	s := startServer(t, nbd.StaticExports{"": {Device: b}}, nil)
	if n := s.srv.Connections(); n != 0 {
		t.Fatalf("Connections before any client: %d", n)
	}
	one := newRawClient(t, s, 3)
	two := newRawClient(t, s, 3)
	two.start("", false)
	if n := s.srv.Connections(); n != 2 {
		t.Fatalf("Connections with a client haggling and one in transmission: %d, want 2", n)
	}
	_ = one.c.Close()
	_ = two.c.Close()
	s.waitNoConnections(t)
}

// TestListenTCPNoDelay: accepted TCP connections have TCP_NODELAY (set by
// Go), so small replies are not held back by Nagle's algorithm.
func TestListenTCPNoDelay(t *testing.T) {
	t.Parallel()
	l, err := nbd.ListenTCP(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, sc := connectTo(t, l)
	raw, err := sc.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	if cerr := raw.Control(func(fd uintptr) {
		v, err = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_NODELAY)
	}); cerr != nil || err != nil {
		t.Fatalf("getsockopt: %v %v", cerr, err)
	}
	if v == 0 {
		t.Error("accepted TCP connection without TCP_NODELAY")
	}
}

// slowDevice delays writes and counts flushes, to watch a shutdown.
type slowDevice struct {
	*fileDevice
	delay   time.Duration
	writes  atomic.Int32
	flushes atomic.Int32
}

func (b *slowDevice) WriteAt(ctx context.Context, p []byte, off int64, fua bool) error {
	b.writes.Add(1)
	time.Sleep(b.delay)
	return b.fileDevice.WriteAt(ctx, p, off, fua)
}

func (b *slowDevice) Flush(ctx context.Context) error {
	b.flushes.Add(1)
	return b.fileDevice.Flush(ctx)
}

// TestGracefulShutdown cancels the server with writes in flight: each is
// still answered, the device is flushed, the connection closed and Serve
// returns ErrServerClosed.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	f, _ := newFileExport(t, 1<<20, allCaps())
	b := &slowDevice{fileDevice: f, delay: 300 * time.Millisecond}
	s := startServer(t, nbd.StaticExports{"": fullExport(b)}, nil)
	r := newRawClient(t, s, 3)
	r.start("", false)
	for i := range 4 {
		r.request(0, tCmdWrite, uint64(i), uint64(i)*4096, 4096, make([]byte, 4096))
	}
	for b.writes.Load() < 4 {
		time.Sleep(time.Millisecond)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- s.stop() }()
	for range 4 {
		if _, e, _ := r.simpleReply(0); e != 0 {
			t.Errorf("in-flight write during shutdown: errno %d", e)
		}
	}
	r.expectClosed()
	if err := <-stopped; !errors.Is(err, nbd.ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
	if b.flushes.Load() == 0 {
		t.Error("device not flushed at shutdown")
	}
	// New connections are refused once stopped.
	if c, err := net.Dial("unix", s.sock); err == nil {
		c.Close()
		t.Error("server still accepting after shutdown")
	}
}

// TestShutdownUnblocksStalledClient: a client that never reads its replies
// cannot hold a shutdown past ShutdownTimeout.
func TestShutdownUnblocksStalledClient(t *testing.T) {
	t.Parallel()
	b, _ := newFileExport(t, 32<<20, allCaps())
	s := startServer(t, nbd.StaticExports{"": fullExport(b)}, func(srv *nbd.Server) {
		srv.ShutdownTimeout = 200 * time.Millisecond
		srv.MaxInFlightBytes = 8 << 20
	})
	r := newRawClient(t, s, 3)
	r.start("", false)
	go func() {
		for i := range 64 { // 64 MiB of replies nobody reads
			r.request(0, tCmdRead, uint64(i), 0, 1<<20, nil)
		}
	}()
	time.Sleep(200 * time.Millisecond)
	s.stopWithin(t, "shutdown hung on a client that does not read")
}

// TestShutdownDuringHandshake: clients idle in option haggling, one of them
// after STARTTLS, do not hold up a shutdown.
func TestShutdownDuringHandshake(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	cfg, err := nbd.TLSConfig(pki.serverCert, pki.serverKey, "")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := newFileExport(t, 1<<20, blockdev.Info{})
	s := startServer(t, nbd.StaticExports{"": {Device: b}}, func(srv *nbd.Server) { srv.TLS = cfg })
	idle := newRawClient(t, s, 3)
	tlsClient := newRawClient(t, s, 3)
	tlsClient.expectOpt(tOptStartTLS, nil, tRepAck) // then never says hello
	s.stopWithin(t, "shutdown waited for clients in option haggling")
	idle.expectClosed()
	tlsClient.expectClosed()
}

// TestSendErrorReported: when a reply cannot be sent (the client stopped
// reading: EPIPE), ServeConn returns that error, not the read error that
// follows from the server closing the connection because of it.
func TestSendErrorReported(t *testing.T) {
	t.Parallel()
	b, _ := newFileExport(t, 4<<20, blockdev.Info{})
	srv := &nbd.Server{Exports: nbd.StaticExports{"": {Device: b}}}
	l, err := nbd.ListenUnix(context.Background(), filepath.Join(t.TempDir(), "nbd.sock"), -1)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cc, sc := connectTo(t, l)
	done := make(chan error, 1)
	go func() { done <- srv.ServeConn(context.Background(), sc) }()
	r := newRawClientConn(t, cc, 3)
	r.start("", false)
	if err := cc.(*net.UnixConn).CloseRead(); err != nil {
		t.Fatal(err)
	}
	r.request(0, tCmdRead, 1, 0, 1<<20, nil)
	err = <-done
	if !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("ServeConn after a failed reply: %v, want the send error (EPIPE)", err)
	}
}

// connectTo dials l and returns both ends of the connection, closed when
// the test ends.
func connectTo(t *testing.T, l net.Listener) (client, server net.Conn) {
	t.Helper()
	client, err := net.Dial(l.Addr().Network(), l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	server, err = l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Close() })
	return client, server
}

// TestBlockingConnsReleased: with BlockingConns 1, of three clients in
// transmission one runs on a blocking socket and two on the netpoller,
// all three are served, and the slot is free again once they are gone.
func TestBlockingConnsReleased(t *testing.T) {
	t.Parallel()
	b, _ := newFileExport(t, 1<<20, blockdev.Info{})
	s := startServer(t, nbd.StaticExports{"": {Device: b}}, func(srv *nbd.Server) { srv.BlockingConns = 1 })
	var clients []*rawClient
	for i := range 3 {
		r := newRawClient(t, s, 3)
		r.start("", false)
		p := bytes.Repeat([]byte{byte(i + 1)}, 4096)
		r.request(0, tCmdWrite, 1, uint64(i)*4096, 4096, p)
		if _, errno, _ := r.simpleReply(0); errno != 0 {
			t.Fatalf("client %d: write errno %d", i, errno)
		}
		r.request(0, tCmdRead, 2, uint64(i)*4096, 4096, nil)
		if _, errno, data := r.simpleReply(4096); errno != 0 || !bytes.Equal(data, p) {
			t.Fatalf("client %d: read back errno %d, same data %v", i, errno, bytes.Equal(data, p))
		}
		clients = append(clients, r)
	}
	if n := nbd.BlockingConnsInUse(s.srv); n != 1 {
		t.Errorf("blocking connections with three clients: %d, want 1", n)
	}
	for _, r := range clients {
		r.request(0, tCmdDisc, 3, 0, 0, nil)
		r.expectClosed()
	}
	s.waitNoConnections(t)
	if n := nbd.BlockingConnsInUse(s.srv); n != 0 {
		t.Errorf("blocking connections after the clients left: %d, want 0", n)
	}
}

// gatedFlush holds the first flush until the server's shutdown has
// cancelled it and the test opens gate, to keep a request in flight
// through a shutdown.
type gatedFlush struct {
	*fileDevice
	entered   chan struct{} // closed when the first flush starts
	cancelled chan struct{} // closed when its context is cancelled
	gate      chan struct{} // closed by open
	gateOnce  sync.Once
	calls     atomic.Int32
}

// open lets the held flush finish. A test defers it too: a failed test
// must not leave the server waiting for the flush.
func (b *gatedFlush) open() { b.gateOnce.Do(func() { close(b.gate) }) }

func newGatedFlush(t *testing.T) *gatedFlush {
	f, _ := newFileExport(t, 1<<20, allCaps())
	b := &gatedFlush{fileDevice: f, entered: make(chan struct{}), cancelled: make(chan struct{}), gate: make(chan struct{})}
	return b
}

func (b *gatedFlush) Flush(ctx context.Context) error {
	if b.calls.Add(1) == 1 {
		close(b.entered)
		<-ctx.Done()
		close(b.cancelled)
		<-b.gate
	}
	return b.fileDevice.Flush(context.WithoutCancel(ctx))
}

// TestShutdownKeepsClientWriting: during a graceful shutdown with a
// request in flight, the client can still send (on a blocking unix socket
// the server used to shut its read side down at once, which makes the
// client's writes fail with EPIPE, and libnbd or the kernel client then
// drop the connection and the reply with it; the NBD spec says a server
// shutting down SHOULD answer in-flight requests first), the in-flight
// request is answered, a request sent meanwhile is answered or refused
// with NBD_ESHUTDOWN, and the server then hangs up without waiting for
// ShutdownTimeout.
func TestShutdownKeepsClientWriting(t *testing.T) {
	t.Parallel()
	inBothModes(t, func(t *testing.T, blockingConns int) {
		b := newGatedFlush(t)
		defer b.open()
		s := startServer(t, nbd.StaticExports{"": fullExport(b)}, func(srv *nbd.Server) {
			srv.BlockingConns = blockingConns
			srv.ShutdownTimeout = time.Hour // the hard close must not be what ends it
		})
		r := newRawClient(t, s, 3)
		r.start("", false)
		// A reply in transmission, not the handshake's, proves the server
		// has taken (or not) its blocking slot: it does so between the two.
		r.request(0, tCmdRead, 3, 0, 4096, nil)
		if _, errno, _ := r.simpleReply(4096); errno != 0 {
			t.Fatalf("read before the shutdown: errno %d", errno)
		}
		if want := int64(max(blockingConns, 0)); nbd.BlockingConnsInUse(s.srv) != want {
			t.Fatalf("blocking connections: %d, want %d", nbd.BlockingConnsInUse(s.srv), want)
		}
		r.request(0, tCmdFlush, 1, 0, 0, nil)
		<-b.entered
		stopped := make(chan error, 1)
		go func() { stopped <- s.stop() }()
		<-b.cancelled
		// Let the shutdown go on (a broken server shuts the socket's read
		// side down now); the test holds either way.
		time.Sleep(50 * time.Millisecond)
		if _, err := r.c.Write(appendRequest(nil, 0, tCmdRead, 2, 0, 4096)); err != nil {
			t.Fatalf("client write during a graceful shutdown with a request in flight: %v", err)
		}
		b.open()
		for flushed := false; !flushed; {
			var h [16]byte
			r.read(h[:])
			cookie, errno := binary.BigEndian.Uint64(h[8:]), binary.BigEndian.Uint32(h[4:])
			switch {
			case cookie == 1 && errno != 0:
				t.Fatalf("in-flight flush: errno %d", errno)
			case cookie == 1:
				flushed = true
			case cookie == 2 && errno == 0:
				r.read(make([]byte, 4096))
			case cookie == 2 && errno != tESHUTDOWN:
				t.Fatalf("read sent during the shutdown: errno %d, want 0 or NBD_ESHUTDOWN", errno)
			}
		}
		r.expectClosed()
		select {
		case err := <-stopped:
			if !errors.Is(err, nbd.ErrServerClosed) {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(time.Minute):
			t.Fatal("shutdown hung after the in-flight request was answered")
		}
	})
}

// TestShutdownWithBusyClient: a graceful shutdown ends while the client
// keeps sending requests faster than the device answers them (the server
// stops reading them), without waiting for ShutdownTimeout. The budget
// is large enough that the reader never waits for it.
func TestShutdownWithBusyClient(t *testing.T) {
	t.Parallel()
	inBothModes(t, func(t *testing.T, blockingConns int) {
		f, _ := newFileExport(t, 1<<20, allCaps())
		b := &slowDevice{fileDevice: f, delay: 2 * time.Millisecond}
		s := startServer(t, nbd.StaticExports{"": fullExport(b)}, func(srv *nbd.Server) {
			srv.BlockingConns = blockingConns
			srv.ShutdownTimeout = time.Hour
			srv.MaxInFlightRequests = 4096
			srv.MaxInFlightBytes = 64 << 20
		})
		r := newRawClient(t, s, 3)
		r.start("", false)
		_ = r.c.SetDeadline(time.Time{}) // the client runs until the server hangs up
		go func() {
			_, _ = io.Copy(io.Discard, r.c) // replies are dropped
		}()
		// FUA writes: each one goes to a worker, none is run by the reader.
		req := appendRequest(nil, tFlagFUA, tCmdWrite, 1, 0, 4096)
		req = append(req, make([]byte, 4096)...)
		go func() {
			for {
				if _, err := r.c.Write(req); err != nil {
					return
				}
			}
		}()
		for b.writes.Load() < 100 {
			time.Sleep(time.Millisecond)
		}
		s.stopWithin(t, "shutdown hung while the client kept sending requests")
	})
}
