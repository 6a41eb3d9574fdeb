package kmipkek

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/encblk/encblk/pkg/keyring"
	"github.com/encblk/encblk/pkg/kmip"
)

// KEK is the "kmip" key-encryption-key source: a keyring.Recipient that
// makes a keyslot whose secret only a KMIP server can recover, and a
// keyring.Identity that recovers it.
//
// Wrap draws a 32-byte random secret for the new keyslot and has the
// server encrypt it with an AES-256 key that never leaves the server
// (KMIP Encrypt, AES-GCM, additional data naming the format and the key). The result goes into an encblk-kmip token bound to the
// keyslot. Unwrap has the server decrypt it again (KMIP Decrypt). Revoking
// or destroying the key on the server therefore makes every later unlock
// through these keyslots fail: crypto-lock.
//
// The secret is high-entropy, so keyslots made for it need no expensive
// KDF; KeyslotOptions gives the cheap one.
type KEK struct {
	cfg    *kmip.FileConfig
	keyUID string
	log    *slog.Logger

	mu      sync.Mutex
	created string
}

// NewKEK returns the KMIP KEK that uses cfg's client credentials. New
// keyslots use the key cfg.KeyUID, or a key created and activated on
// cfg.Servers when that is empty. Unlocking asks the servers each token
// lists.
func NewKEK(cfg *kmip.FileConfig, log *slog.Logger) (*KEK, error) {
	if cfg == nil {
		return nil, errors.New("kmip: no client configuration")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &KEK{cfg: cfg, keyUID: cfg.KeyUID, log: log}, nil
}

// Destroy is a no-op: a KEK holds no secret, only the path to the
// client's credentials. It lets KEK stand wherever a passphrase would.
func (k *KEK) Destroy() {}

// KeyslotOptions are the keyslot options for KMIP keyslots: PBKDF2 with
// the minimum iteration count, as the secret is 256 random bits (a slow
// KDF would protect nothing and only delay unlocking).
func KeyslotOptions() *keyring.KeyslotOptions {
	return &keyring.KeyslotOptions{KDF: keyring.KDFParams{Type: "pbkdf2", Hash: "sha256", Iterations: 1000}}
}

// Created implements keyring.Discarder: "KMIP key UID" for the key Wrap
// created on the server, or "" if it used an existing key.
func (k *KEK) Created() string {
	if uid := k.CreatedUID(); uid != "" {
		return "KMIP key " + uid
	}
	return ""
}

// CreatedUID returns the Unique Identifier of the key Wrap created on the
// server, or "" if it used an existing key.
func (k *KEK) CreatedUID() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.created
}

// DiscardCreated revokes and destroys, in one batched request, the key
// Wrap created, for when the keyslot it was made for was not committed. It
// does nothing if Wrap created no key.
func (k *KEK) DiscardCreated(ctx context.Context) error {
	uid := k.CreatedUID()
	if uid == "" {
		return nil
	}
	c, err := k.cfg.Client(nil, k.log)
	if err != nil {
		return err
	}
	if err := c.RevokeDestroy(ctx, uid, kmip.RevocationCessationOfOperation, "encblk: keyslot not committed"); err != nil {
		return err
	}
	k.mu.Lock()
	k.created = ""
	k.mu.Unlock()
	return nil
}

// Wrap implements keyring.Recipient.
func (k *KEK) Wrap(ctx context.Context) (*keyring.Secret, []json.RawMessage, error) {
	if len(k.cfg.Servers) == 0 {
		return nil, nil, errors.New("kmip: the client configuration names no servers")
	}
	c, err := k.cfg.Client(nil, k.log)
	if err != nil {
		return nil, nil, err
	}
	uid := k.keyUID
	if uid == "" {
		uid, err = createKEK(ctx, c, k.log)
		if err != nil {
			return nil, nil, fmt.Errorf("creating the key: %w", err)
		}
		k.mu.Lock()
		k.created = uid
		k.mu.Unlock()
		k.log.Info("created and activated a KMIP key", "uid", uid)
	}
	secret, err := keyring.NewSecret(secretLen)
	if err != nil {
		return nil, nil, err
	}
	ok := false
	defer func() {
		if !ok {
			secret.Destroy()
		}
	}()
	nonce := make([]byte, 12)
	if _, err := rand.Read(secret.Bytes()); err != nil {
		return nil, nil, err
	}
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, err
	}
	aad := tokenAAD(uid)
	ct, err := c.Encrypt(ctx, uid, kmip.AESGCM, secret.Bytes(), nonce, aad)
	if err != nil {
		return nil, nil, fmt.Errorf("wrapping the keyslot secret: %w", err)
	}
	if !bytes.Equal(ct.IV, nonce) || len(ct.Data) != secretLen {
		return nil, nil, fmt.Errorf("%w: the server changed the nonce or the length", kmip.ErrUnexpectedResponse)
	}
	// Before a keyslot depends on it, check the server can undo it.
	pt, err := c.Decrypt(ctx, uid, kmip.AESGCM, ct, aad)
	if err != nil {
		return nil, nil, fmt.Errorf("checking the wrapped keyslot secret: %w", err)
	}
	same := bytes.Equal(pt, secret.Bytes())
	clear(pt)
	if !same {
		return nil, nil, fmt.Errorf("%w: the server's decryption does not give back the secret", kmip.ErrUnexpectedResponse)
	}
	raw, err := json.Marshal(Token{
		Type: TokenType, Keyslots: []string{}, Version: tokenVersion, Servers: c.Servers(), KeyUID: uid,
		Cipher: CipherAES256GCM, Nonce: ct.IV, Tag: ct.Tag, Ciphertext: ct.Data, Config: k.cfg.Path,
	})
	if err != nil {
		return nil, nil, err
	}
	ok = true
	return secret, []json.RawMessage{raw}, nil
}

// createKEK creates and activates an AES-256 encrypt/decrypt key, marked
// Sensitive (never handed out by Get) where the server accepts that
// attribute, and named "encblk-kek-" and 16 random hex digits.
func createKEK(ctx context.Context, c *kmip.Client, log *slog.Logger) (string, error) {
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", err
	}
	attrs := append(kmip.AES256EncryptDecrypt(), kmip.Name(fmt.Sprintf("encblk-kek-%x", id)))
	uid, err := c.CreateActive(ctx, append(attrs, kmip.Sensitive(true))...)
	if r, ok := kmip.Reason(err); ok && (r == kmip.ReasonInvalidField || r == kmip.ReasonFeatureNotSupported || r == kmip.ReasonOperationNotSupported) {
		log.Warn("the KMIP server refused the Sensitive attribute; creating the key without it", "err", err)
		uid, err = c.CreateActive(ctx, attrs...)
	}
	return uid, err
}

// Unwrap implements keyring.Identity: it asks the servers of ks's
// encblk-kmip tokens to decrypt the keyslot secret. A keyslot without such
// a token is not this KEK's (keyring.ErrNoMatchingKeyslot). A token whose
// server refuses or cannot be reached, or that cannot be read, makes the
// keyslot unavailable (*keyring.UnavailableError naming the token and what
// the server answered): the keyring goes on to the next keyslot.
func (k *KEK) Unwrap(ctx context.Context, ks *keyring.Keyslot) (*keyring.Secret, error) {
	return keyring.UnwrapTokens(ctx, ks, TokenType, "kmip", func(ctx context.Context, t keyring.Token) (*keyring.Secret, error) {
		s, err := k.unwrapToken(ctx, t)
		if err != nil {
			k.log.Warn("KMIP unlock failed", "keyslot", ks.ID, "token", t.ID, "err", err)
		}
		return s, err
	})
}

func (k *KEK) unwrapToken(ctx context.Context, t keyring.Token) (*keyring.Secret, error) {
	tok, err := ParseToken(t.Raw)
	if err != nil {
		return nil, err
	}
	c, err := k.cfg.Client(tok.Servers, k.log)
	if err != nil {
		return nil, err
	}
	pt, err := c.Decrypt(ctx, tok.KeyUID, kmip.AESGCM, &kmip.Ciphertext{Data: tok.Ciphertext, IV: tok.Nonce, Tag: tok.Tag},
		tokenAAD(tok.KeyUID))
	if err != nil {
		return nil, err
	}
	if len(pt) != secretLen {
		clear(pt)
		return nil, fmt.Errorf("%w: decrypted secret is %d bytes", kmip.ErrUnexpectedResponse, len(pt))
	}
	return keyring.SecretFromBytes(pt)
}

// Discard implements keyring.Discarder: it destroys the key Wrap created,
// with kr unless a token in kr (re-read) refers to it
// (DiscardUnreferenced), without kr at once (DiscardCreated).
func (k *KEK) Discard(ctx context.Context, kr *keyring.Keyring) error {
	if kr != nil {
		return k.DiscardUnreferenced(ctx, kr)
	}
	return k.DiscardCreated(ctx)
}

// DiscardUnreferenced is DiscardCreated for a failed keyslot change whose
// outcome on disk is unknown: it re-reads kr's header and destroys the key
// only if no token there refers to it. A failure can come after the
// primary header copy was committed, and destroying that keyslot's key
// would lose it; such a key is kept (and reported in the error).
func (k *KEK) DiscardUnreferenced(ctx context.Context, kr *keyring.Keyring) error {
	uid := k.CreatedUID()
	if uid == "" {
		return nil
	}
	if err := kr.Reload(); err != nil {
		return fmt.Errorf("key %s kept: the header could not be re-read to tell whether a keyslot uses it: %w", uid, err)
	}
	for _, t := range kr.Tokens() {
		if t.Type != TokenType {
			continue
		}
		if tok, err := ParseToken(t.Raw); err == nil && tok.KeyUID == uid {
			return fmt.Errorf("key %s kept: token %d on disk refers to it", uid, t.ID)
		}
	}
	return k.DiscardCreated(ctx)
}

// HasTokens reports whether kr has a KMIP keyslot (an encblk-kmip token
// bound to a keyslot).
func HasTokens(kr *keyring.Keyring) bool {
	for _, t := range kr.Tokens() {
		if t.Type == TokenType && len(t.Keyslots) > 0 {
			return true
		}
	}
	return false
}

// SlotStatus describes one KMIP keyslot.
type SlotStatus struct {
	Keyslot int
	Token   int
	Servers []string
	KeyUID  string
	State   kmip.State // 0 if it could not be read
	Err     error      // why State could not be read
}

// Slots lists kr's KMIP keyslots with their keys and servers as the
// tokens record them, without asking a server (State is 0). A keyslot
// whose token cannot be parsed is listed with Err set.
func Slots(kr *keyring.Keyring) []SlotStatus {
	var out []SlotStatus
	for _, t := range kr.Tokens() {
		if t.Type != TokenType {
			continue
		}
		tok, err := ParseToken(t.Raw)
		for _, slot := range t.Keyslots {
			st := SlotStatus{Keyslot: slot, Token: t.ID, Err: err}
			if err == nil {
				st.Servers, st.KeyUID = tok.Servers, tok.KeyUID
			}
			out = append(out, st)
		}
	}
	return out
}

// Status is Slots with each key's state, asked of the servers its token
// lists (Get Attributes). Keyslots whose server cannot be asked are listed
// with Err set.
func (k *KEK) Status(ctx context.Context, kr *keyring.Keyring) []SlotStatus {
	out := Slots(kr)
	for i := range out {
		st := &out[i]
		if st.Err != nil {
			continue
		}
		c, err := k.cfg.Client(st.Servers, k.log)
		if err == nil {
			st.State, err = c.KeyState(ctx, st.KeyUID)
		}
		st.Err = err
	}
	return out
}

// Revoke revokes on the key servers, with reason, the key of each of
// slots (as Slots lists them; a key several keyslots share is revoked
// once), sending msg with each request. It returns the slots whose key it
// revoked. A slot whose token cannot be read is reported, not skipped:
// its key cannot be named, and the volume would look crypto-locked while
// that keyslot still works.
func Revoke(ctx context.Context, cfg *kmip.FileConfig, slots []SlotStatus, reason kmip.RevocationReasonCode, msg string, log *slog.Logger) ([]SlotStatus, error) {
	var errs []error
	var revoked []SlotStatus
	done := map[string]bool{}
	for _, st := range slots {
		if st.Err != nil {
			errs = append(errs, fmt.Errorf("keyslot %d (token %d): not revoked: %w", st.Keyslot, st.Token, st.Err))
			continue
		}
		if done[st.KeyUID] {
			continue
		}
		done[st.KeyUID] = true
		c, err := cfg.Client(st.Servers, log)
		if err == nil {
			err = c.Revoke(ctx, st.KeyUID, reason, msg)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("revoking key %s: %w", st.KeyUID, err))
			continue
		}
		revoked = append(revoked, st)
	}
	return revoked, errors.Join(errs...)
}

// Retired is what a rotation away from keyslot old retired: the keys old
// used (per before, Slots before the rotation) that no keyslot of kr uses
// any more, and those another keyslot still uses (not to be revoked).
func Retired(before []SlotStatus, kr *keyring.Keyring, old int) (retired []SlotStatus, stillUsed []string) {
	now := Slots(kr)
	for _, st := range before {
		if st.Keyslot != old || st.KeyUID == "" {
			continue
		}
		if slices.ContainsFunc(now, func(s SlotStatus) bool { return s.KeyUID == st.KeyUID }) {
			stillUsed = append(stillUsed, st.KeyUID)
			continue
		}
		retired = append(retired, st)
	}
	return retired, stillUsed
}
