// Package passphrase is the KEK a person types (or keeps in a passphrase
// file): the bytes of one line, fed to the keyslot's KDF as cryptsetup
// does. It reads the line from a terminal without echo, from a file or
// from a pipe, into protected memory.
package passphrase

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/encblk/encblk/pkg/keyring"
)

// MaxLen is the longest passphrase read from a terminal or a passphrase
// file, as cryptsetup.
const MaxLen = 512

// New moves p into protected memory (p is wiped) as a KEK. It may be at
// most MaxLen bytes and not empty.
func New(p []byte) (*keyring.Secret, error) {
	if len(p) == 0 {
		return nil, errors.New("empty passphrase")
	}
	if len(p) > MaxLen {
		clear(p)
		return nil, fmt.Errorf("passphrase is longer than %d bytes", MaxLen)
	}
	return keyring.SecretFromBytes(p)
}

// Read reads a passphrase: the first line of file ("-": stdin); with no
// file, from the terminal without echo (asked twice if verify) when stdin
// is one, else one line of stdin, as cryptsetup does. what names the file
// in errors ("passphrase file").
func Read(file, what string, stdin io.Reader, stderr io.Writer, prompt string, verify bool) (*keyring.Secret, error) {
	switch file {
	case "-":
		return ReadLine(stdin)
	case "":
		if in, ok := stdin.(*os.File); ok && IsTerminal(in) {
			return Prompt(in, stderr, prompt, verify)
		}
		return ReadLine(stdin)
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer f.Close()
	return ReadLine(f)
}

// ReadLine reads one line (without its newline) of at most MaxLen bytes.
func ReadLine(r io.Reader) (*keyring.Secret, error) {
	buf, err := keyring.NewSecret(MaxLen + 2)
	if err != nil {
		return nil, err
	}
	defer buf.Destroy()
	b := buf.Bytes()
	n, err := Line(r, b)
	if err != nil {
		return nil, fmt.Errorf("read passphrase: %w", err)
	}
	if n > MaxLen {
		return nil, fmt.Errorf("passphrase is longer than %d bytes", MaxLen)
	}
	if n == 0 {
		return nil, errors.New("no passphrase given (empty input)")
	}
	p, err := keyring.NewSecret(n)
	if err != nil {
		return nil, err
	}
	copy(p.Bytes(), b[:n])
	return p, nil
}

// Line reads one line into b and returns its length, without the
// newline; it stops early at the end of the input or when b is full. It
// reads one byte at a time, so that what follows the line (another
// passphrase, a confirmation) stays unread for the next reader.
func Line(r io.Reader, b []byte) (int, error) {
	var c [1]byte
	defer clear(c[:])
	n := 0
	for n < len(b) {
		m, err := r.Read(c[:])
		if m == 1 {
			if c[0] == '\n' {
				break
			}
			b[n] = c[0]
			n++
			continue
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// Prompt reads a passphrase from the terminal tty with echo off, writing
// prompt to stderr; with verify it asks again and fails if they differ.
func Prompt(tty *os.File, stderr io.Writer, prompt string, verify bool) (*keyring.Secret, error) {
	p, err := readNoEcho(tty, stderr, prompt)
	if err != nil || !verify {
		return p, err
	}
	again, err := readNoEcho(tty, stderr, "Verify passphrase: ")
	if err != nil {
		p.Destroy()
		return nil, err
	}
	defer again.Destroy()
	if !p.Equal(again) {
		p.Destroy()
		return nil, errors.New("passphrases do not match")
	}
	return p, nil
}

func readNoEcho(tty *os.File, stderr io.Writer, prompt string) (*keyring.Secret, error) {
	fd := int(tty.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, fmt.Errorf("terminal: %w", err)
	}
	noEcho := *old
	noEcho.Lflag &^= unix.ECHO
	noEcho.Lflag |= unix.ICANON | unix.ISIG
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &noEcho); err != nil {
		return nil, fmt.Errorf("terminal: %w", err)
	}
	fmt.Fprint(stderr, prompt)
	p, err := ReadLine(tty)
	unix.IoctlSetTermios(fd, unix.TCSETS, old)
	fmt.Fprintln(stderr)
	return p, err
}
