package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"filippo.io/age"
	"filippo.io/age/armor"
	"github.com/spf13/pflag"

	"github.com/encblk/encblk/internal/agekeys"
	"github.com/encblk/encblk/internal/secmem"
	"github.com/encblk/encblk/pkg/kek/passphrase"
	"github.com/encblk/encblk/pkg/keyring"
)

// backupCrypto are the flags of an encrypted header backup, which is an age
// file (age-encryption.org/v1): any age client opens it, and
// `age -d -i KEY backup.age > hdr` gives the file cryptsetup
// luksHeaderRestore takes. It is encrypted to age recipients (the public
// keys of whoever may restore it) or, with a passphrase, to age's scrypt
// recipient.
type backupCrypto struct {
	encrypt         bool
	recipients      []string
	recipientsFiles []string
	identities      []string
	passFile        string
	workFactor      int
	armor           bool
}

// defaultScryptWorkFactor is age's: 2^18 rounds, about a second.
const defaultScryptWorkFactor = 18

// maxScryptWorkFactor is the highest work factor age (and so encblk)
// opens by default; a backup made with more would not open.
const maxScryptWorkFactor = 22

func (f *backupCrypto) register(fs *pflag.FlagSet, backup bool) {
	if backup {
		fs.BoolVar(&f.encrypt, "encrypt", false, "write an age file: to --recipient/--recipients-file, or else with a passphrase")
		fs.StringArrayVarP(&f.recipients, "recipient", "r", nil, "encrypt to this age recipient (age1…, ssh-ed25519 …, ssh-rsa …); repeatable")
		fs.StringArrayVarP(&f.recipientsFiles, "recipients-file", "R", nil, "encrypt to the recipients in this file, one a line; repeatable")
		fs.IntVar(&f.workFactor, "scrypt-work-factor", defaultScryptWorkFactor, fmt.Sprintf("with a passphrase: scrypt work factor, log2 of N (1 to %d; below %d is weaker than age's default)", maxScryptWorkFactor, defaultScryptWorkFactor))
		fs.BoolVarP(&f.armor, "armor", "a", false, "write the age file PEM-armored (text), as age -a")
	} else {
		fs.StringArrayVarP(&f.identities, "identity", "i", nil, "open an age backup with this identity file (age-keygen's, or an unencrypted SSH private key); repeatable")
	}
	fs.StringVar(&f.passFile, "backup-passphrase-file", "", "the age backup's passphrase is the first line of this file (- for stdin; default: prompt)")
}

// recipientsFor returns the recipients the backup is encrypted to, or nil
// for a plain backup. A passphrase is read here.
func (f *backupCrypto) recipientsFor(stdin io.Reader, stderr io.Writer) ([]age.Recipient, error) {
	named := len(f.recipients) > 0 || len(f.recipientsFiles) > 0
	switch {
	case !f.encrypt && !named:
		if f.passFile != "" {
			return nil, withExit(exitUsage, errors.New("--backup-passphrase-file needs --encrypt"))
		}
		return nil, nil
	case named && f.passFile != "":
		return nil, withExit(exitUsage, errors.New("--backup-passphrase-file excludes --recipient and --recipients-file: an age file takes a passphrase or recipients, not both"))
	case named:
		rs, err := parseRecipients("--recipient", f.recipients, f.recipientsFiles)
		if err != nil {
			return nil, err
		}
		return agekeys.Ages(rs), nil
	}
	if f.workFactor < 1 || f.workFactor > maxScryptWorkFactor {
		return nil, withExit(exitUsage, fmt.Errorf("--scrypt-work-factor %d: want 1 to %d", f.workFactor, maxScryptWorkFactor))
	}
	pass, err := f.passphrase(stdin, stderr, true)
	if err != nil {
		return nil, err
	}
	defer pass.Destroy()
	// age takes the passphrase as a string and keeps a copy on the Go
	// heap, which cannot be wiped: a limit of the library.
	r, err := age.NewScryptRecipient(string(pass.Bytes()))
	if err != nil {
		return nil, withExit(exitUsage, err)
	}
	r.SetWorkFactor(f.workFactor)
	return []age.Recipient{r}, nil
}

// parseRecipients parses recipients given one by one with flag, and the
// recipients files named in files; any error is a usage error.
func parseRecipients(flag string, recipients, files []string) ([]agekeys.Recipient, error) {
	var out []agekeys.Recipient
	for _, s := range recipients {
		r, err := agekeys.ParseRecipient(s)
		if err != nil {
			return nil, withExit(exitUsage, fmt.Errorf("%s: %w", flag, err))
		}
		out = append(out, r)
	}
	for _, name := range files {
		file, err := os.Open(name)
		if err != nil {
			return nil, withExit(exitUsage, fmt.Errorf("recipients file: %w", err))
		}
		rs, err := agekeys.ReadRecipients(file, name)
		file.Close()
		if err != nil {
			return nil, withExit(exitUsage, err)
		}
		out = append(out, rs...)
	}
	return out, nil
}

// passphrase reads the backup passphrase into protected memory.
func (f *backupCrypto) passphrase(stdin io.Reader, stderr io.Writer, verify bool) (*secmem.Buffer, error) {
	p, err := passphrase.Read(f.passFile, "backup passphrase file", stdin, stderr, "Enter the header backup's passphrase: ", verify)
	if err != nil {
		return nil, err
	}
	return bufferOf(p)
}

// writeBackup writes k's header backup to w: plain, or an age file.
func writeBackup(k *keyring.Keyring, w io.Writer, f *backupCrypto, stdin io.Reader, stderr io.Writer) error {
	recipients, err := f.recipientsFor(stdin, stderr)
	if err != nil {
		return err
	}
	if recipients == nil {
		if f.armor {
			return withExit(exitUsage, errors.New("--armor needs --encrypt or a recipient"))
		}
		return withExit(exitIO, k.Backup(w))
	}
	out := w
	var armored io.WriteCloser
	if f.armor {
		armored = armor.NewWriter(w)
		out = armored
	}
	enc, err := age.Encrypt(out, recipients...)
	if err != nil {
		return withExit(exitUsage, fmt.Errorf("age: %w", err))
	}
	if err := k.Backup(enc); err != nil {
		return withExit(exitIO, err)
	}
	if err := enc.Close(); err != nil {
		return withExit(exitIO, err)
	}
	if armored != nil {
		return withExit(exitIO, armored.Close())
	}
	return nil
}

// legacySealMagic starts the passphrase-sealed backups (argon2id +
// XChaCha20-Poly1305, internal/seal) that --encrypt wrote for a few weeks
// before any release; the format is gone, and restore says so rather than
// call the file "not a LUKS volume".
const legacySealMagic = "encblk-sealed-v1"

// restoreBackup restores the header backup at path over dev. An age file
// is opened with --identity, or else with its passphrase, and checked to
// its last byte before anything is written.
func restoreBackup(dev *os.File, path string, f *backupCrypto, stdin io.Reader, stderr io.Writer) error {
	ids, err := readAgeIdentities(f.identities)
	if err != nil {
		return err
	}
	src, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("header backup: %w", err)
	}
	defer src.Close()
	br := bufio.NewReader(src)
	head, _ := br.Peek(1024)
	if strings.HasPrefix(string(head), legacySealMagic) {
		return withExit(exitCorrupt, fmt.Errorf("header backup %s is in encblk's pre-age sealed format (%s), which this encblk no longer reads: open it with an encblk built before the age format replaced internal/seal", path, strings.TrimSpace(legacySealMagic)))
	}
	if !agekeys.IsAgeFile(head) {
		if len(ids) > 0 || f.passFile != "" {
			return withExit(exitUsage, fmt.Errorf("header backup %s is not an age file: restore it without --identity or --backup-passphrase-file", path))
		}
		return restoreFrom(dev, path, br)
	}
	pass := &passphraseIdentity{read: func() (*secmem.Buffer, error) { return f.passphrase(stdin, stderr, false) }}
	if len(ids) == 0 {
		ids = []age.Identity{pass}
	}
	plain, err := age.Decrypt(agekeys.NewReader(br), ids...)
	if err != nil {
		return ageError(path, err, pass)
	}
	return restoreFrom(dev, path, damagedIfFails{plain})
}

func restoreFrom(dev *os.File, path string, r io.Reader) error {
	if err := keyring.Restore(dev, r); err != nil {
		return fmt.Errorf("header backup %s: %w", path, err)
	}
	return nil
}

// ageError explains why an age backup did not open, with its exit status.
func ageError(path string, err error, pass *passphraseIdentity) error {
	if pass.err != nil {
		return pass.err
	}
	var nomatch *age.NoIdentityMatchError
	if !errors.As(err, &nomatch) {
		return withExit(exitCorrupt, fmt.Errorf("header backup %s: damaged age file: %w", path, err))
	}
	scrypt := len(nomatch.StanzaTypes) == 1 && nomatch.StanzaTypes[0] == "scrypt"
	switch {
	case scrypt && pass.tried:
		return withExit(exitWrongKey, fmt.Errorf("header backup %s: wrong passphrase", path))
	case scrypt:
		return withExit(exitWrongKey, fmt.Errorf("header backup %s is encrypted with a passphrase, not to a recipient: restore it without --identity", path))
	case !pass.tried && len(nomatch.Errors) == 1 && errors.Is(nomatch.Errors[0], errNotPassphrase):
		return withExit(exitUsage, fmt.Errorf("header backup %s is encrypted to age recipients (%s): give --identity FILE", path, strings.Join(nomatch.StanzaTypes, ", ")))
	}
	return withExit(exitWrongKey, fmt.Errorf("header backup %s: no identity given matches its recipients (%s)", path, strings.Join(nomatch.StanzaTypes, ", ")))
}

var errNotPassphrase = fmt.Errorf("%w: not encrypted with a passphrase", age.ErrIncorrectIdentity)

// passphraseIdentity asks for the passphrase only when the file is
// encrypted with one (a single scrypt stanza, as age requires).
type passphraseIdentity struct {
	read  func() (*secmem.Buffer, error)
	tried bool  // a passphrase was read and tried
	err   error // reading the passphrase failed
}

func (p *passphraseIdentity) Unwrap(stanzas []*age.Stanza) ([]byte, error) {
	if len(stanzas) != 1 || stanzas[0].Type != "scrypt" {
		return nil, errNotPassphrase
	}
	pass, err := p.read()
	if err != nil {
		p.err = err
		return nil, err
	}
	defer pass.Destroy()
	p.tried = true
	id, err := age.NewScryptIdentity(string(pass.Bytes())) // see recipientsFor on the copy
	if err != nil {
		return nil, err
	}
	return id.Unwrap(stanzas)
}

// damagedIfFails marks a failed read of an age payload (a chunk that does
// not authenticate, a truncated file) as damage: exit status 4.
type damagedIfFails struct{ r io.Reader }

func (d damagedIfFails) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err != nil && err != io.EOF {
		err = withExit(exitCorrupt, fmt.Errorf("damaged age file: %w", err))
	}
	return n, err
}
