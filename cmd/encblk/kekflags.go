package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/encblk/encblk/internal/secmem"
	"github.com/encblk/encblk/pkg/keyring"
)

// kek is a KEK read from the command line's sources: it can unlock
// (Identity) and be given a new keyslot (Recipient).
type kek interface {
	keyring.Identity
	keyring.Recipient
	Destroy()
}

// kekFlags are cryptsetup-style flags naming where a KEK comes from. Secrets
// never travel in flag values: only file names do.
//
//	--key-file F         raw bytes of F, a trailing newline included ("-": stdin)
//	--passphrase-file F  first line of F, like a typed passphrase ("-": stdin)
//	--kmip CONFIG        a KMIP key server holds it (CONFIG: client configuration)
//	(neither)            prompt on the terminal without echo; if stdin is not
//	                     a terminal, read one line from it as cryptsetup does
type kekFlags struct {
	keyFile        string
	passphraseFile string
	kmipConfig     string
	what           string // "" for the volume's KEK, "new " for a new one
}

// register adds the flags with an optional prefix ("new-") for commands
// that take two KEKs.
func (f *kekFlags) register(fs *pflag.FlagSet, prefix string) {
	what := "the KEK"
	if prefix != "" {
		what = "the new KEK"
		f.what = "new "
	}
	fs.StringVar(&f.keyFile, prefix+"key-file", "", "read "+what+" from this key file, every byte counts (- for stdin)")
	fs.StringVar(&f.passphraseFile, prefix+"passphrase-file", "", "read "+what+" passphrase from the first line of this file (- for stdin)")
	fs.StringVar(&f.kmipConfig, prefix+"kmip", "", what+" is held by a KMIP key server; this file is the client configuration (see encblk kmip --help)")
}

// read returns the KEK. verify asks twice when prompting (new KEKs).
func (f *kekFlags) read(stdin io.Reader, stderr io.Writer, verify bool) (kek, error) {
	switch {
	case f.keyFile != "" && f.passphraseFile != "":
		return nil, withExit(exitUsage, fmt.Errorf("--%skey-file and --%spassphrase-file are exclusive", f.prefix(), f.prefix()))
	case f.kmipConfig != "" && (f.keyFile != "" || f.passphraseFile != ""):
		return nil, withExit(exitUsage, fmt.Errorf("--%skmip excludes --%skey-file and --%spassphrase-file", f.prefix(), f.prefix(), f.prefix()))
	case f.kmipConfig != "":
		k, err := kmipKEK(f.kmipConfig, nil)
		if err != nil {
			return nil, err
		}
		return k, nil
	case f.keyFile == "-":
		return keyring.ReadKeyFile(stdin)
	case f.keyFile != "":
		return keyring.OpenKeyFile(f.keyFile)
	}
	return readPassphrase(f.passphraseFile, "passphrase file", stdin, stderr, "Enter "+f.what+"passphrase: ", verify)
}

// readPassphrase reads a passphrase: the first line of file ("-": stdin);
// with no file, from the terminal without echo (asked twice if verify),
// or one line of stdin when that is no terminal, as cryptsetup does. what
// names the file in errors.
func readPassphrase(file, what string, stdin io.Reader, stderr io.Writer, prompt string, verify bool) (*keyring.Passphrase, error) {
	switch file {
	case "-":
		return readPassphraseLine(stdin)
	case "":
		if in, ok := stdin.(*os.File); ok && isTerminal(in) {
			return promptPassphrase(in, stderr, prompt, verify)
		}
		return readPassphraseLine(stdin)
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer f.Close()
	return readPassphraseLine(f)
}

func (f *kekFlags) prefix() string {
	if f.what != "" {
		return "new-"
	}
	return ""
}

// given reports whether a file source was named.
func (f *kekFlags) given() bool {
	return f.keyFile != "" || f.passphraseFile != "" || f.kmipConfig != ""
}

// readPassphraseLine reads one line (without its newline) of at most
// keyring.MaxPassphraseLen bytes.
func readPassphraseLine(r io.Reader) (*keyring.Passphrase, error) {
	buf, err := secmem.New(keyring.MaxPassphraseLen + 2)
	if err != nil {
		return nil, err
	}
	defer buf.Destroy()
	b := buf.Bytes()
	n, err := readLine(r, b)
	if err != nil {
		return nil, fmt.Errorf("read passphrase: %w", err)
	}
	if n > keyring.MaxPassphraseLen {
		return nil, fmt.Errorf("passphrase is longer than %d bytes", keyring.MaxPassphraseLen)
	}
	if n == 0 {
		return nil, errors.New("no passphrase given (empty input)")
	}
	return keyring.NewPassphrase(bytes.Clone(b[:n]))
}

// readLine reads one line into b and returns its length, without the
// newline; it stops early at the end of the input or when b is full. It
// reads one byte at a time, so that what follows the line (another
// passphrase, a confirmation) stays unread for the next reader.
func readLine(r io.Reader, b []byte) (int, error) {
	var c [1]byte
	defer secmem.Wipe(c[:])
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

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// promptPassphrase reads a passphrase from the terminal with echo off.
func promptPassphrase(tty *os.File, stderr io.Writer, prompt string, verify bool) (*keyring.Passphrase, error) {
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
	if !samePassphrase(p, again) {
		p.Destroy()
		return nil, errors.New("passphrases do not match")
	}
	return p, nil
}

func samePassphrase(a, b *keyring.Passphrase) bool {
	x, err1 := a.Unwrap(context.Background(), nil)
	y, err2 := b.Unwrap(context.Background(), nil)
	if err1 != nil || err2 != nil {
		return false
	}
	defer x.Destroy()
	defer y.Destroy()
	return bytes.Equal(x.Bytes(), y.Bytes())
}

func readNoEcho(tty *os.File, stderr io.Writer, prompt string) (*keyring.Passphrase, error) {
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
	p, err := readPassphraseLine(tty)
	unix.IoctlSetTermios(fd, unix.TCSETS, old)
	fmt.Fprintln(stderr)
	return p, err
}
