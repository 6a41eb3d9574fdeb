package passphrase

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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
	if !IsTerminal(slave) {
		t.Fatal("pty slave is not a terminal")
	}
	type result struct {
		secret string
		err    error
	}
	done := make(chan result, 1)
	var stderr bytes.Buffer
	go func() {
		p, err := Prompt(slave, &stderr, "Enter passphrase: ", false)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer p.Destroy()
		done <- result{secret: string(p.Bytes())}
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
