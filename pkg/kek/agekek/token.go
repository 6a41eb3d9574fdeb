package agekek

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"filippo.io/age"
	"filippo.io/age/armor"

	"github.com/encblk/encblk/pkg/keyring"
)

// TokenType is the LUKS2 token type that holds an age-encrypted keyslot
// secret. cryptsetup keeps tokens of types it does not know and shows them
// in luksDump; `cryptsetup token export` prints them.
const TokenType = "encblk-age"

// tokenVersion is the version of the token's layout.
const tokenVersion = 1

// Limits on a token: it comes from a header anyone who can write the disk
// can edit, and it must fit the LUKS2 JSON area (12 KiB by default,
// shared with every other keyslot, digest and token).
const (
	maxTokenSize     = 16 << 10
	maxAgeFileSize   = 12 << 10
	maxRecipients    = 16
	maxRecipientText = 1 << 10
	secretLen        = 32 // bytes of the keyslot secret
)

// Token is the JSON object stored in an encblk-age LUKS2 token, bound to
// the keyslot whose secret it holds:
//
//	{
//	  "type": "encblk-age",
//	  "keyslots": ["1"],
//	  "encblk_age_version": 1,
//	  "recipients": ["age1…", "ssh-ed25519 AAAA…"],
//	  "age": "-----BEGIN AGE ENCRYPTED FILE-----\n…\n-----END AGE ENCRYPTED FILE-----\n"
//	}
//
// age is an armored age file (age-encryption.org/v1) whose plaintext is
// the keyslot's secret, 32 random bytes; any age client opens it:
//
//	cryptsetup token export --token-id N IMG | jq -j .age | age -d -i KEY
//
// gives the key file that opens the keyslot (cryptsetup --key-file=-).
// recipients are the public keys it was encrypted to, as they were given
// (an SSH key without its comment), so that dump can say who can open the
// keyslot; nothing checks them against the file, and nothing in the token
// is secret.
type Token struct {
	Type       string   `json:"type"`
	Keyslots   []string `json:"keyslots"`
	Version    int      `json:"encblk_age_version"`
	Recipients []string `json:"recipients"`
	File       string   `json:"age"`
}

// ErrBadToken is wrapped when an encblk-age token cannot be used: it does
// not parse, or its age file is damaged or truncated. It wraps
// keyring.ErrCorrupt: the header's metadata is damaged.
var ErrBadToken = fmt.Errorf("%w: invalid encblk-age token", keyring.ErrCorrupt)

// ParseToken parses and checks an encblk-age token. The age file in it
// is checked only when it is opened.
func ParseToken(raw []byte) (*Token, error) {
	if len(raw) > maxTokenSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrBadToken, len(raw), maxTokenSize)
	}
	var t Token
	if err := json.Unmarshal(raw, &t); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	if err := t.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	return &t, nil
}

func (t *Token) check() error {
	switch {
	case t.Type != TokenType:
		return fmt.Errorf("type %q, want %q", t.Type, TokenType)
	case t.Version != tokenVersion:
		return fmt.Errorf("version %d, want %d", t.Version, tokenVersion)
	case len(t.Recipients) > maxRecipients:
		return fmt.Errorf("%d recipients, at most %d", len(t.Recipients), maxRecipients)
	case len(t.File) > maxAgeFileSize:
		return fmt.Errorf("age file of %d bytes, at most %d", len(t.File), maxAgeFileSize)
	case !strings.HasPrefix(t.File, armor.Header+"\n"):
		return errors.New("the age field is not an armored age file")
	}
	for _, r := range t.Recipients {
		if len(r) > maxRecipientText {
			return fmt.Errorf("recipient of %d bytes, at most %d", len(r), maxRecipientText)
		}
	}
	return nil
}

// sealSecret encrypts secret to recipients into a new, unbound token;
// names are the recipients as the token lists them.
func sealSecret(secret []byte, recipients []age.Recipient, names []string) ([]byte, error) {
	if len(recipients) == 0 {
		return nil, errors.New("age: no recipients")
	}
	if len(recipients) > maxRecipients {
		return nil, fmt.Errorf("age: %d recipients, at most %d", len(recipients), maxRecipients)
	}
	var file bytes.Buffer
	a := armor.NewWriter(&file)
	w, err := age.Encrypt(a, recipients...)
	if err != nil {
		return nil, fmt.Errorf("age: %w", err)
	}
	if _, err := w.Write(secret); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	if err := a.Close(); err != nil {
		return nil, err
	}
	if file.Len() > maxAgeFileSize {
		return nil, fmt.Errorf("age: the encrypted secret takes %d bytes, more than a token holds (%d): use fewer or smaller recipients", file.Len(), maxAgeFileSize)
	}
	if names == nil {
		names = []string{}
	}
	return json.Marshal(Token{Type: TokenType, Keyslots: []string{}, Version: tokenVersion, Recipients: names, File: file.String()})
}

// errNotMine is what opening a token with identities it was not encrypted
// to gives.
var errNotMine = errors.New("none of the age identities opens the token")

// open decrypts the token's secret into dst, which must be secretLen
// bytes. An age file none of ids opens is errNotMine (with the stanza
// types it holds); a damaged one is ErrBadToken.
func (t *Token) open(dst []byte, ids []age.Identity) error {
	r, err := age.Decrypt(armor.NewReader(strings.NewReader(t.File)), ids...)
	var nomatch *age.NoIdentityMatchError
	if errors.As(err, &nomatch) {
		return fmt.Errorf("%w (it is encrypted to %s)", errNotMine, strings.Join(nomatch.StanzaTypes, ", "))
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	if _, err := io.ReadFull(r, dst); err != nil {
		return fmt.Errorf("%w: the secret: %v", ErrBadToken, err)
	}
	var one [1]byte
	if _, err := io.ReadFull(r, one[:]); err != io.EOF {
		clear(one[:])
		return fmt.Errorf("%w: the secret is not %d bytes", ErrBadToken, len(dst))
	}
	return nil
}
