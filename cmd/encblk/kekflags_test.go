package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/encblk/encblk/pkg/keyring"
)

// openPTY returns the master and slave ends of a new pseudo-terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// The terminal prompt reads the passphrase without echoing it and puts
// the terminal back as it was.
func TestPromptNoEcho(t *testing.T) {
	master, slave := openPTY(t)
	if !isTerminal(slave) {
		t.Fatal("pty slave is not a terminal")
	}
	type result struct {
		secret string
		err    error
	}
	done := make(chan result, 1)
	var stderr bytes.Buffer
	go func() {
		p, err := promptPassphrase(slave, &stderr, "Enter passphrase: ", false)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer p.Destroy()
		b, err := p.Unwrap(context.Background(), nil)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer b.Destroy()
		done <- result{secret: string(b.Bytes())}
	}()
	// Type only once echo is off, as a person would after the prompt.
	for i := 0; ; i++ {
		tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
		if err != nil {
			t.Fatal(err)
		}
		if tio.Lflag&unix.ECHO == 0 {
			break
		}
		if i > 500 {
			t.Fatal("echo was never turned off")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := master.WriteString("sw0rdfish typed\n"); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.secret != "sw0rdfish typed" {
		t.Fatalf("prompt returned %q, %v", r.secret, r.err)
	}
	// Everything the terminal showed comes out of the master before a
	// marker written after the prompt returned.
	if _, err := slave.WriteString("END-OF-OUTPUT\n"); err != nil {
		t.Fatal(err)
	}
	var shown []byte
	buf := make([]byte, 4096)
	for !bytes.Contains(shown, []byte("END-OF-OUTPUT")) {
		n, err := master.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		shown = append(shown, buf[:n]...)
	}
	if bytes.Contains(shown, []byte("sw0rdfish")) {
		t.Errorf("the passphrase was echoed: %q", shown)
	}
	tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil || tio.Lflag&unix.ECHO == 0 {
		t.Errorf("echo not restored (%v)", err)
	}
	if !strings.Contains(stderr.String(), "Enter passphrase: ") {
		t.Errorf("prompt not shown: %q", stderr.String())
	}
}

// confirm and readPassphraseLine share one line reader: each takes its
// line and leaves what follows (the next answer or passphrase) unread.
func TestReadLineLeavesTheRest(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		confirm bool
		pass    string // the passphrase read after the confirmation
	}{
		{"YES\nsecret\nmore", true, "secret"},
		{"  YES \nsecret", true, "secret"},
		{"yes\nsecret\n", false, "secret"},
		{"\nsecret", false, "secret"},
		{strings.Repeat("Y", 64) + "ES\nsecret", false, "ES"},
	} {
		r := strings.NewReader(tc.in)
		err := confirm(r, io.Discard, false, "test")
		if (err == nil) != tc.confirm {
			t.Errorf("%q: confirm = %v, want confirmed %v", tc.in, err, tc.confirm)
		}
		p, err := readPassphraseLine(r)
		if err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		want, err := keyring.NewPassphrase([]byte(tc.pass))
		if err != nil {
			t.Fatal(err)
		}
		if !samePassphrase(p, want) {
			t.Errorf("%q: the passphrase read after the confirmation is not %q", tc.in, tc.pass)
		}
		p.Destroy()
		want.Destroy()
	}
	if err := confirm(strings.NewReader(""), io.Discard, false, "test"); err == nil {
		t.Error("confirm accepted empty input")
	}
}
