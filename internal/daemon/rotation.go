package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/encblk/encblk/internal/audit"
	"github.com/encblk/encblk/pkg/keyring"
	"github.com/encblk/encblk/pkg/rotation"
	"github.com/encblk/encblk/pkg/volume"
)

// Rotation periods: a volume's rotation policy (pkg/rotation, in its
// header) asks for a KEK rotation and a reencryption (a new DEK) every so
// often, and the server that serves the volume carries them out when they
// come due.
//
// The server keeps no KEK after an unlock (it wipes it), so a rotation is
// done only with KEKs it can obtain again by itself, without an operator:
//
//   - a KEK rotation replaces the keyslot that the policy's KEK source
//     opens: a key file of the policy's key directory (replaced by a new
//     key file written there), or the volume's KMIP keyslot (moved to a
//     new key on the key server);
//   - a reencryption re-wraps every keyslot for the new DEK, so it needs
//     the KEK of every keyslot: the key files of the policy's directory
//     and the token sources that need no one (KMIP, Tang/sss clevis
//     tokens, TPM2 without a PIN, age with the default identity:
//     RotationSources). A keyslot none of them opens (a passphrase, a
//     key file elsewhere) stops it before anything is written.
//
// What cannot be done is not half-done: the rotation stays due, status
// shows it overdue with the reason, and an audit record says "needs
// operator" (once per reason).

// Clock is the rotation scheduler's time; tests inject one they advance.
type Clock interface {
	Now() time.Time
	// Timer is time.NewTimer on this clock: c receives once d has
	// passed, unless stop cancels it first.
	Timer(d time.Duration) (c <-chan time.Time, stop func())
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) Timer(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTimer(d)
	return t.C, func() { t.Stop() }
}

// RotationSources are the KEKs a server may obtain without an operator,
// besides the key files of a policy's key directory (which it reads
// itself). The command line provides them (it knows the KEK sources).
type RotationSources interface {
	// Unattended returns the KEKs that may open kr's keyslots through
	// their tokens with no prompt; release wipes them.
	Unattended(ctx context.Context, kr *keyring.Keyring) (ids []keyring.Identity, release func())
	// KMIP prepares the move of kr's KMIP keyslot to a new key on the
	// key server named by config (a client configuration file).
	KMIP(kr *keyring.Keyring, config string) (*KMIPRotation, error)
	// RevokeKMIP revokes keys (superseded) with the client configuration
	// config, for a retry of a KMIPRotation's Retire that failed; a key
	// no longer active counts as revoked. It returns the keys done.
	RevokeKMIP(ctx context.Context, config string, keys []rotation.RetiredKey) ([]rotation.RetiredKey, error)
}

// KMIPRotation is a KEK rotation of a volume's KMIP keyslot onto a new
// key (RotationSources.KMIP).
type KMIPRotation struct {
	Old     keyring.Identity  // opens the KMIP keyslot
	Next    keyring.Recipient // its Wrap creates the new key on the server
	Options *keyring.KeyslotOptions
	// Retire is called once the rotation away from keyslot old is
	// committed in kr: it revokes on the key server (reason superseded)
	// each key the old keyslot used that no keyslot of kr uses any more,
	// as encblk kmip rotate --revoke-old does, so that the replaced key
	// opens nothing again (not even a header backup taken before).
	Retire func(ctx context.Context, kr *keyring.Keyring, old int) Retirement
}

// Retirement is what KMIPRotation.Retire did.
type Retirement struct {
	Revoked []int                 // the keyslots whose key was revoked
	Kept    []string              // keys another keyslot still uses: not revoked
	Failed  []rotation.RetiredKey // keys whose revocation failed, Err says why
	Err     error
}

// maxRotationWait is how long the scheduler sleeps at most: a blocked
// rotation is retried this often, and a policy set beside the server
// (another tool) is seen within it.
const maxRotationWait = time.Hour

// scheduler carries out the volumes' rotation policies.
type scheduler struct {
	clock Clock
	src   RotationSources
	wake  chan struct{}
}

func newScheduler(clock Clock, src RotationSources) *scheduler {
	if clock == nil {
		clock = systemClock{}
	}
	return &scheduler{clock: clock, src: src, wake: make(chan struct{}, 1)}
}

// clock is the volume's clock: its daemon's, else the system's.
func (v *Volume) clock() Clock {
	if v.sched != nil {
		return v.sched.clock
	}
	return systemClock{}
}

// runRotations checks the policies until ctx ends: at once, then when the
// next rotation is due (at most maxRotationWait later), or when a policy
// changes.
func (d *Daemon) runRotations(ctx context.Context) {
	for {
		next := d.CheckRotations(ctx)
		wait := maxRotationWait
		if !next.IsZero() {
			wait = min(wait, max(next.Sub(d.sched.clock.Now()), time.Second))
		}
		// A wake cancels the timer: a test's clock then knows that the
		// scheduler has not yet seen the new state when no timer is set.
		timer, stop := d.sched.clock.Timer(wait)
		select {
		case <-ctx.Done():
			stop()
			return
		case <-timer:
		case <-d.sched.wake:
			stop()
		}
	}
}

// CheckRotations carries out the rotations that are due at the clock's
// now on every served volume, and returns when the next one not yet due
// is (zero: none).
func (d *Daemon) CheckRotations(ctx context.Context) time.Time {
	now := d.sched.clock.Now()
	var next time.Time
	for _, v := range d.cfg.Volumes {
		if ctx.Err() != nil {
			break
		}
		if n := v.checkRotation(ctx, now); !n.IsZero() && (next.IsZero() || n.Before(next)) {
			next = n
		}
	}
	return next
}

// rotation kinds, the index of Volume.blocked.
const (
	kekRotation = iota
	dekRotation
)

// blockedError is why a due rotation was not done: waiting (it will be
// done by itself later) or one that needs an operator.
type blockedError struct {
	operator bool
	err      error
}

func (e *blockedError) Error() string {
	if e.operator {
		return "rotation due, needs operator: " + e.err.Error()
	}
	return "rotation due, waiting: " + e.err.Error()
}

func (e *blockedError) Unwrap() error { return e.err }

func needsOperator(err error) error { return &blockedError{operator: true, err: err} }
func waiting(err error) error       { return &blockedError{err: err} }

// checkRotation does what v's policy asks at now and returns when the
// next rotation that is not due yet is.
func (v *Volume) checkRotation(ctx context.Context, now time.Time) time.Time {
	if v.kr == nil || v.vol == nil {
		return time.Time{}
	}
	v.keyMu.Lock()
	defer v.keyMu.Unlock()
	if v.reenc == nil {
		// Commands that write beside the server (encblk reencrypt) may
		// have changed the header.
		if err := v.kr.Reload(); err != nil {
			v.log().Warn("rotation check: re-reading the header failed", "volume", v.id, "err", err)
			return time.Time{}
		}
	}
	rec, changed, err := rotation.LoadAt(v.kr, now)
	if err != nil {
		v.setBlocked(ctx, kekRotation, needsOperator(err))
		return time.Time{}
	}
	rec.LastKEK = v.lastKEK(rec.LastKEK)
	if changed && !v.spec.ReadOnly {
		v.recordObserved(ctx, rec, now)
	}
	if len(rec.RevokePending) > 0 && !v.spec.ReadOnly {
		v.retryRevoke(ctx, rec, now)
		if rec, _, err = rotation.LoadAt(v.kr, now); err != nil {
			return time.Time{}
		}
		rec.LastKEK = v.lastKEK(rec.LastKEK)
	}
	if rotation.Due(rec.NextKEK(), now) {
		v.setBlocked(ctx, kekRotation, v.rotateKEKDue(ctx, rec, now))
	} else {
		v.setBlocked(ctx, kekRotation, nil)
	}
	if rotation.Due(rec.NextReencrypt(), now) {
		v.setBlocked(ctx, dekRotation, v.reencryptDue(ctx, rec))
	} else {
		v.setBlocked(ctx, dekRotation, nil)
	}
	if rec, err = rotation.Load(v.kr); err != nil {
		return time.Time{}
	}
	rec.LastKEK = v.lastKEK(rec.LastKEK)
	var next time.Time
	for _, t := range []time.Time{rec.NextKEK(), rec.NextReencrypt()} {
		if !t.IsZero() && !rotation.Due(t, now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	return next
}

// setBlocked records why rotation kind was not done (nil: nothing
// blocks it) and audits a new reason. keyMu is held.
func (v *Volume) setBlocked(ctx context.Context, kind int, err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if msg == v.blocked[kind] {
		return
	}
	v.blocked[kind] = msg
	if err == nil {
		return
	}
	ev := audit.RotateKEKDue
	if kind == dekRotation {
		ev = audit.ReencryptDue
	}
	var be *blockedError
	if errors.As(err, &be) && !be.operator {
		v.log().Info("rotation deferred", "volume", v.id, "event", ev, "reason", msg)
		return
	}
	audit.Log(ctx, v.log(), audit.Record{Event: ev, Volume: v.kr.UUID(), Backing: v.spec.Backing, Keyslot: -1,
		Err: err, PeerUID: -1, PeerPID: -1})
}

// rotateKEKDue replaces the keyslot of the policy's KEK source by one for
// a new KEK from it. keyMu is held.
func (v *Volume) rotateKEKDue(ctx context.Context, rec rotation.Record, now time.Time) error {
	if v.spec.ReadOnly {
		return needsOperator(errors.New("the volume is served read-only"))
	}
	if r, _ := v.kr.Reencryption(); r != nil {
		return waiting(errors.New("a reencryption is in progress; the KEK rotation follows it"))
	}
	var (
		oldSlot, newSlot int
		kind             string
		err              error
	)
	switch {
	case rec.KeyDir != "":
		kind = "key file"
		oldSlot, newSlot, err = v.rotateKeyDir(ctx, rotation.KeyDir{Dir: rec.KeyDir, UUID: v.kr.UUID()}, now)
	case rec.KMIPConfig != "":
		kind = "kmip"
		oldSlot, newSlot, err = v.rotateKMIP(ctx, rec.KMIPConfig)
	}
	rr := audit.Record{Event: audit.RotateKEK, Volume: v.kr.UUID(), Backing: v.spec.Backing, Keyslot: newSlot, Err: err, PeerUID: -1, PeerPID: -1}
	if err != nil {
		var be *blockedError
		if !errors.As(err, &be) {
			audit.Log(ctx, v.log(), rr)
			err = needsOperator(err)
		}
		return err
	}
	at, recErr := recordKEK(v.kr, now)
	v.rotatedAt = at
	if recErr != nil {
		// The new keyslot is committed; only its time is missing from the
		// token. This server counts the next rotation from v.rotatedAt
		// (see lastKEK) instead of rotating again at every check.
		v.log().Error("KEK rotated, but its time could not be recorded in the encblk-rotation token; this server counts the next rotation from now, a restarted one from the token's time",
			"volume", v.id, "new_keyslot", newSlot, "err", recErr)
	}
	rr.KEK = v.kekKind(newSlot)
	audit.Log(ctx, v.log(), audit.Record{Event: audit.RotateKEKDue, Volume: v.kr.UUID(), Backing: v.spec.Backing, Keyslot: oldSlot, KEK: kind, PeerUID: -1, PeerPID: -1})
	audit.Log(ctx, v.log(), rr)
	v.log().Info("KEK rotated by the rotation policy", "volume", v.id, "old_keyslot", oldSlot, "new_keyslot", newSlot, "source", kind)
	return nil
}

// rotateKeyDir replaces the keyslot one of d's key files opens by one for
// a new key file in d, then retires the old file.
func (v *Volume) rotateKeyDir(ctx context.Context, d rotation.KeyDir, now time.Time) (int, int, error) {
	keks, err := d.KEKs()
	if err != nil {
		return -1, -1, needsOperator(err)
	}
	defer rotation.Destroy(keks)
	var old rotation.KEK
	slot := -1
	for _, k := range keks {
		s, dek, err := v.kr.Match(ctx, k.Secret)
		if err == nil {
			dek.Destroy()
			old, slot = k, s
			break
		}
	}
	if slot < 0 {
		return -1, -1, needsOperator(fmt.Errorf("none of the key files %s opens a keyslot", d.Dir+"/"+d.UUID+"-*.key"))
	}
	opts := &keyring.KeyslotOptions{}
	for _, ks := range v.kr.Keyslots() {
		if ks.ID == slot {
			// The new keyslot costs what the old one did.
			opts.KDF = keyring.KDFParams{Type: ks.KDF.Type, Hash: ks.KDF.Hash, Iterations: ks.KDF.Iterations, MemoryKiB: ks.KDF.MemoryKiB, Parallel: ks.KDF.Parallel}
		}
	}
	nk, err := d.Generate(now)
	if err != nil {
		return -1, -1, needsOperator(err)
	}
	defer nk.Destroy()
	oldSlot, newSlot, err := v.kr.RotateKEK(ctx, old.Secret, nk.Secret, opts)
	if newSlot < 0 {
		// Not committed, unless the header's primary copy was.
		if derr := d.Discard(ctx, v.kr, nk); derr != nil {
			err = fmt.Errorf("%w (%v)", err, derr)
		}
		return -1, -1, err
	}
	if rerr := d.Retire(old.Path, nk.Path); rerr != nil {
		v.log().Warn("KEK rotated, but retiring the old key file failed", "volume", v.id, "old", old.Path, "new", nk.Path, "err", rerr)
	}
	return oldSlot, newSlot, err
}

// rotateKMIP moves the volume's KMIP keyslot to a new key.
func (v *Volume) rotateKMIP(ctx context.Context, config string) (int, int, error) {
	if v.sched == nil || v.sched.src == nil {
		return -1, -1, needsOperator(errors.New("this server cannot reach KMIP key servers"))
	}
	rot, err := v.sched.src.KMIP(v.kr, config)
	if err != nil {
		return -1, -1, needsOperator(err)
	}
	oldSlot, newSlot, err := v.kr.RotateKEK(ctx, rot.Old, rot.Next, rot.Options)
	if newSlot < 0 {
		return -1, -1, DiscardNewKey(ctx, rot.Next, v.kr, err, true)
	}
	if rot.Retire != nil {
		v.retireKMIP(ctx, rot, oldSlot)
	}
	return oldSlot, newSlot, err
}

// retireKMIP revokes the KMIP key that a committed rotation away from
// keyslot old replaced, with an audit record kmip-revoke for each key
// revoked and one for a failure. A failure does not undo the rotation:
// the key is recorded in the rotation token, and the server retries its
// revocation at every check until it succeeds (retryRevoke).
func (v *Volume) retireKMIP(ctx context.Context, rot *KMIPRotation, old int) {
	r := rot.Retire(ctx, v.kr, old)
	rec := audit.Record{Event: audit.KMIPRevoke, Volume: v.kr.UUID(), Backing: v.spec.Backing, KEK: "encblk-kmip", PeerUID: -1, PeerPID: -1}
	for _, slot := range r.Revoked {
		rec.Keyslot = slot
		audit.Log(ctx, v.log(), rec)
	}
	for _, uid := range r.Kept {
		v.log().Info("rotation: the old KMIP key is still used by another keyslot; not revoked", "volume", v.id, "key", uid)
	}
	if r.Err == nil {
		return
	}
	rec.Keyslot, rec.Err = old, fmt.Errorf("the KEK rotation is done, but the replaced KMIP key is still active (the server retries): %w", r.Err)
	audit.Log(ctx, v.log(), rec)
	v.revokeErr = r.Err.Error()
	if len(r.Failed) == 0 {
		return
	}
	if _, err := rotation.Update(v.kr, v.clock().Now(), func(rec *rotation.Record) {
		rec.RevokePending = append(rec.RevokePending, r.Failed...)
	}); err != nil {
		v.log().Warn("rotation: recording the KMIP keys still to revoke failed", "volume", v.id, "err", err)
	}
}

// retryRevoke tries again to revoke the KMIP keys the rotation token
// lists as replaced but not revoked, and drops those done from it. A
// failure is audited once per reason. keyMu is held.
func (v *Volume) retryRevoke(ctx context.Context, rec rotation.Record, now time.Time) {
	var (
		done []rotation.RetiredKey
		err  error
	)
	switch {
	case v.sched == nil || v.sched.src == nil:
		err = errors.New("this server cannot reach KMIP key servers")
	case rec.KMIPConfig == "":
		err = errors.New("the policy names no KMIP client configuration to revoke them with")
	default:
		done, err = v.sched.src.RevokeKMIP(ctx, rec.KMIPConfig, rec.RevokePending)
	}
	if len(done) > 0 {
		if _, uerr := rotation.Update(v.kr, now, func(r *rotation.Record) {
			r.RevokePending = slices.DeleteFunc(r.RevokePending, func(k rotation.RetiredKey) bool {
				return slices.ContainsFunc(done, func(d rotation.RetiredKey) bool { return d.UID == k.UID })
			})
		}); uerr != nil {
			v.log().Warn("rotation: recording the revoked KMIP keys failed", "volume", v.id, "err", uerr)
		}
		for _, k := range done {
			audit.Log(ctx, v.log(), audit.Record{Event: audit.KMIPRevoke, Volume: v.kr.UUID(), Backing: v.spec.Backing, Keyslot: -1, KEK: "encblk-kmip", PeerUID: -1, PeerPID: -1})
			v.log().Info("rotation: a replaced KMIP key is revoked now", "volume", v.id, "key", k.UID)
		}
	}
	if err == nil {
		v.revokeErr = ""
		return
	}
	if err.Error() != v.revokeErr {
		v.revokeErr = err.Error()
		audit.Log(ctx, v.log(), audit.Record{Event: audit.KMIPRevoke, Volume: v.kr.UUID(), Backing: v.spec.Backing, Keyslot: -1, KEK: "encblk-kmip",
			Err: fmt.Errorf("replaced KMIP keys still active: %w", err), PeerUID: -1, PeerPID: -1})
	}
}

// reencryptDue starts an online reencryption with the KEKs the server can
// obtain by itself; without one for every keyslot it writes nothing.
// keyMu is held.
func (v *Volume) reencryptDue(ctx context.Context, rec rotation.Record) error {
	switch {
	case v.spec.ReadOnly:
		return needsOperator(errors.New("the volume is served read-only"))
	case v.reenc != nil:
		return waiting(errors.New("a reencryption is running"))
	case v.vol.State() != volume.Unlocked:
		return needsOperator(errors.New("the volume is locked: unlock it and the reencryption starts"))
	}
	if r, _ := v.kr.Reencryption(); r != nil {
		return needsOperator(errors.New("a reencryption is recorded but not running: unlock the volume again, or finish it (encblk reencrypt --resume)"))
	}
	var ids []keyring.Identity
	if rec.KeyDir != "" {
		if keks, err := (rotation.KeyDir{Dir: rec.KeyDir, UUID: v.kr.UUID()}).KEKs(); err == nil {
			defer rotation.Destroy(keks)
			ids = append(ids, rotation.Identities(keks)...)
		}
	}
	if v.sched != nil && v.sched.src != nil {
		more, release := v.sched.src.Unattended(ctx, v.kr)
		defer release()
		ids = append(ids, more...)
	}
	if len(ids) == 0 {
		return needsOperator(errors.New("no keyslot has a KEK this server can obtain by itself (key files in the policy's key directory, KMIP, Tang, TPM2 without PIN)"))
	}
	if err := v.kr.StartReencrypt(ctx, ids, nil); err != nil {
		audit.Log(ctx, v.log(), audit.Record{Event: audit.ReencryptStart, Volume: v.kr.UUID(), Backing: v.spec.Backing, Keyslot: -1, Err: err, PeerUID: -1, PeerPID: -1})
		return needsOperator(err)
	}
	audit.Log(ctx, v.log(), audit.Record{Event: audit.ReencryptDue, Volume: v.kr.UUID(), Backing: v.spec.Backing, Keyslot: -1, PeerUID: -1, PeerPID: -1})
	if _, err := v.unlockReencrypting(ctx, ids, v.reencryptRate(nil)); err != nil {
		return needsOperator(fmt.Errorf("the reencryption is recorded but did not start (it starts when the volume is next unlocked): %w", err))
	}
	return nil
}

// recordObserved writes rec, which Observe changed at now, to the header:
// a reencryption another tool did (cryptsetup reencrypt, while no encblk
// served the volume) is recorded as observed now, with an audit record
// reencrypt-observed, so that the next one counts from here instead of
// coming due at once. keyMu is held.
func (v *Volume) recordObserved(ctx context.Context, rec rotation.Record, now time.Time) {
	err := rotation.Save(v.kr, rec)
	if !rec.ReencryptObserved || !rec.LastReencrypt.Equal(now.UTC().Truncate(time.Second)) {
		if err != nil { // only the volume key's ID was new to the record
			v.log().Warn("rotation check: recording the volume key in the rotation token failed", "volume", v.id, "err", err)
		}
		return
	}
	audit.Log(ctx, v.log(), audit.Record{Event: audit.ReencryptObserved, Volume: v.kr.UUID(), Backing: v.spec.Backing, Keyslot: -1, Err: err, PeerUID: -1, PeerPID: -1})
	v.log().Info("the volume key was replaced outside encblk (e.g. cryptsetup reencrypt): a reencryption observed now; the next one counts from here",
		"volume", v.id, "observed", rec.LastReencrypt)
}

// recordKEK records a KEK rotation at now in the rotation token
// (rotation.RecordKEK; a test makes it fail).
var recordKEK = rotation.RecordKEK

// lastKEK is the later of the token's last KEK rotation and the one this
// server did (which the token may lack if recording it failed).
func (v *Volume) lastKEK(token time.Time) time.Time {
	if v.rotatedAt.After(token) {
		return v.rotatedAt
	}
	return token
}

// recordReencrypt records that a reencryption finished now.
func (v *Volume) recordReencrypt() error {
	return rotation.RecordReencrypt(v.kr, v.clock().Now())
}

// rotationTime is the last KEK rotation recorded in kr.
func rotationTime(kr *keyring.Keyring) time.Time {
	rec, _ := rotation.Load(kr)
	return rec.LastKEK
}

// SetRotationPolicy sets the parts set names of the volume's rotation
// policy (see rotation.SetPolicy); the scheduler looks at it at once.
func (v *Volume) SetRotationPolicy(ctx context.Context, p rotation.Policy, set rotation.Fields) (rotation.Record, error) {
	if v.kr == nil {
		return rotation.Record{}, errPlain
	}
	v.keyMu.Lock()
	rec, err := rotation.SetPolicy(v.kr, p, set, v.clock().Now())
	v.blocked = [2]string{}
	v.keyMu.Unlock()
	if err == nil && v.sched != nil {
		select {
		case v.sched.wake <- struct{}{}:
		default:
		}
	}
	return rec, err
}

func (d *Daemon) handlePolicy(w http.ResponseWriter, r *http.Request) {
	req, v, ok := d.keyRequest(w, r, false, false)
	if !ok {
		return
	}
	if req.Policy == nil {
		fail(w, fmt.Errorf("%w: no policy", ErrBadRequest))
		return
	}
	rec, err := v.SetRotationPolicy(r.Context(), req.Policy.Policy, req.Policy.Set)
	d.done(w, r, audit.RotationPolicy, v, -1, err, rec)
}

// RotationStatus is a volume's rotation policy and schedule in status.
type RotationStatus struct {
	KEK       RotationItem `json:"kek"`
	Reencrypt RotationItem `json:"reencrypt"`
	// KEKSource is where a new KEK comes from: "key directory DIR" or
	// "kmip CONFIG" ("" without).
	KEKSource string `json:"kek_source,omitempty"`
	// KMIPRevokePending are the UIDs of KMIP keys a KEK rotation replaced
	// that are still active: their revocation failed and is retried.
	KMIPRevokePending []string `json:"kmip_revoke_pending,omitempty"`
}

// RotationItem is one kind of rotation in RotationStatus.
type RotationItem struct {
	Every string     `json:"every"` // a period (90d, 1y) or "off"
	Last  *time.Time `json:"last,omitempty"`
	Next  *time.Time `json:"next,omitempty"`
	// Overdue: Next has passed and the rotation was not done.
	Overdue bool `json:"overdue,omitempty"`
	// Blocked is why the server has not done it (served volumes only).
	Blocked string `json:"blocked,omitempty"`
	// Observed (reencryption only): Last is when encblk found the volume
	// key replaced by another tool (cryptsetup reencrypt), not when that
	// reencryption finished; Unrecorded: found by this status, not yet
	// written to the header (the volume's next server records it).
	Observed   bool `json:"observed,omitempty"`
	Unrecorded bool `json:"unrecorded,omitempty"`
}

// RotationItems describes rec at now, for a command that changed it.
func RotationItems(rec rotation.Record, now time.Time) *RotationStatus {
	return rotationStatus(rec, now, [2]string{}, false)
}

// loadRotationStatus describes kr's rotation record at now, with a
// reencryption by another tool observed (unrecorded if the header does
// not say so yet); nil without a record.
func loadRotationStatus(kr *keyring.Keyring, now time.Time, blocked [2]string, lastKEK func(time.Time) time.Time) (rotation.Record, *RotationStatus) {
	rec, changed, err := rotation.LoadAt(kr, now)
	if err != nil {
		return rotation.Record{}, nil
	}
	if lastKEK != nil && !rec.IsZero() {
		rec.LastKEK = lastKEK(rec.LastKEK)
	}
	return rec, rotationStatus(rec, now, blocked, changed)
}

// rotationStatus describes rec at now, nil when there is nothing to say;
// unsaved: rec differs from the header's.
func rotationStatus(rec rotation.Record, now time.Time, blocked [2]string, unsaved bool) *RotationStatus {
	if rec.IsZero() {
		return nil
	}
	item := func(every rotation.Period, last, next time.Time, blocked string) RotationItem {
		it := RotationItem{Every: every.String(), Blocked: blocked}
		if !last.IsZero() {
			it.Last = &last
		}
		if !next.IsZero() {
			it.Next = &next
			it.Overdue = rotation.Due(next, now)
		}
		return it
	}
	s := &RotationStatus{
		KEK:       item(rec.KEKEvery, rec.LastKEK, rec.NextKEK(), blocked[kekRotation]),
		Reencrypt: item(rec.ReencryptEvery, rec.LastReencrypt, rec.NextReencrypt(), blocked[dekRotation]),
	}
	s.Reencrypt.Observed = rec.ReencryptObserved
	for _, k := range rec.RevokePending {
		s.KMIPRevokePending = append(s.KMIPRevokePending, k.UID)
	}
	s.Reencrypt.Unrecorded = rec.ReencryptObserved && unsaved
	switch {
	case rec.KeyDir != "":
		s.KEKSource = "key directory " + rec.KeyDir
	case rec.KMIPConfig != "":
		s.KEKSource = "kmip " + rec.KMIPConfig
	}
	return s
}
