package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"filippo.io/age"
	"github.com/spf13/pflag"

	"github.com/encblk/encblk/internal/agekeys"
	"github.com/encblk/encblk/internal/secmem"
	"github.com/encblk/encblk/pkg/kek/agekek"
	"github.com/encblk/encblk/pkg/kek/clevis"
	"github.com/encblk/encblk/pkg/kek/keyfile"
	"github.com/encblk/encblk/pkg/kek/kmipkek"
	"github.com/encblk/encblk/pkg/kek/passphrase"
	"github.com/encblk/encblk/pkg/kek/sss"
	"github.com/encblk/encblk/pkg/kek/tang"
	"github.com/encblk/encblk/pkg/kek/tpm2"
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
//	--tang URL           (new KEK only) a Tang server binds it, as clevis luks bind
//	                     tang; --tang-thp pins the advertisement's signing key
//	--sss CONFIG         (new KEK only) t of n clevis pins (tang, tpm2), as clevis
//	                     luks bind sss (CONFIG is clevis's JSON, e.g.
//	                     {"t":2,"pins":{"tang":[…],"tpm2":{}}})
//	--age-identity F     the volume's encblk-age tokens, opened with the age
//	                     identities in F (repeatable)
//	--age-recipient R    (new KEK only) a random secret, stored in an encblk-age
//	--age-recipients-file F  token encrypted to these age recipients (repeatable)
//	--tpm2-device DEV    (new KEK only) sealed to this TPM, as systemd-cryptenroll
//	                     --tpm2-device; --tpm2-pcrs LIST (default 7) its policy,
//	                     --tpm2-with-pin adds a PIN (--new-tpm2-pin-file, or asked)
//	(none)               the volume's tokens, if it has keyslots bound to
//	                     tokens of a source below (readFor); else prompt on the
//	                     terminal without echo, or read one line of stdin when
//	                     it is no terminal, as cryptsetup does
type kekFlags struct {
	keyFile        string
	passphraseFile string
	kmipConfig     string
	ageIdentities  []string
	ageRecipients  []string
	ageRcptFiles   []string
	tangURL        string // new KEKs only
	tangThp        string
	sssConfig      string
	tpm2PINFile    string // the volume's KEK only: a PIN for systemd-tpm2 keyslots
	tpm2Device     string // new KEKs only: seal to this TPM
	tpm2PCRs       string
	tpm2PCRsGiven  bool
	tpm2WithPIN    bool
	newTPM2PINFile string
	extraKeyFiles  []string // registerExtras: KEKs of further keyslots
	extraPassFiles []string
	what           string // "" for the volume's KEK, "new " for a new one
	// unattended: no one can be asked (a server's rotation); a keyslot
	// that needs a TPM2 PIN is unavailable.
	unattended bool
}

// register adds the flags with an optional prefix ("new-") for commands
// that take two KEKs.
func (f *kekFlags) register(fs *pflag.FlagSet, prefix string) {
	f.registerDirect(fs, prefix)
	// An age recipient only makes keyslots and an identity only opens
	// them, so neither needs the "new-" prefix to say which KEK it is.
	if prefix == "" {
		fs.StringVar(&f.tpm2PINFile, "tpm2-pin-file", "", "the PIN of PIN-protected TPM2 keyslots is the first line of this file (- for stdin; default: prompt on a terminal)")
		fs.StringArrayVar(&f.ageIdentities, "age-identity", nil, "open the volume's age keyslots with the identities in this file (age-keygen's, or an unencrypted SSH private key; default: $"+ageIdentityEnv+", else "+defaultAgeIdentity+" if it exists); repeatable")
		return
	}
	fs.StringVar(&f.tangURL, "tang", "", "bind the new keyslot to this Tang server (a clevis token, as clevis luks bind tang)")
	fs.StringVar(&f.tangThp, "tang-thp", "", "with --tang: the thumbprint of the signing key the advertisement must carry (as clevis thp)")
	fs.StringVar(&f.sssConfig, "sss", "", `bind the new keyslot to t of n clevis pins (tang, tpm2), as clevis luks bind sss: {"t":2,"pins":{"tang":[{"url":…},…],"tpm2":{"pcr_ids":"7"}}}`)
	fs.StringArrayVar(&f.ageRecipients, "age-recipient", nil, "the new keyslot's random secret is stored in a token, encrypted to this age recipient (age1…, ssh-ed25519 …, ssh-rsa …); repeatable")
	fs.StringArrayVar(&f.ageRcptFiles, "age-recipients-file", nil, "like --age-recipient, for each recipient in this file (one a line); repeatable")
	fs.StringVar(&f.tpm2Device, "tpm2-device", "", `seal the new keyslot to this TPM, as systemd-cryptenroll --tpm2-device ("auto" or /dev/tpmrm0, or swtpm:path=SOCKET); systemd-cryptsetup opens it`)
	fs.Func("tpm2-pcrs", `with --tpm2-device: the PCRs whose current values the keyslot is sealed to, systemd's syntax ("7+11", "0,7"; "" for none; default 7)`, func(v string) error {
		f.tpm2PCRs, f.tpm2PCRsGiven = v, true
		return nil
	})
	fs.BoolVar(&f.tpm2WithPIN, "tpm2-with-pin", false, "with --tpm2-device: the keyslot also needs a PIN (asked twice on a terminal, or --new-tpm2-pin-file)")
	fs.StringVar(&f.newTPM2PINFile, "new-tpm2-pin-file", "", "with --tpm2-with-pin: the new keyslot's PIN is the first line of this file (- for stdin)")
}

// registerDirect adds only the flags of a KEK given directly (key file,
// passphrase file, KMIP), with register's prefix; register adds the rest.
// Commands that make a volume (format, sed setup) take its first KEK with
// these alone: there are no keyslots to open yet, so --tpm2-pin-file and
// --age-identity would mean nothing.
func (f *kekFlags) registerDirect(fs *pflag.FlagSet, prefix string) {
	what := "the KEK"
	if prefix != "" {
		what = "the new KEK"
		f.what = "new "
	}
	fs.StringVar(&f.keyFile, prefix+"key-file", "", "read "+what+" from this key file, every byte counts (- for stdin)")
	fs.StringVar(&f.passphraseFile, prefix+"passphrase-file", "", "read "+what+" passphrase from the first line of this file (- for stdin)")
	fs.StringVar(&f.kmipConfig, prefix+"kmip", "", what+" is held by a KMIP key server; this file is the client configuration (see encblk kmip --help)")
}

// registerExtras adds --extra-key-file and --extra-passphrase-file: KEKs
// of further keyslots, for a command that must open all of them
// (reencrypt re-wraps every keyslot it can open); readAll reads them.
func (f *kekFlags) registerExtras(fs *pflag.FlagSet) {
	fs.StringArrayVar(&f.extraKeyFiles, "extra-key-file", nil, "a key file that opens another keyslot (repeatable)")
	fs.StringArrayVar(&f.extraPassFiles, "extra-passphrase-file", nil, "a passphrase file (first line) that opens another keyslot (repeatable)")
}

// readAll makes the process non-dumpable and reads the KEK (with no KEK
// flag, the volume's tokens first: KMIP keyslots open through their
// tokens) and the extra ones (registerExtras); destroy wipes them.
func (kf *kekFlags) readAll(kr *keyring.Keyring, stdin io.Reader, stderr io.Writer) (ids []keyring.Identity, destroy func(), err error) {
	if err := secmem.SetNonDumpable(); err != nil {
		return nil, nil, err
	}
	destroy = func() {
		for _, id := range ids {
			id.(interface{ Destroy() }).Destroy()
		}
	}
	fail := func(err error) ([]keyring.Identity, func(), error) {
		destroy()
		return nil, nil, err
	}
	first, err := kf.readFor(kr, stdin, stderr, false)
	if err != nil {
		return nil, nil, err
	}
	ids = append(ids, first)
	for _, f := range kf.extraKeyFiles {
		k, err := keyfile.Open(f)
		if err != nil {
			return fail(err)
		}
		ids = append(ids, k)
	}
	for _, f := range kf.extraPassFiles {
		p, err := passphrase.Read(f, "extra passphrase file", stdin, stderr, "", false)
		if err != nil {
			return fail(err)
		}
		ids = append(ids, p)
	}
	return ids, destroy, nil
}

// kekHelp is the paragraph of a command's long help that says where its
// KEKs come from. It names every flag register adds (withNew: the
// command also takes a new KEK, with register's "new-" flags), so that
// every command that takes KEKs lists the same sources
// (TestKEKHelpNamesEveryFlag checks it against the registered flags).
func kekHelp(withNew bool) string {
	s := `The KEK that opens the volume: --key-file, --passphrase-file, --kmip CONFIG
or --age-identity FILE; with none of them, the volume's tokens (KMIP, age,
clevis tang/sss/tpm2, systemd-tpm2, whose PIN comes from --tpm2-pin-file or
the terminal), each keyslot tried, then the prompt.`
	if withNew {
		s += `
The new KEK: --new-key-file, --new-passphrase-file, --new-kmip CONFIG,
--age-recipient R or --age-recipients-file F, --tang URL (--tang-thp pins its
signing key), --sss CONFIG (t of n clevis tang and tpm2 pins), --tpm2-device
DEV (--tpm2-pcrs, --tpm2-with-pin, --new-tpm2-pin-file), or the prompt.`
	}
	return s
}

// The default age identity: whoever is to open age keyslots without
// naming an identity keeps one here (encblk keyfile generate --age).
const (
	defaultAgeIdentity = "/etc/encblk/age.key"
	ageIdentityEnv     = "ENCBLK_AGE_IDENTITY"
)

// ageKEK returns the age KEK of the identity files, or of the recipients
// and recipients files (for a new keyslot).
func ageKEK(identities, recipients, recipientsFiles []string) (*agekek.KEK, error) {
	if len(identities) > 0 {
		ids, err := readAgeIdentities(identities)
		if err != nil {
			return nil, err
		}
		return agekek.NewIdentity(ids)
	}
	rs, err := parseRecipients("--age-recipient", recipients, recipientsFiles)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = r.Text
	}
	k, err := agekek.NewRecipient(agekeys.Ages(rs), names)
	return k, withExit(exitUsage, err)
}

// readAgeIdentities reads age identity files; a file that is not one is a
// usage error.
func readAgeIdentities(names []string) ([]age.Identity, error) {
	var ids []age.Identity
	for _, name := range names {
		file, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("age identity: %w", err)
		}
		is, err := agekeys.ReadIdentities(file, name)
		file.Close()
		if err != nil {
			return nil, withExit(exitUsage, err)
		}
		ids = append(ids, is...)
	}
	return ids, nil
}

// defaultAgeKEK is the token source for age keyslots when no KEK is named:
// the identity file $ENCBLK_AGE_IDENTITY (which must exist), else
// defaultAgeIdentity if it exists, else none (nil).
func defaultAgeKEK() (keyring.Identity, error) {
	path := os.Getenv(ageIdentityEnv)
	if path == "" {
		if _, err := os.Stat(defaultAgeIdentity); errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		path = defaultAgeIdentity
	}
	k, err := ageKEK([]string{path}, nil, nil)
	if err != nil {
		return nil, err
	}
	return k, nil
}

// read returns the KEK the flags name. verify asks twice when prompting
// (new KEKs).
func (f *kekFlags) read(stdin io.Reader, stderr io.Writer, verify bool) (kek, error) {
	switch {
	case f.keyFile != "" && f.passphraseFile != "":
		return nil, withExit(exitUsage, fmt.Errorf("--%skey-file and --%spassphrase-file are exclusive", f.prefix(), f.prefix()))
	case f.kmipConfig != "" && (f.keyFile != "" || f.passphraseFile != ""):
		return nil, withExit(exitUsage, fmt.Errorf("--%skmip excludes --%skey-file and --%spassphrase-file", f.prefix(), f.prefix(), f.prefix()))
	case f.ageGiven() && (f.kmipConfig != "" || f.keyFile != "" || f.passphraseFile != ""):
		return nil, withExit(exitUsage, fmt.Errorf("the age flags exclude --%skey-file, --%spassphrase-file and --%skmip", f.prefix(), f.prefix(), f.prefix()))
	case f.clevisGiven() && (f.ageGiven() || f.kmipConfig != "" || f.keyFile != "" || f.passphraseFile != ""):
		return nil, withExit(exitUsage, fmt.Errorf("name one new KEK: --%skey-file, --%spassphrase-file, --%skmip, --age-recipient, --tang or --sss", f.prefix(), f.prefix(), f.prefix()))
	case f.tpm2Given() && f.tpm2Device == "":
		return nil, withExit(exitUsage, errors.New("--tpm2-pcrs, --tpm2-with-pin and --new-tpm2-pin-file need --tpm2-device"))
	case f.tpm2Device != "" && (f.clevisGiven() || f.ageGiven() || f.kmipConfig != "" || f.keyFile != "" || f.passphraseFile != ""):
		return nil, withExit(exitUsage, fmt.Errorf("name one new KEK: --%skey-file, --%spassphrase-file, --%skmip, --age-recipient, --tang, --sss or --tpm2-device", f.prefix(), f.prefix(), f.prefix()))
	case f.tpm2Device != "":
		return asKEK(f.tpm2Recipient(stdin, stderr))
	case f.tangURL != "" && f.sssConfig != "":
		return nil, withExit(exitUsage, errors.New("--tang and --sss are exclusive (an sss configuration can name Tang servers)"))
	case f.tangThp != "" && f.tangURL == "":
		return nil, withExit(exitUsage, errors.New("--tang-thp needs --tang"))
	case f.tangURL != "":
		cfg, _ := json.Marshal(tang.Config{URL: f.tangURL, Thp: f.tangThp})
		return clevis.NewRecipient(clevisPins(), tang.Name, cfg), nil
	case f.sssConfig != "":
		if !json.Valid([]byte(f.sssConfig)) {
			return nil, withExit(exitUsage, errors.New("--sss: the configuration is not JSON"))
		}
		return clevis.NewRecipient(clevisPins(), sss.Name, json.RawMessage(f.sssConfig)), nil
	case f.ageGiven():
		return asKEK(ageKEK(f.ageIdentities, f.ageRecipients, f.ageRcptFiles))
	case f.kmipConfig != "":
		return asKEK(kmipKEK(f.kmipConfig, nil))
	case f.keyFile == "-":
		return asKEK(keyfile.Read(stdin))
	case f.keyFile != "":
		return asKEK(keyfile.Open(f.keyFile))
	}
	return asKEK(passphrase.Read(f.passphraseFile, "passphrase file", stdin, stderr, "Enter "+f.what+"passphrase: ", verify))
}

// tpm2Recipient is the TPM KEK of --tpm2-device and its options.
func (f *kekFlags) tpm2Recipient(stdin io.Reader, stderr io.Writer) (*tpm2.KEK, error) {
	pcrs := tpm2.DefaultPCRs
	if f.tpm2PCRsGiven {
		var err error
		if pcrs, err = tpm2.ParsePCRs(f.tpm2PCRs); err != nil {
			return nil, withExit(exitUsage, fmt.Errorf("--tpm2-pcrs: %w", err))
		}
	}
	if f.newTPM2PINFile != "" && !f.tpm2WithPIN {
		return nil, withExit(exitUsage, errors.New("--new-tpm2-pin-file needs --tpm2-with-pin"))
	}
	var pin func() (*keyring.Secret, error)
	if f.tpm2WithPIN {
		pin = func() (*keyring.Secret, error) {
			if f.newTPM2PINFile == "" {
				if in, ok := stdin.(*os.File); !ok || !passphrase.IsTerminal(in) {
					return nil, errors.New("--tpm2-with-pin: give the new PIN with --new-tpm2-pin-file (no terminal to ask on)")
				}
			}
			return passphrase.Read(f.newTPM2PINFile, "new TPM2 PIN file", stdin, stderr, "Enter the new TPM2 PIN: ", true)
		}
	}
	dev := f.tpm2Device
	if dev == "auto" {
		dev = ""
	}
	return tpm2.NewRecipient(dev, pcrs, pin), nil
}

// asKEK returns a source's KEK as a kek, and a nil interface (not a typed
// nil pointer, on which a deferred Destroy would be called) with an error.
func asKEK[K kek](k K, err error) (kek, error) {
	if err != nil {
		return nil, err
	}
	return k, nil
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
	ids, err := f.tokens(kr, stdin, stderr)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return f.read(stdin, stderr, verify)
	}
	return ids, nil
}

// tokens is the KEK of the volume's tokens (header kr): the identities of
// the tokenSources whose tokens are bound to a keyslot; empty if none has
// one to offer.
func (f *kekFlags) tokens(kr *keyring.Keyring, stdin io.Reader, stderr io.Writer) (tokenKEK, error) {
	var ids tokenKEK
	for _, src := range tokenSources {
		if !hasBoundToken(kr, src.tokenType) {
			continue
		}
		id, err := src.identity(kr, f, stdin, stderr)
		if err != nil {
			return nil, err
		}
		if id != nil { // nil: the source has nothing to offer here
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// tokenSource is a KEK source that unlocks keyslots through the LUKS2
// tokens bound to them: its token type and how to make its Identity for a
// volume (nil if it has none to offer, e.g. no age identity is configured:
// then the next source or the prompt is used). A new source registers
// here.
type tokenSource struct {
	tokenType string
	identity  func(kr *keyring.Keyring, f *kekFlags, stdin io.Reader, stderr io.Writer) (keyring.Identity, error)
	// describe names a token's kind ("kmip", "tang", "sss"), says it in a
	// few words and gives its parameters, for listings; never fails.
	describe func(raw json.RawMessage) (kind, text string, params map[string]any)
}

// tokenSources are tried in this order on every keyslot.
var tokenSources = []tokenSource{
	{kmipkek.TokenType, func(kr *keyring.Keyring, _ *kekFlags, _ io.Reader, _ io.Writer) (keyring.Identity, error) {
		return tokenKMIPKEK(kr, "", nil)
	}, describeKMIPToken},
	{agekek.TokenType, func(*keyring.Keyring, *kekFlags, io.Reader, io.Writer) (keyring.Identity, error) {
		return defaultAgeKEK()
	}, describeAgeToken},
	{clevis.TokenType, func(*keyring.Keyring, *kekFlags, io.Reader, io.Writer) (keyring.Identity, error) {
		return clevis.NewIdentity(clevisPins()), nil
	}, describeClevisToken},
	{tpm2.TokenType, tpm2Identity, describeTPM2Token},
}

// tpm2Identity is the TPM KEK, asking for a PIN (--tpm2-pin-file, else a
// prompt on a terminal) only if a PIN-protected keyslot is met.
func tpm2Identity(_ *keyring.Keyring, f *kekFlags, stdin io.Reader, stderr io.Writer) (keyring.Identity, error) {
	return tpm2.NewIdentity(os.Getenv(tpm2DeviceEnv)).WithPIN(func() (*keyring.Secret, error) {
		if f.unattended {
			return nil, errors.New("the keyslot needs its TPM2 PIN, which no one is there to give")
		}
		if f.tpm2PINFile == "" {
			if in, ok := stdin.(*os.File); !ok || !passphrase.IsTerminal(in) {
				return nil, errors.New("the keyslot needs its TPM2 PIN: give --tpm2-pin-file")
			}
		}
		return passphrase.Read(f.tpm2PINFile, "TPM2 PIN file", stdin, stderr, "Enter the TPM2 PIN: ", false)
	}), nil
}

// tpm2DeviceEnv names the TPM that opens systemd-tpm2 keyslots, in
// systemd's spelling ("/dev/tpmrm0", "swtpm:path=SOCKET"); default
// tpm2.DefaultDevice.
const tpm2DeviceEnv = "ENCBLK_TPM2_DEVICE"

func describeTPM2Token(raw json.RawMessage) (string, string, map[string]any) {
	text, params := tpm2.Describe(raw)
	return "tpm2", text, params
}

// clevisPins are the clevis pins encblk has: tang, tpm2 (the TPM of
// $ENCBLK_TPM2_DEVICE), and sss over them all.
func clevisPins() clevis.Pins {
	ps := clevis.Pins{tang.Name: &tang.Client{}, tpm2.ClevisPinName: tpm2.NewClevisPin(os.Getenv(tpm2DeviceEnv))}
	ps[sss.Name] = sss.New(ps)
	return ps
}

// describeToken is the token source's description of t, or its bare type.
func describeToken(t keyring.Token) (kind, text string, params map[string]any) {
	for _, src := range tokenSources {
		if src.tokenType == t.Type {
			return src.describe(t.Raw)
		}
	}
	return t.Type, "", nil
}

func describeKMIPToken(raw json.RawMessage) (string, string, map[string]any) {
	tok, err := kmipkek.ParseToken(raw)
	if err != nil {
		return "kmip", "unreadable: " + err.Error(), map[string]any{"error": err.Error()}
	}
	return "kmip", fmt.Sprintf("key %s on %s", tok.KeyUID, strings.Join(tok.Servers, ", ")),
		map[string]any{"key_uid": tok.KeyUID, "servers": tok.Servers}
}

func describeAgeToken(raw json.RawMessage) (string, string, map[string]any) {
	if _, err := agekek.ParseToken(raw); err != nil {
		return "age", "unreadable: " + err.Error(), map[string]any{"error": err.Error()}
	}
	return "age", "", nil
}

func describeClevisToken(raw json.RawMessage) (string, string, map[string]any) {
	text, params := clevisPins().DescribeToken(raw)
	kind, _ := params["pin"].(string)
	if kind == "" {
		kind = clevis.TokenType
	}
	return kind, text, params
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
	return f.keyFile != "" || f.passphraseFile != "" || f.kmipConfig != "" || f.ageGiven() || f.clevisGiven() || f.tpm2Given()
}

func (f *kekFlags) tpm2Given() bool {
	return f.tpm2Device != "" || f.tpm2PCRsGiven || f.tpm2WithPIN || f.newTPM2PINFile != ""
}

func (f *kekFlags) clevisGiven() bool {
	return f.tangURL != "" || f.tangThp != "" || f.sssConfig != ""
}

func (f *kekFlags) ageGiven() bool {
	return len(f.ageIdentities) > 0 || len(f.ageRecipients) > 0 || len(f.ageRcptFiles) > 0
}

// keyslotOptions are the keyslot options the source of a new KEK asks
// for (a random secret needs no slow KDF), or nil for a passphrase or key
// file.
func (f *kekFlags) keyslotOptions() *keyring.KeyslotOptions {
	switch {
	case f.kmipConfig != "":
		return kmipkek.KeyslotOptions()
	case len(f.ageRecipients) > 0 || len(f.ageRcptFiles) > 0:
		return agekek.KeyslotOptions()
	case f.clevisGiven():
		return clevis.KeyslotOptions()
	case f.tpm2Device != "":
		return tpm2.KeyslotOptions()
	}
	return nil
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
