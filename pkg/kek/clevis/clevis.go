// Package clevis is the KEK source for LUKS2 keyslots bound with clevis
// (latchset's automated decryption framework): the "clevis" token that
// `clevis luks bind` writes, holding a JWE of the keyslot's passphrase
// that a pin can decrypt without a person: "tang" (a Tang server on the
// network, package tang), "sss" (t of n other pins, package sss). Pins
// plug in through the Pin interface; this package holds the token, the
// JOSE it needs, and the KEK.
//
// A keyslot made here is one clevis itself opens: its passphrase is 40
// random bytes in base64url (54 characters, as clevis luks bind makes it),
// the keyslot uses PBKDF2 with 1000 iterations (as clevis), and the token
// is {"type":"clevis","keyslots":["N"],"jwe":{flattened JWE}}.
package clevis

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/encblk/encblk/pkg/keyring"
)

// TokenType is the LUKS2 token type clevis writes.
const TokenType = "clevis"

// passphraseBytes is how many random bytes a new keyslot's passphrase
// encodes (clevis's JOSE_PASSWORD_LENGTH).
const passphraseBytes = 40

// Pin encrypts a secret under a policy (a Tang server, a threshold of
// other pins…) and decrypts it again, as a clevis pin does.
type Pin interface {
	// Encrypt returns the compact JWE of plaintext under the pin's
	// configuration config (the JSON clevis encrypt PIN takes).
	Encrypt(ctx context.Context, config json.RawMessage, plaintext []byte) (*JWE, error)
	// Decrypt recovers the plaintext of jwe, whose header names this pin,
	// into protected memory.
	Decrypt(ctx context.Context, jwe *JWE) (*keyring.Secret, error)
	// Describe summarises the pin's part of a header for listings
	// ("tang http://…"), never failing.
	Describe(jwe *JWE) string
	// Params are the pin's parameters for JSON listings (a Tang URL and
	// thumbprints, a threshold and the children's), never failing.
	Params(jwe *JWE) map[string]any
}

// Pins are the pins a KEK knows, by name ("tang", "sss").
type Pins map[string]Pin

// ErrUnknownPin is wrapped when a JWE names a pin encblk does not have.
var ErrUnknownPin = errors.New("clevis: pin not supported")

// maxDepth bounds nested pins (sss within sss…).
const maxDepth = 4

type depthKey struct{}

// Decrypt decrypts jwe with the pin its header names.
func (ps Pins) Decrypt(ctx context.Context, jwe *JWE) (*keyring.Secret, error) {
	d, _ := ctx.Value(depthKey{}).(int)
	if d >= maxDepth {
		return nil, malformed("pins nested more than %d deep", maxDepth)
	}
	pin, err := jwe.Header.Pin()
	if err != nil {
		return nil, err
	}
	p, ok := ps[pin]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownPin, pin)
	}
	return p.Decrypt(context.WithValue(ctx, depthKey{}, d+1), jwe)
}

// Encrypt encrypts plaintext with pin under config.
func (ps Pins) Encrypt(ctx context.Context, pin string, config json.RawMessage, plaintext []byte) (*JWE, error) {
	p, ok := ps[pin]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownPin, pin)
	}
	return p.Encrypt(ctx, config, plaintext)
}

// Describe summarises jwe's pin ("tang http://…", "sss 2 of 3: …").
func (ps Pins) Describe(jwe *JWE) string {
	pin, err := jwe.Header.Pin()
	if err != nil {
		return "?"
	}
	if p, ok := ps[pin]; ok {
		return p.Describe(jwe)
	}
	return pin
}

// Params are jwe's pin ("pin") and its parameters.
func (ps Pins) Params(jwe *JWE) map[string]any {
	pin, err := jwe.Header.Pin()
	if err != nil {
		return map[string]any{"error": err.Error()}
	}
	out := map[string]any{}
	if p, ok := ps[pin]; ok {
		out = p.Params(jwe)
	}
	out["pin"] = pin
	return out
}

// Token is a clevis LUKS2 token.
type Token struct {
	Keyslots []string
	JWE      *JWE
}

// ParseToken parses a clevis token.
func ParseToken(raw []byte) (*Token, error) {
	if len(raw) > MaxJWE {
		return nil, malformed("token of %d bytes", len(raw))
	}
	var t struct {
		Type     string          `json:"type"`
		Keyslots []string        `json:"keyslots"`
		JWE      json.RawMessage `json:"jwe"`
	}
	if err := json.Unmarshal(raw, &t); err != nil {
		return nil, malformed("token: %v", err)
	}
	if t.Type != TokenType {
		return nil, malformed("token type %q, want %q", t.Type, TokenType)
	}
	jwe, err := ParseFlattened(t.JWE)
	if err != nil {
		return nil, err
	}
	return &Token{Keyslots: t.Keyslots, JWE: jwe}, nil
}

// Marshal is the token's JSON.
func (t *Token) Marshal() (json.RawMessage, error) {
	ks := t.Keyslots
	if ks == nil {
		ks = []string{}
	}
	return json.Marshal(struct {
		Type     string          `json:"type"`
		Keyslots []string        `json:"keyslots"`
		JWE      json.RawMessage `json:"jwe"`
	}{TokenType, ks, t.JWE.Flattened()})
}

// KEK opens keyslots bound to clevis tokens with its pins, and, made by
// NewRecipient, makes such keyslots.
type KEK struct {
	pins   Pins
	pin    string
	config json.RawMessage
}

// NewIdentity is the KEK that opens clevis keyslots with pins.
func NewIdentity(pins Pins) *KEK { return &KEK{pins: pins} }

// NewRecipient is the KEK that makes keyslots bound to pin under config
// (e.g. "tang", {"url":"http://tang.example"}); it opens them too.
func NewRecipient(pins Pins, pin string, config json.RawMessage) *KEK {
	return &KEK{pins: pins, pin: pin, config: config}
}

// KeyslotOptions are the options for a clevis keyslot: PBKDF2 with 1000
// iterations, as clevis luks bind (the passphrase is 320 random bits).
func KeyslotOptions() *keyring.KeyslotOptions {
	return &keyring.KeyslotOptions{KDF: keyring.KDFParams{Type: "pbkdf2", Hash: "sha256", Iterations: 1000}}
}

// Unwrap implements keyring.Identity: the passphrase of keyslot ks from
// its clevis token. A keyslot without one is not this KEK's; a token that
// cannot be read or whose pin fails (a Tang server down, too few shares)
// makes the keyslot unavailable, with the reason.
func (k *KEK) Unwrap(ctx context.Context, ks *keyring.Keyslot) (*keyring.Secret, error) {
	return keyring.UnwrapTokens(ctx, ks, TokenType, "clevis", func(ctx context.Context, t keyring.Token) (*keyring.Secret, error) {
		return k.unwrapToken(ctx, t.Raw)
	})
}

func (k *KEK) unwrapToken(ctx context.Context, raw json.RawMessage) (*keyring.Secret, error) {
	tok, err := ParseToken(raw)
	if err != nil {
		return nil, err
	}
	return k.pins.Decrypt(ctx, tok.JWE)
}

// Wrap implements keyring.Recipient: a new random passphrase, encrypted
// with the KEK's pin into a clevis token.
func (k *KEK) Wrap(ctx context.Context) (*keyring.Secret, []json.RawMessage, error) {
	if k.pin == "" {
		return nil, nil, errors.New("clevis: this KEK has no pin configuration to make a keyslot with")
	}
	var raw [passphraseBytes]byte
	defer clear(raw[:])
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, nil, err
	}
	secret, err := keyring.NewSecret(b64.EncodedLen(passphraseBytes))
	if err != nil {
		return nil, nil, err
	}
	b64.Encode(secret.Bytes(), raw[:])
	jwe, err := k.pins.Encrypt(ctx, k.pin, k.config, secret.Bytes())
	if err != nil {
		secret.Destroy()
		return nil, nil, err
	}
	// Before a keyslot depends on it, check the pins can undo it.
	back, err := k.pins.Decrypt(ctx, jwe)
	if err != nil {
		secret.Destroy()
		return nil, nil, fmt.Errorf("clevis: checking the new JWE: %w", err)
	}
	same := back.Equal(secret)
	back.Destroy()
	if !same {
		secret.Destroy()
		return nil, nil, errors.New("clevis: the new JWE does not decrypt to the passphrase")
	}
	tok, err := (&Token{JWE: jwe}).Marshal()
	if err != nil {
		secret.Destroy()
		return nil, nil, err
	}
	return secret, []json.RawMessage{tok}, nil
}

// Destroy implements the command line's KEK: a clevis KEK holds no secret.
func (k *KEK) Destroy() {}

// DescribeToken summarises a clevis token for listings ("tang http://…")
// and gives its parameters for JSON ones.
func (ps Pins) DescribeToken(raw json.RawMessage) (string, map[string]any) {
	tok, err := ParseToken(raw)
	if err != nil {
		return "unreadable: " + err.Error(), map[string]any{"error": err.Error()}
	}
	return ps.Describe(tok.JWE), ps.Params(tok.JWE)
}
