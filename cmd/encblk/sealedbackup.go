package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/encblk/encblk/internal/seal"
	"github.com/encblk/encblk/internal/secmem"
	"github.com/encblk/encblk/pkg/keyring"
)

// sealFlags select an encrypted (sealed) header backup: the backup is
// sealed with a passphrase of its own (argon2id + XChaCha20-Poly1305, see
// internal/seal), so that the file alone, even with a KEK it lists, opens
// nothing.
type sealFlags struct {
	encrypt    bool
	passFile   string
	memoryKiB  int
	iterations int
	parallel   int
}

func (f *sealFlags) register(fs *pflag.FlagSet, backup bool) {
	if backup {
		fs.BoolVar(&f.encrypt, "encrypt", false, "seal the backup with a passphrase (argon2id + XChaCha20-Poly1305)")
		fs.IntVar(&f.memoryKiB, "seal-memory", int(seal.DefaultParams.MemoryKiB), "argon2id memory for --encrypt, in KiB")
		fs.IntVar(&f.iterations, "seal-iterations", int(seal.DefaultParams.Time), "argon2id passes for --encrypt")
		fs.IntVar(&f.parallel, "seal-parallel", int(seal.DefaultParams.Threads), "argon2id lanes for --encrypt")
	}
	fs.StringVar(&f.passFile, "backup-passphrase-file", "", "read the backup's passphrase from the first line of this file (- for stdin; default: prompt)")
}

// passphrase reads the backup passphrase into protected memory.
func (f *sealFlags) passphrase(stdin io.Reader, stderr io.Writer, verify bool) (*secmem.Buffer, error) {
	p, err := readPassphrase(f.passFile, "backup passphrase file", stdin, stderr, "Enter the header backup's passphrase: ", verify)
	if err != nil {
		return nil, err
	}
	defer p.Destroy()
	return p.Unwrap(context.Background(), nil)
}

func (f *sealFlags) params() (seal.Params, error) {
	if f.memoryKiB <= 0 || f.memoryKiB > 1<<32-1 || f.iterations <= 0 || f.iterations > 1<<32-1 || f.parallel <= 0 || f.parallel > 255 {
		return seal.Params{}, withExit(exitUsage, errors.New("--seal-memory, --seal-iterations and --seal-parallel must be positive (lanes at most 255)"))
	}
	return seal.Params{Time: uint32(f.iterations), MemoryKiB: uint32(f.memoryKiB), Threads: uint8(f.parallel)}, nil
}

// writeBackup writes k's header backup to w, sealed if --encrypt.
func writeBackup(k *keyring.Keyring, w io.Writer, sf *sealFlags, stdin io.Reader, stderr io.Writer) error {
	if !sf.encrypt {
		return withExit(exitIO, k.Backup(w))
	}
	p, err := sf.params()
	if err != nil {
		return err
	}
	pass, err := sf.passphrase(stdin, stderr, true)
	if err != nil {
		return err
	}
	defer pass.Destroy()
	var buf bytes.Buffer
	if err := k.Backup(&buf); err != nil {
		return withExit(exitIO, err)
	}
	if err := seal.Seal(w, &buf, pass.Bytes(), p); err != nil {
		return withExit(exitIO, fmt.Errorf("sealing the header backup: %w", err))
	}
	return nil
}

// restoreBackup restores the header backup at path over dev; a sealed
// backup is opened with its passphrase first, into a private temporary
// file that is wiped and removed afterwards.
func restoreBackup(dev *os.File, path string, sf *sealFlags, stdin io.Reader, stderr io.Writer) error {
	src, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("header backup: %w", err)
	}
	defer src.Close()
	br := bufio.NewReader(src)
	if head, _ := br.Peek(len(seal.Magic)); !seal.IsSealed(head) {
		return keyring.Restore(dev, path)
	}
	pass, err := sf.passphrase(stdin, stderr, false)
	if err != nil {
		return err
	}
	defer pass.Destroy()
	dir, err := os.MkdirTemp("", "encblk-restore-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	plain := filepath.Join(dir, "header")
	tmp, err := os.OpenFile(plain, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		// Best effort: the opened backup is no more secret than a plain
		// one, but it need not linger.
		if fi, err := tmp.Stat(); err == nil {
			io.CopyN(io.NewOffsetWriter(tmp, 0), zeroReader{}, fi.Size())
		}
		tmp.Close()
	}()
	if err := seal.Open(tmp, br, pass.Bytes()); err != nil {
		if errors.Is(err, seal.ErrWrongPassphrase) {
			return withExit(exitWrongKey, fmt.Errorf("header backup %s: %w", path, err))
		}
		return withExit(exitCorrupt, fmt.Errorf("header backup %s: %w", path, err))
	}
	return keyring.Restore(dev, plain)
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
