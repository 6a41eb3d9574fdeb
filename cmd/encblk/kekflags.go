package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/spf13/pflag"

	"github.com/encblk/encblk/internal/secmem"
	"github.com/encblk/encblk/pkg/kek/keyfile"
	"github.com/encblk/encblk/pkg/kek/kmipkek"
	"github.com/encblk/encblk/pkg/kek/passphrase"
	"github.com/encblk/encblk/pkg/keyring"
)

// This file is the one place where the command line meets the KEK
// sources (pkg/kek/...): flags name a source, and with none named, the
// volume's tokens do. Everything after it sees only keyring.Identity and
// keyring.Recipient.

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
//	(none)               the volume's tokens, if it has keyslots bound to
//	                     tokens of a source below (readFor); else prompt on the
//	                     terminal without echo, or read one line of stdin when
//	                     it is no terminal, as cryptsetup does
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

// read returns the KEK the flags name. verify asks twice when prompting
// (new KEKs).
func (f *kekFlags) read(stdin io.Reader, stderr io.Writer, verify bool) (kek, error) {
	switch {
	case f.keyFile != "" && f.passphraseFile != "":
		return nil, withExit(exitUsage, fmt.Errorf("--%skey-file and --%spassphrase-file are exclusive", f.prefix(), f.prefix()))
	case f.kmipConfig != "" && (f.keyFile != "" || f.passphraseFile != ""):
		return nil, withExit(exitUsage, fmt.Errorf("--%skmip excludes --%skey-file and --%spassphrase-file", f.prefix(), f.prefix(), f.prefix()))
	case f.kmipConfig != "":
		return kmipKEK(f.kmipConfig, nil)
	case f.keyFile == "-":
		return keyfile.Read(stdin)
	case f.keyFile != "":
		return keyfile.Open(f.keyFile)
	}
	return passphrase.Read(f.passphraseFile, "passphrase file", stdin, stderr, "Enter "+f.what+"passphrase: ", verify)
}

// readFor is read for a volume whose header kr was opened: with no KEK
// named on the command line and keyslots bound to tokens of a source in
// tokenSources, those sources are the KEK (as cryptsetup tries tokens
// before asking for a passphrase). kr may be nil (no header to read):
// then it is read.
func (f *kekFlags) readFor(kr *keyring.Keyring, stdin io.Reader, stderr io.Writer, verify bool) (kek, error) {
	if f.given() || kr == nil {
		return f.read(stdin, stderr, verify)
	}
	var ids tokenKEK
	for _, src := range tokenSources {
		if !hasBoundToken(kr, src.tokenType) {
			continue
		}
		id, err := src.identity(kr)
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return f.read(stdin, stderr, verify)
	}
	return ids, nil
}

// tokenSource is a KEK source that unlocks keyslots through the LUKS2
// tokens bound to them: its token type and how to make its Identity for a
// volume. A new source registers here.
type tokenSource struct {
	tokenType string
	identity  func(kr *keyring.Keyring) (keyring.Identity, error)
}

// tokenSources are tried in this order on every keyslot.
var tokenSources = []tokenSource{
	{kmipkek.TokenType, func(kr *keyring.Keyring) (keyring.Identity, error) { return tokenKMIPKEK(kr, "", nil) }},
}

// hasBoundToken reports whether kr has a token of type typ bound to a
// keyslot.
func hasBoundToken(kr *keyring.Keyring, typ string) bool {
	return slices.ContainsFunc(kr.Tokens(), func(t keyring.Token) bool { return t.Type == typ && len(t.Keyslots) > 0 })
}

// tokenKEK is the KEK of a volume's tokens: each keyslot is offered to
// every token source in turn. It opens keyslots; it cannot make one.
type tokenKEK []keyring.Identity

// Unwrap implements keyring.Identity: the first source that gives a
// secret for ks wins; if none does, ks is unavailable if a source said so,
// else not ours.
func (t tokenKEK) Unwrap(ctx context.Context, ks *keyring.Keyslot) (*keyring.Secret, error) {
	var unavailable []error
	for _, id := range t {
		s, err := id.Unwrap(ctx, ks)
		switch {
		case err == nil:
			return s, nil
		case errors.Is(err, keyring.ErrUnavailable):
			unavailable = append(unavailable, err)
		case !errors.Is(err, keyring.ErrNoMatchingKeyslot):
			return nil, err
		}
	}
	if len(unavailable) > 0 {
		return nil, errors.Join(unavailable...)
	}
	return nil, keyring.ErrNoMatchingKeyslot
}

// Wrap implements keyring.Recipient: a volume's tokens are no new KEK.
func (t tokenKEK) Wrap(context.Context) (*keyring.Secret, []json.RawMessage, error) {
	return nil, nil, errors.New("the volume's tokens cannot make a new keyslot: name the new KEK")
}

// Destroy implements kek: the sources hold no secret.
func (t tokenKEK) Destroy() {}

func (f *kekFlags) prefix() string {
	if f.what != "" {
		return "new-"
	}
	return ""
}

// given reports whether a source was named.
func (f *kekFlags) given() bool {
	return f.keyFile != "" || f.passphraseFile != "" || f.kmipConfig != ""
}

// highEntropy reports whether the new KEK the flags name is a random
// secret a machine holds (not a passphrase): its keyslot needs no slow
// KDF.
func (f *kekFlags) highEntropy() bool {
	return f.kmipConfig != ""
}

// bufferOf moves secret into an internal/secmem buffer, for code that
// keeps one (drive PINs, the header backup's passphrase).
func bufferOf(secret *keyring.Secret) (*secmem.Buffer, error) {
	defer secret.Destroy()
	b, err := secmem.New(secret.Len())
	if err != nil {
		return nil, err
	}
	copy(b.Bytes(), secret.Bytes())
	return b, nil
}
