package nbd

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// detachedPair returns a sockConn (from a connection accepted on a listener
// of network, "unix" or "tcp") and the client's end of it, both closed when
// the test ends. released counts the sockConn's release calls.
func detachedPair(t *testing.T, network string) (s *sockConn, client net.Conn, released *int) {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "s.sock")
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err = net.Dial(network, l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	released = new(int)
	s = detachSocket(c, func() { *released++ })
	if s == nil {
		t.Fatalf("detachSocket(%T) = nil", c)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, client, released
}

// within, the internal tests' hang detector, fails the test if f does not
// return in a minute (a hang detector, not a timing).
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatalf("%s hung", what)
	}
}

func TestDetachSocketOnlyPlainSockets(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if s := detachSocket(a, nil); s != nil {
		t.Fatal("detachSocket took a net.Pipe")
	}
}

// TestSockConnData: bytes written by the client in uneven slices, with
// pauses, come out of Read and readFull as they went in, on unix and TCP
// sockets; writeBuffers sends more buffers than one writev takes, and an
// EOF from the client is io.EOF, or io.ErrUnexpectedEOF inside readFull.
func TestSockConnData(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			s, client, _ := detachedPair(t, network)
			want := make([]byte, 3<<20+17)
			_, _ = rand.Read(want)
			go func() {
				for i, p := 0, want; len(p) > 0; i++ {
					n := min(len(p), 1+i*7919%(300<<10))
					if _, err := client.Write(p[:n]); err != nil {
						return
					}
					p = p[n:]
					if i%5 == 0 {
						time.Sleep(time.Millisecond)
					}
				}
			}()
			got := make([]byte, len(want))
			n, err := s.Read(got[:100])
			if err != nil || n == 0 {
				t.Fatalf("Read: %d, %v", n, err)
			}
			within(t, "readFull", func() { err = s.readFull(got[n:]) })
			if err != nil {
				t.Fatalf("readFull: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("readFull: the bytes differ from those sent")
			}

			// Back: 3000 buffers (three writevs' worth), some empty.
			var bufs [][]byte
			var sent []byte
			for i := range 3000 {
				b := want[i*1000 : i*1000+i%7*150]
				bufs = append(bufs, b)
				sent = append(sent, b...)
			}
			echo := make(chan []byte)
			go func() {
				b := make([]byte, len(sent))
				_, _ = io.ReadFull(client, b)
				echo <- b
			}()
			wn, err := s.writeBuffers(bufs)
			if err != nil || wn != int64(len(sent)) {
				t.Fatalf("writeBuffers: %d, %v; want %d", wn, err, len(sent))
			}
			if !bytes.Equal(<-echo, sent) {
				t.Fatal("writeBuffers: the client got other bytes")
			}

			if _, err := client.Write([]byte("abc")); err != nil {
				t.Fatal(err)
			}
			_ = client.Close()
			if err := s.readFull(make([]byte, 4)); err != io.ErrUnexpectedEOF {
				t.Fatalf("readFull at EOF: %v, want io.ErrUnexpectedEOF", err)
			}
			if n, err := s.Read(make([]byte, 4)); n != 0 || err != io.EOF {
				t.Fatalf("Read at EOF: %d, %v; want io.EOF", n, err)
			}
		})
	}
}

// TestSockConnCloseWakes: Close returns, and wakes a Read blocked for data,
// a readFull blocked with part of its bytes in, and a writeBuffers blocked
// on a full socket, on unix and TCP sockets; they fail with net.ErrClosed,
// and the server's slot is given back once.
func TestSockConnCloseWakes(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			s, client, released := detachedPair(t, network)
			readErr := make(chan error, 1)
			go func() {
				_, err := s.Read(make([]byte, 10))
				readErr <- err
			}()
			time.Sleep(20 * time.Millisecond) // let Read block first (the test holds either way)
			fullErr := make(chan error, 1)
			go func() {
				// 3 bytes come (to Read or here), the rest never does.
				fullErr <- s.readFull(make([]byte, 100))
			}()
			if _, err := client.Write([]byte("abc")); err != nil {
				t.Fatal(err)
			}
			writeErr := make(chan error, 1)
			go func() {
				// The client reads nothing: this fills the socket and blocks.
				_, err := s.writeBuffers([][]byte{make([]byte, 64<<20)})
				writeErr <- err
			}()
			time.Sleep(50 * time.Millisecond) // let them block (the test holds either way)
			within(t, "Close", func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			within(t, "blocked reads after Close", func() {
				// Read may have taken the 3 bytes; then readFull waits for all 100.
				if err := <-readErr; err != nil && !errors.Is(err, net.ErrClosed) {
					t.Errorf("Read after Close: %v, want data or net.ErrClosed", err)
				}
				if err := <-fullErr; !errors.Is(err, net.ErrClosed) {
					t.Errorf("readFull after Close: %v, want net.ErrClosed", err)
				}
			})
			within(t, "blocked write after Close", func() {
				if err := <-writeErr; !errors.Is(err, net.ErrClosed) {
					t.Errorf("writeBuffers after Close: %v, want net.ErrClosed", err)
				}
			})
			if err := s.Close(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("second Close: %v, want net.ErrClosed", err)
			}
			if *released != 1 {
				t.Errorf("release called %d times, want 1", *released)
			}
		})
	}
}

// TestSockConnDeadline: a read deadline that passes while Read or
// readFull is blocked ends it with os.ErrDeadlineExceeded, whether it was
// set in the past (a graceful shutdown does that) or passes later; it is
// final: clearing it does not make the socket readable again. Writing
// still works.
func TestSockConnDeadline(t *testing.T) {
	for _, tc := range []struct {
		name string
		read func(s *sockConn) error
		when time.Duration
	}{
		{"Read/now", func(s *sockConn) error { _, err := s.Read(make([]byte, 10)); return err }, 0},
		{"readFull/now", func(s *sockConn) error { return s.readFull(make([]byte, 10)) }, 0},
		{"Read/later", func(s *sockConn) error { _, err := s.Read(make([]byte, 10)); return err }, 30 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, client, _ := detachedPair(t, "tcp")
			errc := make(chan error, 1)
			go func() { errc <- tc.read(s) }()
			time.Sleep(20 * time.Millisecond) // let it block (the test holds either way)
			_ = s.SetReadDeadline(time.Now().Add(tc.when))
			within(t, "read past its deadline", func() {
				if err := <-errc; !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("blocked read after its deadline: %v, want os.ErrDeadlineExceeded", err)
				}
			})
			_ = s.SetReadDeadline(time.Time{})
			if _, err := client.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("read after the deadline was cleared: %v, want os.ErrDeadlineExceeded (final)", err)
			}
			if _, err := s.Write([]byte("y")); err != nil {
				t.Errorf("write after a read deadline: %v", err)
			}
		})
	}
}

// TestSockConnIdleSleeps: a connection waiting for its client makes no
// system calls: the blocked read sleeps until data comes (no polling
// timeout), unlike a socket with SO_RCVTIMEO.
func TestSockConnIdleSleeps(t *testing.T) {
	s, client, _ := detachedPair(t, "unix")
	tv, err := unix.GetsockoptTimeval(s.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO)
	if err != nil {
		t.Fatal(err)
	}
	if tv.Sec != 0 || tv.Usec != 0 {
		t.Fatalf("SO_RCVTIMEO %v: a blocked read would wake to poll", tv)
	}
	flags, err := unix.FcntlInt(uintptr(s.fd), unix.F_GETFL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if flags&unix.O_NONBLOCK != 0 {
		t.Fatal("the socket is non-blocking: reads would spin or need the netpoller")
	}
	got := make(chan byte, 1)
	go func() {
		b := make([]byte, 1)
		if _, err := s.Read(b); err == nil {
			got <- b[0]
		}
		close(got)
	}()
	time.Sleep(20 * time.Millisecond)
	if _, err := client.Write([]byte("z")); err != nil {
		t.Fatal(err)
	}
	within(t, "read", func() {
		if b := <-got; b != 'z' {
			t.Errorf("read %q, want z", b)
		}
	})
}

// TestBlockingSlots: a server gives at most BlockingConns slots at a time
// (default (GOMAXPROCS+1)/2, none when negative) and gives a released one
// again. TestBlockingConnsReleased checks connections release theirs.
func TestBlockingSlots(t *testing.T) {
	srv := &Server{BlockingConns: 2}
	for range 2 {
		if !srv.takeBlockingSlot() {
			t.Fatal("a slot under the limit was refused")
		}
	}
	if srv.takeBlockingSlot() {
		t.Fatal("a slot past the limit was given")
	}
	srv.releaseBlockingSlot()
	if !srv.takeBlockingSlot() {
		t.Fatal("a released slot was not given again")
	}
	if (&Server{BlockingConns: -1}).takeBlockingSlot() {
		t.Fatal("BlockingConns < 0 gave a slot")
	}
	if !(&Server{}).takeBlockingSlot() {
		t.Fatal("the default gave no slot")
	}
}
