package keyring

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Identity is a KEK that can open keyslots, in the spirit of age's
// Identity. Unwrap returns the secret fed to keyslot ks's KDF (a
// passphrase, the bytes of a key file, a secret a key server or a TPM
// released for one of ks.Tokens…); the keyring destroys it after use.
//
// Unwrap has three outcomes besides a secret, told apart by the error:
//
//   - not mine: an error wrapping ErrNoMatchingKeyslot. The keyslot is not
//     this KEK's (it has none of the source's tokens); the keyring tries
//     the next, and says nothing about it.
//   - unavailable now: an error wrapping ErrUnavailable (best an
//     *UnavailableError, which names the source and the token). The
//     keyslot is this KEK's but its secret cannot be had now: the key
//     server is down or refuses, the TPM's PCRs changed, the Tang server
//     does not answer. The keyring tries the next keyslot and, if none
//     opens, reports every such reason in one error wrapping
//     ErrUnavailable.
//   - fatal: any other error stops the unlock and is returned as is.
//
// ks is nil when the caller has no header to read (SecretFor with no
// keyring): a KEK whose secret does not depend on a keyslot (a passphrase)
// returns it; others return an error saying what they need.
//
// A source must bound the time Unwrap takes (ctx carries the caller's
// deadline; a network source adds its own timeout) and never put a secret
// in an error.
type Identity interface {
	Unwrap(ctx context.Context, ks *Keyslot) (*Secret, error)
}

// Recipient is a KEK that a new keyslot can be made for, in the spirit of
// age's Recipient. Wrap returns the secret the new keyslot's KDF will take,
// and tokens (JSON objects with at least a "type") that the keyring stores
// bound to the new keyslot in the same metadata update; their "keyslots"
// field is set by the keyring. The caller destroys the secret.
type Recipient interface {
	Wrap(ctx context.Context) (secret *Secret, tokens []json.RawMessage, err error)
}

// Discarder is implemented by a Recipient whose Wrap creates something
// outside the header for the new keyslot (a key on a key server), so that
// it can be removed again if the keyslot was never committed.
type Discarder interface {
	// Created describes what Wrap created ("KMIP key 3f6c…"), or "" if
	// it created nothing.
	Created() string
	// Discard removes it. With kr (the header the keyslot was meant for)
	// it first re-reads kr and keeps what a token there refers to (the
	// failure may have come after the commit); with kr nil the caller
	// knows the keyslot was not committed.
	Discard(ctx context.Context, kr *Keyring) error
}

// UnavailableError is the "unavailable now" outcome of Identity.Unwrap:
// keyslot Keyslot is the source's, but its secret cannot be had now.
type UnavailableError struct {
	Source  string // the kind of KEK ("kmip", "tang", "tpm2"), for messages
	Keyslot int
	Token   int // the token the source used, -1 if none
	Err     error
}

func (e *UnavailableError) Error() string {
	if e.Token >= 0 {
		return fmt.Sprintf("keyslot %d (token %d): %v", e.Keyslot, e.Token, e.Err)
	}
	return fmt.Sprintf("keyslot %d: %v", e.Keyslot, e.Err)
}

// Unwrap returns ErrUnavailable and the cause.
func (e *UnavailableError) Unwrap() []error { return []error{ErrUnavailable, e.Err} }

// LockedError is what an unlock returns when no keyslot opened and some
// were unavailable: it wraps ErrUnavailable and every reason, in the
// order the keyslots were tried, and says them on one line.
type LockedError struct {
	Reasons []error
}

func (e *LockedError) Error() string {
	msg := make([]string, len(e.Reasons))
	source := ""
	for i, err := range e.Reasons {
		msg[i] = err.Error()
		var ue *UnavailableError
		s := ""
		if errors.As(err, &ue) {
			s = ue.Source
		}
		switch {
		case i == 0:
			source = s
		case s != source:
			source = ""
		}
	}
	prefix := ErrUnavailable.Error()
	if source != "" {
		// All from one kind of KEK: say which.
		prefix = source + ": " + prefix
	}
	return prefix + ": " + strings.Join(msg, "; ")
}

// Unwrap returns ErrUnavailable and the reasons.
func (e *LockedError) Unwrap() []error { return append([]error{ErrUnavailable}, e.Reasons...) }

// UnwrapTokens is the usual body of a token source's Unwrap: it calls
// unwrap on each token of type tokenType bound to ks, in id order, and
// returns the first secret. A keyslot with no such token is not the
// source's (ErrNoMatchingKeyslot); each token that fails becomes an
// *UnavailableError naming source, keyslot and token (several are joined).
// ks nil (no header) is an error saying so.
func UnwrapTokens(ctx context.Context, ks *Keyslot, tokenType, source string, unwrap func(context.Context, Token) (*Secret, error)) (*Secret, error) {
	if ks == nil {
		return nil, fmt.Errorf("%s: this KEK opens keyslots through their %s tokens, which are in the volume's header: name the backing (TARGET) whose header holds them", source, tokenType)
	}
	var errs []error
	for _, t := range ks.Tokens {
		if t.Type != tokenType {
			continue
		}
		s, err := unwrap(ctx, t)
		if err == nil {
			return s, nil
		}
		errs = append(errs, &UnavailableError{Source: source, Keyslot: ks.ID, Token: t.ID, Err: err})
		if ctx.Err() != nil {
			break
		}
	}
	switch len(errs) {
	case 0:
		return nil, fmt.Errorf("%w: keyslot %d has no %s token", ErrNoMatchingKeyslot, ks.ID, tokenType)
	case 1:
		return nil, errs[0]
	}
	return nil, errors.Join(errs...)
}
