package nbd_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/encblk/encblk/internal/testutil"
	"github.com/encblk/encblk/pkg/blockdev"
	"github.com/encblk/encblk/pkg/nbd"
)

// logCapture is a server log the test reads back, also shown with -v.
type logCapture struct {
	t testing.TB
	testutil.SyncBuffer
}

func (l *logCapture) Write(p []byte) (int, error) {
	_, _ = l.SyncBuffer.Write(p)
	return testWriter{l.t}.Write(p)
}

func (l *logCapture) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, nil))
}

// expectRefused checks that the server closes a new connection before its
// greeting.
func expectRefused(t *testing.T, s *testServer) {
	t.Helper()
	c := s.dial(t)
	_ = c.SetReadDeadline(time.Now().Add(time.Minute)) // hang detector
	n, err := io.ReadFull(c, make([]byte, 18))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("a connection past the limit was neither served nor closed")
	}
	if err == nil {
		t.Fatal("a connection past the limit got the greeting")
	}
	if n != 0 {
		t.Fatalf("a connection past the limit got %d bytes, then %v", n, err)
	}
}

// TestMaxConnections: with two connections being served (one in
// transmission, one stalled in its handshake), a third client, nbdinfo,
// is refused, as are raw connections, with one log line for all the
// refusals; once the two leave, nbdinfo is served.
func TestMaxConnections(t *testing.T) {
	t.Parallel()
	nbdinfoBin := testutil.RequireTool(t, "nbdinfo", "libnbd-bin")
	b, _ := newFileExport(t, 1<<20, blockdev.Info{})
	logs := &logCapture{t: t}
	s := startServer(t, nbd.StaticExports{"": {Device: b}}, func(srv *nbd.Server) {
		srv.MaxConnections = 2
		srv.Logger = logs.logger()
		nbd.SetRefusalLogEvery(srv, time.Hour) // one line for the whole test
	})
	busy := newRawClient(t, s, 3)
	busy.start("", false)
	stalled := newRawClient(t, s, 3) // greeted, then says nothing more

	cmd := exec.Command(nbdinfoBin, s.uri(""))
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("nbdinfo was served past the limit:\n%s", out)
	}
	for range 5 {
		expectRefused(t, s)
	}
	if n := strings.Count(logs.String(), "too many connections"); n != 1 {
		t.Errorf("%d log lines about refused connections, want 1:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "limit=2 refused=1") {
		t.Errorf("the refusal line does not say the limit and count:\n%s", logs)
	}

	busy.request(0, tCmdDisc, 1, 0, 0, nil)
	busy.expectClosed()
	_ = stalled.c.Close()
	s.waitNoConnections(t)
	if v := nbdinfo(t, s.uri("")); len(v.Exports) != 1 {
		t.Fatalf("nbdinfo after the clients left: %d exports", len(v.Exports))
	}
}

// TestServeConnMaxConnections: ServeConn refuses past the limit too, and
// says why.
func TestServeConnMaxConnections(t *testing.T) {
	t.Parallel()
	b, _ := newFileExport(t, 1<<20, blockdev.Info{})
	srv := &nbd.Server{Exports: nbd.StaticExports{"": {Device: b}}, MaxConnections: 1}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c1, p1 := net.Pipe()
	defer p1.Close()
	done := make(chan error, 1)
	go func() { done <- srv.ServeConn(ctx, c1) }()
	// The greeting's arrival says the first connection is being served.
	if _, err := io.ReadFull(p1, make([]byte, 18)); err != nil {
		t.Fatal(err)
	}
	c2, p2 := net.Pipe()
	defer p2.Close()
	if err := srv.ServeConn(ctx, c2); !errors.Is(err, nbd.ErrTooManyConnections) {
		t.Errorf("second ServeConn: %v, want ErrTooManyConnections", err)
	}
	if _, err := p2.Read(make([]byte, 1)); err == nil {
		t.Error("the refused connection is still open")
	}
	cancel()
	if err := <-done; !errors.Is(err, nbd.ErrServerClosed) {
		t.Errorf("first ServeConn: %v", err)
	}
}

// flushCounter counts the device's flushes and holds the first one until
// open is called.
type flushCounter struct {
	*fileDevice
	flushes  atomic.Int64
	gate     chan struct{}
	entered  chan struct{}
	openOnce sync.Once
}

func newFlushCounter(f *fileDevice) *flushCounter {
	return &flushCounter{fileDevice: f, gate: make(chan struct{}), entered: make(chan struct{})}
}

func (b *flushCounter) open() { b.openOnce.Do(func() { close(b.gate) }) }

func (b *flushCounter) Flush(ctx context.Context) error {
	if b.flushes.Add(1) == 1 {
		close(b.entered)
		<-b.gate
	}
	return b.fileDevice.Flush(ctx)
}

// TestIdleTimeout: a connection in transmission with nothing in flight is
// closed once IdleTimeout has passed, its writes flushed; a request that
// runs longer than IdleTimeout is not cut off. (The client sends its
// requests within IdleTimeout of the handshake: half a second, time
// enough on a loaded machine.)
func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	inBothModes(t, func(t *testing.T, blockingConns int) {
		f, _ := newFileExport(t, 1<<20, allCaps())
		b := newFlushCounter(f)
		logs := &logCapture{t: t}
		const idle = 500 * time.Millisecond
		s := startServer(t, nbd.StaticExports{"": fullExport(b)}, func(srv *nbd.Server) {
			srv.BlockingConns = blockingConns
			srv.IdleTimeout = idle
			srv.Logger = logs.logger()
		})
		t.Cleanup(b.open) // before the server's cleanup stops it
		r := newRawClient(t, s, 3)
		r.start("", false)
		// A write, and a flush held for several idle timeouts: the
		// connection is busy, not idle. (On a machine so loaded that the
		// server's timer runs late this checks less, never fails wrongly.)
		req := appendRequest(nil, 0, tCmdWrite, 1, 0, 4096)
		req = append(req, bytes.Repeat([]byte{7}, 4096)...)
		r.write(appendRequest(req, 0, tCmdFlush, 2, 0, 0))
		if cookie, errno, _ := r.simpleReply(0); cookie != 1 || errno != 0 {
			t.Fatalf("write: cookie %d errno %d", cookie, errno)
		}
		<-b.entered
		time.Sleep(4 * idle)
		b.open()
		if cookie, errno, _ := r.simpleReply(0); cookie != 2 || errno != 0 {
			t.Fatalf("flush held past the idle timeout: cookie %d errno %d", cookie, errno)
		}
		// Now idle: the server hangs up (expectClosed fails after 30 s).
		r.expectClosed()
		s.waitNoConnections(t)
		// The client's flush was one; the server's at the end is another
		// (which may have come before the test looked: not counted from
		// here).
		if b.flushes.Load() < 2 {
			t.Error("the device was not flushed when the idle connection ended")
		}
		if !strings.Contains(logs.String(), "connection idle for 500ms") {
			t.Errorf("no log line says the connection ended idle:\n%s", logs)
		}
	})
}

// TestIdleTimeoutQemu: a real client's idle connection (qemu-io, sleeping
// between two reads) is closed by the server, and the slot it held is
// free again.
func TestIdleTimeoutQemu(t *testing.T) {
	t.Parallel()
	qemuIO := testutil.RequireTool(t, "qemu-io", "qemu-utils")
	b, _ := newFileExport(t, 1<<20, allCaps())
	logs := &logCapture{t: t}
	s := startServer(t, nbd.StaticExports{"": fullExport(b)}, func(srv *nbd.Server) {
		srv.IdleTimeout = 50 * time.Millisecond
		srv.Logger = logs.logger()
	})
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, qemuIO, "-f", "raw", "-c", "read 0 4k", "-c", "sleep 600000", s.uri(""))
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	for i := 0; !strings.Contains(logs.String(), "connection idle"); i++ {
		if i == 600 {
			t.Fatalf("qemu-io's idle connection was not closed within a minute:\n%s", logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.waitNoConnections(t)
}
