package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/encblk/encblk/internal/audit"
	"github.com/encblk/encblk/internal/backing"
	"github.com/encblk/encblk/pkg/keyring"
	"github.com/encblk/encblk/pkg/rotation"
)

// Target is a volume whose keys a command changes: through its server
// when a process serves it (the server holds the header; a change made
// beside it would be undone by its next commit, and it must see new
// keyslots at once), or here, in the header, when none does. Commands
// ask a Target and never decide themselves which of the two applies.
//
// The header is read once, when the Target is opened: the commands use
// Keyring (read-only while served) to pick keyslots and tokens.
type Target struct {
	path   string           // the backing ("" with only a control socket)
	kr     *keyring.Keyring // nil with only a control socket
	file   *backing.File    // offline: the backing, flock'ed
	client *Client          // served
	vol    string           // served: the volume's ID ("" for the only one)
	log    *slog.Logger     // audit records of changes made here
}

// TargetOptions say where a Target's server and header are.
type TargetOptions struct {
	// Header is a detached header. A server always reads the header on
	// its backing, so such a target is changed here.
	Header string
	// Control is the server's control socket; without it the server is
	// found from the backing's path (ClientFor). With Control and no path
	// the server's only volume is meant and no header is read here.
	Control string
	// Logger receives the audit records of changes made here (a server
	// writes its own); nil discards them.
	Logger *slog.Logger
}

// OpenTarget opens the volume at path: it finds its server, or else
// opens the backing (flock'ed, so that no server starts half-way) and its
// header read-write. It fails with an error wrapping backing.ErrBusy when
// a process holds the backing but cannot be reached, and with one wrapping
// ErrNotServed when Control names a socket nobody answers on.
func OpenTarget(ctx context.Context, path string, o TargetOptions) (*Target, error) {
	t := &Target{path: path, log: o.Logger}
	if o.Header == "" {
		var err error
		switch {
		case o.Control != "":
			t.client = NewClient(o.Control)
			if path != "" {
				if t.vol, err = VolumeID(path); err != nil {
					return nil, err
				}
			}
		case path == "":
			return nil, errors.New("name a backing or a control socket")
		default:
			t.client, t.vol, err = ClientFor(ctx, path)
			if errors.Is(err, ErrNotServed) {
				t.client, err = nil, nil
			}
			if err != nil {
				return nil, err
			}
		}
	}
	if path == "" {
		return t, nil
	}
	hdr := o.Header
	if hdr == "" {
		hdr = path
	}
	var err error
	if t.client != nil {
		t.kr, err = keyring.Open(hdr, &keyring.Options{ReadOnly: true})
	} else {
		if o.Header == "" {
			if t.file, err = backing.Open(path, backing.Options{}); err != nil {
				if errors.Is(err, backing.ErrBusy) {
					err = fmt.Errorf("%s is served by a process whose control socket cannot be reached (use --control): %w", path, err)
				}
				return nil, err
			}
		}
		t.kr, err = keyring.Open(hdr, nil)
	}
	if err != nil {
		t.Close()
		return nil, err // keyring.Open names hdr
	}
	return t, nil
}

// Served reports whether a server carries out the changes.
func (t *Target) Served() bool { return t.client != nil }

// Keyring is the target's header (nil with only a control socket).
func (t *Target) Keyring() *keyring.Keyring { return t.kr }

// Close releases the header and the backing.
func (t *Target) Close() error {
	if t.kr != nil {
		t.kr.Close()
	}
	if t.file != nil {
		return t.file.Close()
	}
	return nil
}

// AddKeyslot wraps the volume's DEK, opened with old, for the KEK newKEK
// returns (called once old has proved right) in a new keyslot. A KMIP key
// or the like created for a keyslot that was not committed is removed
// again (see DiscardNewKey).
func (t *Target) AddKeyslot(ctx context.Context, old keyring.Identity, newKEK func() (keyring.Recipient, error), opts *keyring.KeyslotOptions) (int, error) {
	if t.client == nil {
		dek, err := t.kr.Unlock(ctx, old)
		if err != nil {
			return 0, err
		}
		defer dek.Destroy()
		nk, err := newKEK()
		if err != nil {
			return 0, err
		}
		slot, err := t.kr.AddKeyslot(ctx, dek, nk, opts)
		if err != nil {
			err = DiscardNewKey(ctx, nk, t.kr, err, true)
			t.audit(ctx, audit.AddKeyslot, -1, err)
			return 0, err
		}
		t.audit(ctx, audit.AddKeyslot, slot, nil)
		return slot, nil
	}
	oldSecret, err := t.oldSecret(ctx, old)
	if err != nil {
		return 0, err
	}
	defer oldSecret.Destroy()
	nk, err := newKEK()
	if err != nil {
		return 0, err
	}
	newSecret, tokens, err := nk.Wrap(ctx)
	if err != nil {
		return 0, DiscardNewKey(ctx, nk, t.kr, err, true)
	}
	defer newSecret.Destroy()
	slot, err := t.client.AddKeyslotWrapped(ctx, t.vol, oldSecret.Bytes(), newSecret.Bytes(), tokens, &opts.KDF, opts.Slot)
	if err != nil {
		return 0, DiscardNewKey(ctx, nk, t.kr, err, Answered(err))
	}
	return slot, t.reload(fmt.Sprintf("keyslot %d added", slot))
}

// RotateKEK replaces the KEK old by nk: one header commit takes the old
// keyslot out and the new one in (keyring.Keyring.RotateKEK), here or by
// the server, which also records the time in an encblk-rotation token. A
// key created for a keyslot that was not committed is removed again.
func (t *Target) RotateKEK(ctx context.Context, old keyring.Identity, nk keyring.Recipient, opts *keyring.KeyslotOptions) (oldSlot, newSlot int, err error) {
	if t.client == nil {
		oldSlot, newSlot, err = t.kr.RotateKEK(ctx, old, nk, opts)
		if err != nil {
			err = DiscardNewKey(ctx, nk, t.kr, err, true)
			t.audit(ctx, audit.RotateKEK, -1, err)
			return 0, 0, err
		}
		recordKEK(t.kr, time.Now()) // committed either way; see Volume.RotateKEK
		t.audit(ctx, audit.RotateKEK, newSlot, nil)
		return oldSlot, newSlot, nil
	}
	oldSecret, err := t.oldSecret(ctx, old)
	if err != nil {
		return 0, 0, notAttempted{err}
	}
	defer oldSecret.Destroy()
	newSecret, tokens, err := nk.Wrap(ctx)
	if err != nil {
		return 0, 0, notAttempted{DiscardNewKey(ctx, nk, t.kr, err, true)}
	}
	defer newSecret.Destroy()
	res, err := t.client.RotateKEKWrapped(ctx, t.vol, oldSecret.Bytes(), newSecret.Bytes(), tokens, &opts.KDF)
	if err != nil {
		return 0, 0, DiscardNewKey(ctx, nk, t.kr, err, Answered(err))
	}
	return res.OldSlot, res.NewSlot, t.reload(fmt.Sprintf("rotation done (keyslot %d replaced by %d)", res.OldSlot, res.NewSlot))
}

// SetRotationPolicy sets the parts set names of the volume's rotation
// policy to p's (rotation.SetPolicy), by its server if it is served, and
// returns the volume's rotation record.
func (t *Target) SetRotationPolicy(ctx context.Context, p rotation.Policy, set rotation.Fields) (rotation.Record, error) {
	if t.client != nil {
		rec, err := t.client.SetRotationPolicy(ctx, t.vol, p, set)
		if err != nil {
			return rec, err
		}
		return rec, t.reload("rotation policy set")
	}
	rec, err := rotation.SetPolicy(t.kr, p, set, time.Now())
	t.audit(ctx, audit.RotationPolicy, -1, err)
	return rec, err
}

// notAttempted wraps an error that came before any change was sent to a
// server or written to a header.
type notAttempted struct{ error }

func (e notAttempted) Unwrap() error { return e.error }

// MayHaveCommitted reports whether a failed AddKeyslot or RotateKEK may
// still have committed its new keyslot (so that, say, a key file generated
// for it must be kept): false only when the old KEK was wrong or the
// failure came before anything was sent or written.
func MayHaveCommitted(err error) bool {
	var na notAttempted
	return err != nil && !errors.Is(err, keyring.ErrNoMatchingKeyslot) && !errors.As(err, &na)
}

// RemoveKeyslot destroys keyslot slot (not the last one).
func (t *Target) RemoveKeyslot(ctx context.Context, slot int) error {
	if t.client != nil {
		if err := t.client.RemoveKeyslot(ctx, t.vol, slot); err != nil {
			return err
		}
		return t.reload(fmt.Sprintf("keyslot %d removed", slot))
	}
	kind := kekKind(t.kr, slot)
	err := t.kr.RemoveKeyslot(ctx, slot)
	t.audit(ctx, audit.RemoveKeyslot, slot, err, kind)
	return err
}

// RemoveKeyslots destroys several keyslots (not all that open the
// volume): here in one header commit (keyring.RemoveKeyslots), through a
// server one by one.
func (t *Target) RemoveKeyslots(ctx context.Context, slots []int) error {
	if t.client != nil {
		for _, slot := range slots {
			if err := t.client.RemoveKeyslot(ctx, t.vol, slot); err != nil {
				return errors.Join(err, t.reload("keyslots removed in part"))
			}
		}
		return t.reload("keyslots removed")
	}
	kinds := make([]string, len(slots))
	for i, slot := range slots {
		kinds[i] = kekKind(t.kr, slot)
	}
	err := t.kr.RemoveKeyslots(ctx, slots)
	for i, slot := range slots {
		t.audit(ctx, audit.RemoveKeyslot, slot, err, kinds[i])
	}
	return err
}

// audit records a change made here (the server audits its own).
func (t *Target) audit(ctx context.Context, event string, slot int, err error, kind ...string) {
	r := audit.Record{Event: event, Volume: t.kr.UUID(), Backing: t.path, Keyslot: slot, Err: err}
	if len(kind) > 0 {
		r.KEK = kind[0]
	} else if err == nil {
		r.KEK = kekKind(t.kr, slot)
	}
	audit.Log(ctx, t.log, r.Self())
}

// oldSecret is what the server needs of old: the secret that opens one of
// the volume's keyslots (for a KMIP keyslot, the one the key server
// releases), or old's own secret without a header to read.
func (t *Target) oldSecret(ctx context.Context, old keyring.Identity) (*keyring.Secret, error) {
	_, secret, err := keyring.SecretFor(ctx, t.kr, old)
	return secret, err
}

// reload re-reads the header after the server changed it.
func (t *Target) reload(done string) error {
	if t.kr == nil {
		return nil
	}
	if err := t.kr.Reload(); err != nil {
		return fmt.Errorf("%s, but re-reading the header failed: %w", done, err)
	}
	return nil
}

// DiscardNewKey is for a failed attempt, with err, to add a keyslot for
// the new KEK nk (alone or in a rotation). What nk's Wrap created outside
// the header for it (a keyring.Discarder's key on a key server) is removed
// again when that is safe: the outcome must be final (the header was
// changed here, or the volume's server answered; else the server may
// still commit) and no token in kr, re-read, may refer to it (the failure
// may have come after the header was committed). With no header to read,
// only a wrong old KEK proves that nothing was committed. It returns err,
// saying what became of it.
func DiscardNewKey(ctx context.Context, nk keyring.Recipient, kr *keyring.Keyring, err error, final bool) error {
	d, ok := nk.(keyring.Discarder)
	if !ok || d.Created() == "" {
		return err
	}
	what := d.Created()
	ctx = context.WithoutCancel(ctx)
	var derr error
	switch {
	case !final:
		return fmt.Errorf("%w (the %s created for it was kept: without the server's answer the keyslot may yet be committed)", err, what)
	case kr != nil:
		derr = d.Discard(ctx, kr)
	case errors.Is(err, keyring.ErrNoMatchingKeyslot):
		derr = d.Discard(ctx, nil)
	default:
		return fmt.Errorf("%w (the %s created for it was kept: name the backing (TARGET) so that its header tells whether a keyslot uses it)", err, what)
	}
	if derr != nil {
		return fmt.Errorf("%w (the %s created for it was not destroyed: %v)", err, what, derr)
	}
	return fmt.Errorf("%w (the %s created for it was destroyed)", err, what)
}
