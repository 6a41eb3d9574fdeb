// Package agekek is the "age" key-encryption-key source: a keyslot whose
// secret is stored in the volume's header, in an encblk-age LUKS2 token,
// encrypted in the age format (age-encryption.org/v1) to one or more age
// recipients. Whoever holds a matching identity opens the keyslot; nobody
// else can, not even whoever made it.
//
// This is how a volume moves to another host without a passphrase in the
// clear: the destination makes an identity (age-keygen, or encblk keyfile
// generate --age) and publishes its recipient, the source adds a keyslot
// for that recipient (NewRecipient), the image travels, and the
// destination opens it with its identity (NewIdentity), then rotates to a
// KEK of its own. The source never holds a secret of the destination.
//
// Recipients and identities are filippo.io/age's: X25519 (age1…), the
// post-quantum hybrid (age1pq1…), and SSH ed25519 and RSA keys (agessh).
//
// Memory: the keyslot secret is copied into protected memory as soon as
// age has decrypted it, but age's own buffers (the file key, the
// decrypted chunk) and an identity's private key are ordinary Go memory
// that is not wiped; keep identity files and the processes that read them
// as safe as the volume.
package agekek

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"

	"filippo.io/age"

	"github.com/encblk/encblk/pkg/keyring"
)

// KEK is the age key-encryption-key source. As a keyring.Recipient (with
// recipients) Wrap draws a random secret for a new keyslot and returns it
// with an encblk-age token holding it encrypted to the recipients; as a
// keyring.Identity (with identities) Unwrap opens keyslots through their
// encblk-age tokens.
type KEK struct {
	recipients []age.Recipient
	names      []string
	ids        []age.Identity
}

var (
	_ keyring.Identity  = (*KEK)(nil)
	_ keyring.Recipient = (*KEK)(nil)
)

// NewRecipient returns the KEK that encrypts new keyslots' secrets to
// recipients; names are how the token lists them (the recipients as
// written, e.g. "age1…"; nil lists none). It opens no keyslot.
func NewRecipient(recipients []age.Recipient, names []string) (*KEK, error) {
	switch {
	case len(recipients) == 0:
		return nil, errors.New("age: no recipients")
	case len(recipients) > maxRecipients:
		return nil, fmt.Errorf("age: %d recipients, at most %d", len(recipients), maxRecipients)
	case names != nil && len(names) != len(recipients):
		return nil, errors.New("age: a name for every recipient, or none")
	}
	return &KEK{recipients: recipients, names: names}, nil
}

// NewIdentity returns the KEK that opens encblk-age tokens encrypted to
// any of ids. It makes no keyslot.
func NewIdentity(ids []age.Identity) (*KEK, error) {
	if len(ids) == 0 {
		return nil, errors.New("age: no identities")
	}
	return &KEK{ids: ids}, nil
}

// Destroy drops the KEK's identities and recipients: it opens and makes
// nothing afterwards. The identities' private keys are age's, in Go
// memory that it cannot wipe (see the package comment); dropping them
// lets the garbage collector reclaim them.
func (k *KEK) Destroy() {
	if k != nil {
		k.ids, k.recipients, k.names = nil, nil, nil
	}
}

// Wrap implements keyring.Recipient.
func (k *KEK) Wrap(ctx context.Context) (*keyring.Secret, []json.RawMessage, error) {
	if len(k.recipients) == 0 {
		return nil, nil, errors.New("age: an age identity makes no keyslot: give the recipients (public keys) to seal one to")
	}
	secret, err := keyring.NewSecret(secretLen)
	if err != nil {
		return nil, nil, err
	}
	if _, err := rand.Read(secret.Bytes()); err != nil {
		secret.Destroy()
		return nil, nil, err
	}
	tok, err := sealSecret(secret.Bytes(), k.recipients, k.names)
	if err != nil {
		secret.Destroy()
		return nil, nil, err
	}
	return secret, []json.RawMessage{tok}, nil
}

// KeyslotOptions are the keyslot options for age keyslots: PBKDF2 with
// the minimum iteration count, as the secret is 256 random bits (a slow
// KDF would protect nothing and only delay unlocking).
func KeyslotOptions() *keyring.KeyslotOptions {
	return &keyring.KeyslotOptions{KDF: keyring.KDFParams{Type: "pbkdf2", Hash: "sha256", Iterations: 1000}}
}

// Unwrap implements keyring.Identity: it opens ks's encblk-age tokens
// with the identities. A keyslot without such a token, or whose tokens
// are all encrypted to others, is not this KEK's
// (keyring.ErrNoMatchingKeyslot): the keyring tries the next. A token
// that does not parse or whose age file is damaged makes the keyslot
// unavailable (*keyring.UnavailableError wrapping ErrBadToken, which wraps
// keyring.ErrCorrupt), and the keyring tries the next too.
func (k *KEK) Unwrap(ctx context.Context, ks *keyring.Keyslot) (*keyring.Secret, error) {
	if ks == nil {
		return nil, errors.New("age: an age identity opens keyslots through their encblk-age tokens, which are in the volume's header: name the backing (TARGET) whose header holds them")
	}
	if len(k.ids) == 0 {
		return nil, fmt.Errorf("%w: keyslot %d: no age identity (a recipient opens nothing; a destroyed KEK neither)", keyring.ErrNoMatchingKeyslot, ks.ID)
	}
	var bad []error
	mine := false
	for _, t := range ks.Tokens {
		if t.Type != TokenType {
			continue
		}
		mine = true
		secret, err := k.unwrapToken(t)
		switch {
		case err == nil:
			return secret, nil
		case errors.Is(err, errNotMine):
		default:
			bad = append(bad, &keyring.UnavailableError{Source: "age", Keyslot: ks.ID, Token: t.ID, Err: err})
		}
	}
	switch {
	case len(bad) > 0:
		return nil, errors.Join(bad...)
	case mine:
		return nil, fmt.Errorf("%w: keyslot %d: its %s token is encrypted to other age recipients", keyring.ErrNoMatchingKeyslot, ks.ID, TokenType)
	}
	return nil, fmt.Errorf("%w: keyslot %d has no %s token", keyring.ErrNoMatchingKeyslot, ks.ID, TokenType)
}

func (k *KEK) unwrapToken(t keyring.Token) (*keyring.Secret, error) {
	tok, err := ParseToken(t.Raw)
	if err != nil {
		return nil, err
	}
	secret, err := keyring.NewSecret(secretLen)
	if err != nil {
		return nil, err
	}
	if err := tok.open(secret.Bytes(), k.ids); err != nil {
		secret.Destroy()
		return nil, err
	}
	return secret, nil
}
