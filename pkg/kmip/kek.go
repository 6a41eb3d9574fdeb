package kmip

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/encblk/encblk/internal/secmem"
	"github.com/encblk/encblk/pkg/keyring"
)

// ErrStillLocked is wrapped when a volume has KMIP keyslots but no key
// server released a secret for any of them; the error joins, per keyslot,
// what each server answered (a *ResultError with the KMIP reason, or an
// error wrapping ErrUnavailable).
var ErrStillLocked = errors.New("kmip: volume stays locked")

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
	cfg    *FileConfig
	keyUID string
	log    *slog.Logger

	mu      sync.Mutex
	created string
}

// NewKEK returns the KMIP KEK that uses cfg's client credentials. New
// keyslots use the key cfg.KeyUID, or a key created and activated on
// cfg.Servers when that is empty. Unlocking asks the servers each token
// lists.
func NewKEK(cfg *FileConfig, log *slog.Logger) (*KEK, error) {
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

// Created returns the Unique Identifier of the key Wrap created on the
// server, or "" if it used an existing key.
func (k *KEK) Created() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.created
}

// DiscardCreated revokes and destroys, in one batched request, the key
// Wrap created, for when the keyslot it was made for was not committed. It
// does nothing if Wrap created no key.
func (k *KEK) DiscardCreated(ctx context.Context) error {
	uid := k.Created()
	if uid == "" {
		return nil
	}
	c, err := k.cfg.Client(nil, k.log)
	if err != nil {
		return err
	}
	if err := c.RevokeDestroy(ctx, uid, RevocationCessationOfOperation, "encblk: keyslot not committed"); err != nil {
		return err
	}
	k.mu.Lock()
	k.created = ""
	k.mu.Unlock()
	return nil
}

// Wrap implements keyring.Recipient.
func (k *KEK) Wrap(ctx context.Context) (*secmem.Buffer, []json.RawMessage, error) {
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
	secret, err := secmem.New(secretLen)
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
	ct, err := c.Encrypt(ctx, uid, AESGCM, secret.Bytes(), nonce, aad)
	if err != nil {
		return nil, nil, fmt.Errorf("wrapping the keyslot secret: %w", err)
	}
	if !bytes.Equal(ct.IV, nonce) || len(ct.Data) != secretLen {
		return nil, nil, fmt.Errorf("%w: the server changed the nonce or the length", ErrUnexpectedResponse)
	}
	// Before a keyslot depends on it, check the server can undo it.
	pt, err := c.Decrypt(ctx, uid, AESGCM, ct, aad)
	if err != nil {
		return nil, nil, fmt.Errorf("checking the wrapped keyslot secret: %w", err)
	}
	same := bytes.Equal(pt, secret.Bytes())
	secmem.Wipe(pt)
	if !same {
		return nil, nil, fmt.Errorf("%w: the server's decryption does not give back the secret", ErrUnexpectedResponse)
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
func createKEK(ctx context.Context, c *Client, log *slog.Logger) (string, error) {
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", err
	}
	attrs := append(AES256EncryptDecrypt(), Name(fmt.Sprintf("encblk-kek-%x", id)))
	uid, err := c.CreateActive(ctx, append(attrs, Sensitive(true))...)
	if r, ok := Reason(err); ok && (r == ReasonInvalidField || r == ReasonFeatureNotSupported || r == ReasonOperationNotSupported) {
		log.Warn("the KMIP server refused the Sensitive attribute; creating the key without it", "err", err)
		uid, err = c.CreateActive(ctx, attrs...)
	}
	return uid, err
}

// Unwrap implements keyring.Identity: it asks the servers of ks's
// encblk-kmip tokens to decrypt the keyslot secret. A keyslot without such
// a token is not ours (keyring.ErrNoMatchingKeyslot). A keyslot whose
// servers refuse or cannot be reached stops the unlock with an error
// wrapping ErrStillLocked that names, per token, the server and what it
// answered; Unlock instead goes on to the volume's other KMIP keyslots.
func (k *KEK) Unwrap(ctx context.Context, ks *keyring.Keyslot) (*secmem.Buffer, error) {
	if ks == nil {
		return nil, errors.New("kmip: a KMIP KEK has no secret of its own; it opens keyslots through their tokens (use KEK.Secret)")
	}
	var errs []error
	for _, t := range ks.Tokens {
		if t.Type != TokenType {
			continue
		}
		secret, err := k.unwrapToken(ctx, t)
		if err == nil {
			return secret, nil
		}
		err = fmt.Errorf("keyslot %d (token %d): %w", ks.ID, t.ID, err)
		k.log.Warn("KMIP unlock failed", "keyslot", ks.ID, "token", t.ID, "err", err)
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("%w: keyslot %d has no %s token", keyring.ErrNoMatchingKeyslot, ks.ID, TokenType)
	}
	return nil, &lockedError{errs}
}

// lockedError wraps ErrStillLocked and why each KMIP keyslot failed, on
// one line.
type lockedError struct{ errs []error }

func (e *lockedError) Error() string {
	msg := make([]string, len(e.errs))
	for i, err := range e.errs {
		msg[i] = err.Error()
	}
	return ErrStillLocked.Error() + ": " + strings.Join(msg, "; ")
}

func (e *lockedError) Unwrap() []error { return append([]error{ErrStillLocked}, e.errs...) }

func (k *KEK) unwrapToken(ctx context.Context, t keyring.Token) (*secmem.Buffer, error) {
	tok, err := ParseToken(t.Raw)
	if err != nil {
		return nil, err
	}
	c, err := k.cfg.Client(tok.Servers, k.log)
	if err != nil {
		return nil, err
	}
	pt, err := c.Decrypt(ctx, tok.KeyUID, AESGCM, &Ciphertext{Data: tok.Ciphertext, IV: tok.Nonce, Tag: tok.Tag},
		tokenAAD(tok.KeyUID))
	if err != nil {
		return nil, err
	}
	if len(pt) != secretLen {
		secmem.Wipe(pt)
		return nil, fmt.Errorf("%w: decrypted secret is %d bytes", ErrUnexpectedResponse, len(pt))
	}
	return secmem.FromBytes(pt)
}

// DiscardUnreferenced is DiscardCreated for a failed keyslot change whose
// outcome on disk is unknown: it re-reads kr's header and destroys the key
// only if no token there refers to it. A failure can come after the
// primary header copy was committed, and destroying that keyslot's key
// would lose it; such a key is kept (and reported in the error).
func (k *KEK) DiscardUnreferenced(ctx context.Context, kr *keyring.Keyring) error {
	uid := k.Created()
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

// Unlock opens kr through its KMIP keyslots, trying each in the keyring's
// order (preferred first, "ignore" never) until a server releases a
// secret, and returns the keyslot that opened and the DEK (the caller
// destroys it). If every KMIP keyslot fails, the error wraps
// ErrStillLocked and joins, per keyslot, which server answered what (the
// KMIP result reason) or could not be reached; it does not wrap
// keyring.ErrNoMatchingKeyslot, since the key is not wrong, only withheld.
// A volume without KMIP keyslots gives keyring.ErrNoMatchingKeyslot.
func (k *KEK) Unlock(ctx context.Context, kr *keyring.Keyring) (int, *secmem.Buffer, error) {
	return k.eachSlot(ctx, kr, func(ks keyring.Keyslot) (*secmem.Buffer, error) {
		return kr.UnlockKeyslot(ctx, k, ks.ID)
	})
}

// Secret is Unlock that stops short of opening the keyslot: it returns the
// first KMIP keyslot whose server released its secret, and that secret
// (the keyslot's passphrase, in protected memory; the caller destroys
// it), for a process that opens the keyslot itself, such as encblk's
// daemon. The secret is not checked against the keyslot here.
func (k *KEK) Secret(ctx context.Context, kr *keyring.Keyring) (int, *secmem.Buffer, error) {
	return k.eachSlot(ctx, kr, func(ks keyring.Keyslot) (*secmem.Buffer, error) {
		return k.Unwrap(ctx, &ks)
	})
}

// eachSlot runs try on kr's KMIP keyslots in the keyring's order
// (preferred first, "ignore" never) until one succeeds, and otherwise
// joins their failures into one error wrapping ErrStillLocked.
func (k *KEK) eachSlot(ctx context.Context, kr *keyring.Keyring, try func(keyring.Keyslot) (*secmem.Buffer, error)) (int, *secmem.Buffer, error) {
	slots := slices.DeleteFunc(kr.Keyslots(), func(ks keyring.Keyslot) bool {
		return ks.Priority == 0 || !slices.ContainsFunc(ks.Tokens, func(t keyring.Token) bool { return t.Type == TokenType })
	})
	slices.SortStableFunc(slots, func(a, b keyring.Keyslot) int { return b.Priority - a.Priority })
	var errs []error
	for _, ks := range slots {
		buf, err := try(ks)
		if err == nil {
			return ks.ID, buf, nil
		}
		var le *lockedError
		if errors.As(err, &le) {
			errs = append(errs, le.errs...)
		} else {
			errs = append(errs, fmt.Errorf("keyslot %d: %w", ks.ID, err))
		}
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return -1, nil, fmt.Errorf("%w: the volume has no %s keyslot", keyring.ErrNoMatchingKeyslot, TokenType)
	}
	return -1, nil, &lockedError{errs}
}

// SlotStatus describes one KMIP keyslot.
type SlotStatus struct {
	Keyslot int
	Token   int
	Servers []string
	KeyUID  string
	State   State // 0 if it could not be read
	Err     error // why State could not be read
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
