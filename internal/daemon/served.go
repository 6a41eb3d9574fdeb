package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/encblk/encblk/internal/backing"
	"github.com/encblk/encblk/pkg/blockdev"
	"github.com/encblk/encblk/pkg/keyring"
	"github.com/encblk/encblk/pkg/nbd"
	"github.com/encblk/encblk/pkg/volume"
)

// ErrTooSmall: the backing ends before the data segment begins.
var ErrTooSmall = errors.New("backing is too small for its data segment")

// VolumeSpec says how to serve one backing.
type VolumeSpec struct {
	// Backing is the path of the backing file or block device.
	Backing string
	// Header, when set, is the file that holds the volume's LUKS2 header
	// (a detached header, cryptsetup's --header); the backing then holds
	// only the data.
	Header string
	// Export is the NBD export name ("" is the default export).
	Export string
	// ReadOnly exports the volume read-only.
	ReadOnly bool
	// Plain serves the backing unencrypted (benchmarks, tests); it is
	// refused for a backing that carries a LUKS header.
	Plain bool
	// Direct uses O_DIRECT on the backing where requests are aligned.
	Direct bool
	// LockMode and LockTimeout: what requests do while the volume is locked.
	LockMode    volume.LockMode
	LockTimeout time.Duration
	// Logger receives the volume's own events (a background reencryption
	// and its audit records); nil: slog.Default().
	Logger *slog.Logger
	// ReencryptRate caps an online reencryption's rewrite rate, bytes/s:
	// 0 is DefaultReencryptRate, negative is no cap. encblk reencrypt
	// --throttle overrides it for one reencryption.
	ReencryptRate int64
}

// Volume is one served backing: the flock'ed backing, and either the
// keyring and the encrypted volume over it, or the plain device.
type Volume struct {
	spec VolumeSpec
	id   string
	file *backing.File
	kr   *keyring.Keyring // nil when plain
	vol  *volume.Volume   // nil when plain
	dev  blockdev.Device  // vol (its whole-block view), or the plain device
	// export is the device as every NBD connection sees it: byte-granular
	// (one read-modify-write adapter, whose range lock orders the
	// partial-sector writes of all connections and dev's writes),
	// multi-conn (they share one backing descriptor, so a flush covers
	// them all), CACHE when the device can prefetch.
	export nbd.Export

	keyMu     sync.Mutex    // serialises unlock, lock, rotation and keyslot changes
	rotatedAt time.Time     // last KEK rotation (from the encblk-rotation token)
	reenc     *reencryptRun // online reencryption in the background (keyMu)
	// sched is the daemon's rotation scheduler (clock, KEK sources, what
	// is blocked); nil outside a Daemon (see rotation.go).
	sched     *scheduler
	blocked   [2]string // why a due KEK / DEK rotation was not done (keyMu)
	revokeErr string    // why revoking a replaced KMIP key failed, audited once (keyMu)
}

// OpenVolume opens the backing of spec (failing with an error wrapping
// backing.ErrBusy if another process serves it) and its LUKS2 header, and
// unlocks it with kek, or leaves it locked when kek is nil. A block device
// served read-write is claimed (O_EXCL: backing.ErrInUse while it is
// mounted, mapped by device-mapper or claimed by another program), so the
// server never writes under a filesystem or a dm-crypt mapping of the same
// device, and neither can start on it while it serves.
func OpenVolume(ctx context.Context, spec VolumeSpec, kek keyring.Identity) (*Volume, error) {
	id, err := VolumeID(spec.Backing)
	if err != nil {
		return nil, err
	}
	f, err := backing.Open(spec.Backing, backing.Options{ReadOnly: spec.ReadOnly, Direct: spec.Direct, Exclusive: !spec.ReadOnly})
	if err != nil {
		return nil, err
	}
	v := &Volume{spec: spec, id: id, file: f}
	if err := v.open(ctx, kek); err != nil {
		v.Close()
		return nil, err
	}
	return v, nil
}

func (v *Volume) open(ctx context.Context, kek keyring.Identity) error {
	if v.spec.Plain {
		p, err := backing.NewPlain(v.file)
		if err != nil {
			return err
		}
		v.setDevice(p, "plain (unencrypted) "+v.spec.Backing)
		return nil
	}
	hdr := v.spec.Backing
	if v.spec.Header != "" {
		hdr = v.spec.Header
	}
	kr, err := keyring.Open(hdr, nil)
	if err != nil {
		// A read-only header may still be served, without key changes.
		kr, err = keyring.Open(hdr, &keyring.Options{ReadOnly: true})
	}
	if err != nil {
		return err // it names the header's path
	}
	v.kr = kr
	seg, err := kr.DataSegment()
	if err != nil {
		// A recorded reencryption is served with routing (reencrypt.go).
		rseg, ok := reencryptionSegment(kr)
		if !ok {
			return fmt.Errorf("%s: %w", v.spec.Backing, err)
		}
		seg = rseg
	}
	size := int64(seg.Size)
	if seg.Dynamic {
		size = (v.file.Size() - int64(seg.Offset)) / int64(seg.SectorSize) * int64(seg.SectorSize)
	}
	if size <= 0 || int64(seg.Offset)+size > v.file.Size() {
		return fmt.Errorf("%s: %w (%d bytes; data segment at %d)", v.spec.Backing, ErrTooSmall, v.file.Size(), seg.Offset)
	}
	cfg := volume.Config{
		DataOffset:    int64(seg.Offset),
		Size:          size,
		SectorSize:    seg.SectorSize,
		IVTweak:       seg.IVTweak,
		AllowDiscards: kr.AllowDiscards(),
		ReadOnly:      v.spec.ReadOnly,
		LockMode:      v.spec.LockMode,
		LockTimeout:   v.spec.LockTimeout,
	}
	vol, err := volume.New(v.file, cfg, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", v.spec.Backing, err)
	}
	v.vol = vol
	v.setDevice(vol, "encblk "+kr.UUID())
	v.rotatedAt = rotationTime(kr)
	if kek != nil {
		if err := v.Unlock(ctx, kek); err != nil {
			return fmt.Errorf("%s: %w", v.spec.Backing, err)
		}
	}
	return nil
}

// log is where the volume's own events go.
func (v *Volume) log() *slog.Logger {
	if v.spec.Logger != nil {
		return v.spec.Logger
	}
	return slog.Default()
}

// ID is the volume's ID (see VolumeID).
func (v *Volume) ID() string { return v.id }

// Spec is how the volume is served.
func (v *Volume) Spec() VolumeSpec { return v.spec }

// setDevice makes dev the volume's device and derives its NBD export: the
// NBD side takes any byte range, the other (Device) whole blocks, and
// writes through the two are ordered against each other (see
// blockdev.Frontends).
func (v *Volume) setDevice(dev blockdev.Device, description string) {
	anyBytes, wholeBlocks := blockdev.Frontends(dev)
	v.dev = wholeBlocks
	_, cache := dev.(blockdev.Prefetcher)
	v.export = nbd.Export{Device: anyBytes, Description: description, MultiConn: true, Cache: cache}
}

// instrument makes every request through Device and NBDExport count in
// m's series (at the frontend's granularity: an NBD request is counted
// once, however ByteGranular splits it).
func (v *Volume) instrument(m *metrics) {
	if _, done := v.dev.(*measured); done {
		return
	}
	v.dev = m.instrument(v.id, v.dev)
	v.export.Device = m.instrument(v.id, v.export.Device)
}

// Device is the volume's block device, for a frontend that sends whole
// logical blocks (ublk). Its writes and the NBD export's partial-block
// writes of the same blocks are ordered (blockdev.Frontends).
func (v *Volume) Device() blockdev.Device { return v.dev }

// NBDExport is what the NBD server serves: the device, byte-granular.
func (v *Volume) NBDExport() nbd.Export { return v.export }

// Unlock opens the keyring with kek and hands the DEK to the volume.
func (v *Volume) Unlock(ctx context.Context, kek keyring.Identity) error {
	_, err := v.unlock(ctx, kek, nil)
	return err
}

// unlock is Unlock that also reports which keyslot opened; rate, if set,
// caps a reencryption this unlock starts (bytes/s, 0: none).
func (v *Volume) unlock(ctx context.Context, kek keyring.Identity, rate *int64) (int, error) {
	if v.vol == nil {
		return -1, errPlain
	}
	v.keyMu.Lock()
	defer v.keyMu.Unlock()
	if ok, err := v.unlockReencrypting(ctx, []keyring.Identity{kek}, v.reencryptRate(rate)); ok {
		return -1, err
	}
	slot, dek, err := v.kr.Match(ctx, kek)
	if errors.Is(err, keyring.ErrNoMatchingKeyslot) {
		// Another process (encblk keyslot add, encblk kmip add) may have
		// added the keyslot since this server read the header: if the
		// header on disk is newer, try again with it.
		seq := v.kr.SeqID()
		if rerr := v.kr.Reload(); rerr == nil && v.kr.SeqID() != seq {
			slot, dek, err = v.kr.Match(ctx, kek)
		}
	}
	if err != nil {
		return -1, err
	}
	return slot, v.vol.Unlock(dek)
}

// kekKind names what opens keyslot slot for audit records: the type of
// a token bound to it, else "secret" (a passphrase or a key file).
func (v *Volume) kekKind(slot int) string { return kekKind(v.kr, slot) }

func kekKind(kr *keyring.Keyring, slot int) string {
	if kr == nil || slot < 0 {
		return ""
	}
	for _, t := range kr.Tokens() {
		if slices.Contains(t.Keyslots, slot) {
			return t.Type
		}
	}
	return "secret"
}

// Lock waits for in-flight requests, flushes and wipes the DEK.
func (v *Volume) Lock(ctx context.Context) error {
	if v.vol == nil {
		return errPlain
	}
	v.keyMu.Lock()
	defer v.keyMu.Unlock()
	v.stopReencryption()
	return v.vol.Lock(ctx)
}

// RotateKEK replaces the KEK old by new (a new keyslot is committed, then
// the old one wiped) and records the time in an encblk-rotation token (best
// effort: a failure there does not fail the committed rotation).
// The DEK and the data are untouched; the volume keeps serving.
func (v *Volume) RotateKEK(ctx context.Context, old keyring.Identity, new keyring.Recipient, opts *keyring.KeyslotOptions) (oldSlot, newSlot int, err error) {
	if v.kr == nil {
		return 0, 0, errPlain
	}
	v.keyMu.Lock()
	defer v.keyMu.Unlock()
	oldSlot, newSlot, err = v.kr.RotateKEK(ctx, old, new, opts)
	if err != nil {
		return 0, 0, err
	}
	// The rotation is committed; failing to record its time must not make
	// the caller think otherwise (it might discard the new KEK).
	v.rotatedAt, _ = recordKEK(v.kr, v.clock().Now())
	return oldSlot, newSlot, nil
}

// AddKeyslot unlocks with kek and wraps the DEK for new in a new keyslot.
func (v *Volume) AddKeyslot(ctx context.Context, kek keyring.Identity, new keyring.Recipient, opts *keyring.KeyslotOptions) (int, error) {
	if v.kr == nil {
		return 0, errPlain
	}
	v.keyMu.Lock()
	defer v.keyMu.Unlock()
	dek, err := v.kr.Unlock(ctx, kek)
	if err != nil {
		return 0, err
	}
	defer dek.Destroy()
	return v.kr.AddKeyslot(ctx, dek, new, opts)
}

// RemoveKeyslot destroys a keyslot (not the last one).
func (v *Volume) RemoveKeyslot(ctx context.Context, slot int) error {
	if v.kr == nil {
		return errPlain
	}
	v.keyMu.Lock()
	defer v.keyMu.Unlock()
	return v.kr.RemoveKeyslot(ctx, slot)
}

// Close closes the volume (wiping the DEK), the keyring and the backing,
// which releases its lock.
func (v *Volume) Close() error {
	var err error
	v.keyMu.Lock()
	v.stopReencryption()
	v.keyMu.Unlock()
	if v.vol != nil {
		err = v.vol.Close()
	}
	if v.kr != nil {
		v.kr.Close()
	}
	if e := v.file.Close(); e != nil && err == nil {
		err = e
	}
	return err
}

var errPlain = errors.New("volume is served plain (unencrypted): it has no keys")
