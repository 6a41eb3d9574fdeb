package keyring

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/encblk/encblk/internal/secmem"
)

// Unlock opens the volume with the first of the KEKs ids that opens a
// keyslot and returns the DEK in protected memory; the caller must Destroy
// it. Keyslots are tried in cryptsetup's order (preferred first, then by
// number; "ignore" never), each with every identity in turn. If none
// opens, the error wraps ErrNoMatchingKeyslot, or, when some keyslot's
// source was unavailable, is a *LockedError wrapping ErrUnavailable that
// says why for each.
func (k *Keyring) Unlock(ctx context.Context, ids ...Identity) (*secmem.Buffer, error) {
	_, dek, err := k.Match(ctx, ids...)
	return dek, err
}

// Match is Unlock that also reports which keyslot opened.
func (k *Keyring) Match(ctx context.Context, ids ...Identity) (slot int, dek *secmem.Buffer, err error) {
	cands, err := k.candidates()
	if err != nil {
		return -1, nil, err
	}
	slot, err = unlockLoop(ctx, cands, ids, func(c *candidate, secret *Secret) error {
		defer secret.Destroy()
		dek, err = c.open(ctx, secret.Bytes())
		return err
	})
	if err != nil {
		return -1, nil, err
	}
	return slot, dek, nil
}

// SecretFor runs the unlock loop of kr without opening a keyslot: it
// returns the first secret one of ids gives for one of kr's keyslots (in
// Unlock's order), and that keyslot, for a process that opens the keyslot
// itself (a server that holds the header). The secret is not checked
// against the keyslot; the caller destroys it. With kr nil (no header to
// read) each identity is asked for a secret independent of any keyslot
// (Unwrap with a nil keyslot), and slot is -1.
func SecretFor(ctx context.Context, kr *Keyring, ids ...Identity) (slot int, secret *Secret, err error) {
	var cands []candidate
	if kr == nil {
		cands = []candidate{{slot: -1}}
	} else if cands, err = kr.candidates(); err != nil {
		return -1, nil, err
	}
	slot, err = unlockLoop(ctx, cands, ids, func(_ *candidate, s *Secret) error {
		secret = s
		return nil
	})
	if err != nil {
		return -1, nil, err
	}
	return slot, secret, nil
}

// candidate is a keyslot the unlock loop may try: the view an Identity
// sees (nil: no header) and how to open the keyslot with a secret.
type candidate struct {
	slot int
	view *Keyslot
	open func(ctx context.Context, secret []byte) (*secmem.Buffer, error)
}

// candidates lists the keyslots an unlock tries, in order: preferred
// first, then by number, "ignore" never (cryptsetup's order); for LUKS1,
// the active slots by number.
func (k *Keyring) candidates() ([]candidate, error) {
	k.mu.Lock()
	m := k.meta
	k.mu.Unlock()
	if err := m.checkRequirements(); err != nil {
		return nil, err
	}
	seg := lowestSegment(m)
	d := m.segmentDigest(seg)
	if d == nil {
		return nil, fmt.Errorf("%w: no digest for segment %d", ErrCorrupt, seg)
	}
	order := slices.Clone(d.Keyslots)
	slices.SortFunc(order, func(a, b int) int {
		if pa, pb := m.Keyslots[a].Priority, m.Keyslots[b].Priority; pa != pb {
			return pb - pa
		}
		return a - b
	})
	var out []candidate
	for _, i := range order {
		ks := m.Keyslots[i]
		if ks.Priority == 0 {
			continue
		}
		view := ks.clone()
		out = append(out, candidate{slot: i, view: &view, open: func(ctx context.Context, secret []byte) (*secmem.Buffer, error) {
			return k.openVerified(ctx, ks, d, secret)
		}})
	}
	return out, nil
}

// unlockLoop is the one unlock loop: each candidate keyslot in order, each
// identity on it, until use accepts a secret. use owns the secret it is
// given (it destroys it or hands it on). Identity outcomes and use's errors
// are sorted as Identity documents: not mine and a wrong key go on
// silently, unavailable goes on and is reported at the end, an
// unsupported keyslot is skipped (and if nothing matches, the error is
// ErrUnsupported, not ErrNoMatchingKeyslot), anything else stops.
func unlockLoop(ctx context.Context, cands []candidate, ids []Identity, use func(*candidate, *Secret) error) (int, error) {
	var unavailable []error
	var skipped error
	for i := range cands {
		c := &cands[i]
		for _, id := range ids {
			if err := ctx.Err(); err != nil {
				return -1, err
			}
			var view *Keyslot
			if c.view != nil {
				v := c.view.clone() // each identity sees the keyslot as it is
				view = &v
			}
			secret, err := id.Unwrap(ctx, view)
			if err == nil {
				if secret.Len() == 0 {
					secret.Destroy()
					return -1, fmt.Errorf("keyslot %d: the KEK gave an empty secret", c.slot)
				}
				if err = use(c, secret); err == nil {
					return c.slot, nil
				}
			}
			switch {
			case ctx.Err() != nil:
				return -1, fmt.Errorf("keyslot %d: %w", c.slot, err)
			case errors.Is(err, ErrUnavailable):
				unavailable = append(unavailable, unavailableReasons(c.slot, err)...)
			case errors.Is(err, ErrNoMatchingKeyslot):
			case errors.Is(err, ErrUnsupported):
				skipped = err
			default:
				return -1, err
			}
		}
	}
	switch {
	case len(unavailable) > 0:
		return -1, &LockedError{Reasons: unavailable}
	case skipped != nil:
		// The keyslot encblk cannot open may be the one the KEK opens:
		// that is unsupported, not a wrong key (as with a LUKS1 header,
		// whose one cipher is refused whatever the key).
		return -1, fmt.Errorf("no keyslot encblk can open matches: %w", skipped)
	}
	return -1, ErrNoMatchingKeyslot
}

// unavailableReasons lists the reasons an unavailable keyslot gave: the
// *UnavailableErrors err joins (one per token tried), else err itself
// attributed to the keyslot.
func unavailableReasons(slot int, err error) []error {
	if _, ok := err.(*UnavailableError); ok {
		return []error{err}
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			if _, ok := e.(*UnavailableError); ok {
				out = append(out, e)
			}
		}
		if len(out) > 0 {
			return out
		}
	}
	var ue *UnavailableError
	if errors.As(err, &ue) {
		return []error{err}
	}
	return []error{&UnavailableError{Keyslot: slot, Token: -1, Err: err}}
}

// UnlockKeyslot opens one keyslot, even one whose priority is "ignore".
func (k *Keyring) UnlockKeyslot(ctx context.Context, id Identity, slot int) (*secmem.Buffer, error) {
	k.mu.Lock()
	m := k.meta
	k.mu.Unlock()
	if err := m.checkRequirements(); err != nil {
		return nil, err
	}
	ks := m.Keyslots[slot]
	if ks == nil {
		return nil, fmt.Errorf("%w: %d", ErrKeyslotNotFound, slot)
	}
	d := m.keyslotDigest(slot)
	if d == nil {
		return nil, fmt.Errorf("%w: keyslot %d has no digest", ErrCorrupt, slot)
	}
	view := ks.clone()
	secret, err := id.Unwrap(ctx, &view)
	if err != nil {
		return nil, err
	}
	defer secret.Destroy()
	return k.openVerified(ctx, ks, d, secret.Bytes())
}

// openVerified opens keyslot ks with secret and checks the key against
// digest d: a key that does not match is ErrNoMatchingKeyslot.
func (k *Keyring) openVerified(ctx context.Context, ks *Keyslot, d *digest, secret []byte) (*secmem.Buffer, error) {
	dek, err := openKeyslot(ctx, k.dev, ks, secret)
	if err != nil {
		return nil, err
	}
	return verified(dek, d)
}

// verified returns dek if it matches digest d; otherwise it destroys it
// and returns ErrNoMatchingKeyslot (the KEK was wrong).
func verified(dek *secmem.Buffer, d *digest) (*secmem.Buffer, error) {
	ok, err := d.verify(dek.Bytes())
	if err != nil || !ok {
		dek.Destroy()
		if err != nil {
			return nil, err
		}
		return nil, ErrNoMatchingKeyslot
	}
	return dek, nil
}
