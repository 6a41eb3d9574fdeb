package nbd_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/encblk/encblk/internal/backing"
	"github.com/encblk/encblk/pkg/blockdev"
	"github.com/encblk/encblk/pkg/nbd"
)

// testServer is a pkg/nbd server on a unix socket in a temporary directory,
// stopped when the test ends.
type testServer struct {
	sock     string
	srv      *nbd.Server
	done     chan error
	cancel   context.CancelFunc
	stopOnce sync.Once
	err      error
}

// stop shuts the server down gracefully and returns what Serve returned.
func (s *testServer) stop() error {
	s.stopOnce.Do(func() {
		s.cancel()
		s.err = <-s.done
	})
	return s.err
}

// stopWithin stops the server and checks Serve returned ErrServerClosed;
// if that takes a minute (a hang detector, not a timing) it fails with
// hung.
func (s *testServer) stopWithin(t testing.TB, hung string) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- s.stop() }()
	select {
	case err := <-done:
		if !errors.Is(err, nbd.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal(hung)
	}
}

// fileDevice is backing.Plain over a regular file, advertising the
// capabilities a test chooses instead of Plain's own.
type fileDevice struct {
	*backing.Plain
	info blockdev.Info
}

func (d *fileDevice) Info() blockdev.Info { return d.info }

// allCaps is every capability a fileDevice has.
func allCaps() blockdev.Info {
	return blockdev.Info{CanTrim: true, CanZero: true, CanFastZero: true, CanFUA: true, CanFlush: true}
}

// fullExport serves d with every NBD capability: multi-conn and cache
// (backing.Plain prefetches).
func fullExport(d blockdev.Device) nbd.Export {
	return nbd.Export{Device: d, MultiConn: true, Cache: true}
}

// newFileExport creates a file of size bytes (sparse) and opens it as a
// device that advertises info (read-only when info.ReadOnly).
func newFileExport(t testing.TB, size int64, info blockdev.Info) (*fileDevice, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
	f, err := backing.Open(path, backing.Options{ReadOnly: info.ReadOnly})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	p, err := backing.NewPlain(f)
	if err != nil {
		t.Fatal(err)
	}
	return &fileDevice{Plain: p, info: info}, path
}

// startServer serves exports on a fresh unix socket; configure may adjust
// the server before it starts.
func startServer(t testing.TB, exports nbd.Exports, configure func(*nbd.Server)) *testServer {
	t.Helper()
	dir, err := os.MkdirTemp("", "nbdt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s")
	ctx, cancel := context.WithCancel(context.Background())
	l, err := nbd.ListenUnix(ctx, sock, -1)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	level := slog.LevelInfo
	if os.Getenv("NBD_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	srv := &nbd.Server{
		Exports: exports,
		Logger:  slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level})),
	}
	if configure != nil {
		configure(srv)
	}
	ts := &testServer{sock: sock, srv: srv, done: make(chan error, 1), cancel: cancel}
	go func() { ts.done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		if err := ts.stop(); !errors.Is(err, nbd.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return ts
}

// uri is the NBD URI of an export, for libnbd tools.
func (s *testServer) uri(export string) string {
	return "nbd+unix:///" + export + "?socket=" + s.sock
}

func (s *testServer) dial(t testing.TB) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", s.sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// testWriter sends log output to t.Log, so it shows with -v or on failure.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

// inBothModes runs f as parallel subtests, once with the server's
// connections on blocking sockets (BlockingConns 1: the first connection)
// and once on the Go runtime's network poller (BlockingConns -1).
func inBothModes(t *testing.T, f func(t *testing.T, blockingConns int)) {
	t.Helper()
	for _, mode := range []struct {
		name     string
		blocking int
	}{{"blocking", 1}, {"netpoller", -1}} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			f(t, mode.blocking)
		})
	}
}

// waitNoConnections waits until the server has no connection left (each
// ServeConn returned), failing if that takes a minute: a leak detector,
// not a timing.
func (s *testServer) waitNoConnections(t testing.TB) {
	t.Helper()
	for i := 0; s.srv.Connections() != 0; i++ {
		if i == 6000 {
			t.Fatalf("%d connections still open a minute after the clients left", s.srv.Connections())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
