package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/encblk/encblk/internal/audit"
	"github.com/encblk/encblk/pkg/keyring"
)

// Online reencryption: when the header records a reencryption (started by
// encblk reencrypt --init-only, or interrupted, by encblk or cryptsetup),
// the server unlocks with the old and the new key, recovers a hot zone a
// crash left, and rewrites the rest zone by zone while it serves: the
// volume routes each request by the boundary and holds back those that
// overlap the zone being rewritten.

// onlineZone is the hot zone of an online reencryption: small, because
// requests that overlap it wait while it is rewritten.
const onlineZone = 4 << 20

// DefaultReencryptRate caps an online reencryption's rewrite rate
// (bytes/s) unless the server (serve --reencrypt-rate) or the reencryption
// (encblk reencrypt --throttle) says otherwise, so that clients keep most
// of the disk and CPU: on the 2-vCPU machine of bench/README.md, 4 KiB
// random reads kept 32 % of their idle IOPS without a cap and about 70 %
// with this one (see bench/README.md).
const DefaultReencryptRate = 48 << 20

// reencryptRate is the cap for a reencryption: override if it is set (0
// there is no cap), else the volume's (see VolumeSpec.ReencryptRate).
// 0 means no cap.
func (v *Volume) reencryptRate(override *int64) uint64 {
	r := v.spec.ReencryptRate
	if override != nil {
		r = *override
		if r == 0 {
			r = -1
		}
	}
	switch {
	case r == 0:
		return DefaultReencryptRate
	case r < 0:
		return 0
	}
	return uint64(r)
}

// reencryptRun is a reencryption running in the background.
type reencryptRun struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error // set before done is closed
	start  time.Time
	done0  uint64 // progress when it started
	cap    uint64 // bytes/s (0: none)
}

// rate returns the bytes per second since the run started, given the
// progress now, and the time left at that rate (0 if unknown).
func (run *reencryptRun) rate(done, total uint64) (float64, time.Duration) {
	el := time.Since(run.start).Seconds()
	if el <= 0 || done <= run.done0 {
		return 0, 0
	}
	r := float64(done-run.done0) / el
	return r, time.Duration(float64(total-done) / r * float64(time.Second))
}

// reencryptionSegment is the segment to serve a volume in reencryption
// with (the old one: routing does the rest), when the server can run it.
func reencryptionSegment(kr *keyring.Keyring) (keyring.Segment, bool) {
	r, err := kr.Reencryption()
	if err != nil || r == nil || !r.Online() {
		return keyring.Segment{}, false
	}
	return *r.Old, true
}

// unlockReencrypting unlocks a volume whose header records a
// reencryption: the KEK must open the old and the new key (re-wrapped
// keyslots are), the hot zone of a crash is recovered, the volume routes
// from the boundary on, and the rest runs in the background at rate
// bytes/s (0: no cap). It reports false when the header records none.
// v.keyMu is held.
func (v *Volume) unlockReencrypting(ctx context.Context, keks []keyring.Identity, rate uint64) (bool, error) {
	if v.reenc != nil {
		select {
		case <-v.reenc.done: // over (finished or failed): a new one may start
			v.reenc = nil
		default:
		}
	}
	if v.reenc == nil {
		// encblk reencrypt records a reencryption in the header of a
		// served volume, then unlocks it again to start it here.
		if err := v.kr.Reload(); err != nil {
			return true, err
		}
	}
	r, err := v.kr.Reencryption()
	if r == nil && err == nil {
		return false, nil
	}
	if err != nil {
		return true, err
	}
	if !r.Online() {
		return true, fmt.Errorf("%w: this reencryption changes the sector size or the layout; finish it offline (encblk reencrypt --resume)", keyring.ErrUnsupported)
	}
	if v.spec.ReadOnly {
		return true, fmt.Errorf("%w: a volume in reencryption cannot be served read-only", keyring.ErrUnsupported)
	}
	if v.reenc != nil {
		return true, fmt.Errorf("volume: an online reencryption is already running")
	}
	if r.Crashed() {
		v.log().Info("reencryption was interrupted inside a zone: recovering it from the header's checksums", "volume", v.id, "zone_offset", r.Hot.Offset, "zone_size", r.Hot.Size)
	}
	end := uint64(v.vol.Config().DataOffset + v.vol.Size())
	rc, err := v.kr.OpenReencryption(ctx, keks, v.file, end, &keyring.ReencryptOptions{HotZone: onlineZone})
	if err != nil {
		return true, err
	}
	oldKey, newKey, err := rc.Keys()
	if err != nil {
		rc.Close()
		return true, err
	}
	done, _ := rc.Progress()
	if err := v.vol.StartReencryption(newKey, int64(done)); err != nil {
		oldKey.Destroy()
		rc.Close()
		return true, err
	}
	if err := v.vol.Unlock(oldKey); err != nil {
		rc.Close()
		return true, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	run := &reencryptRun{cancel: cancel, done: make(chan struct{}), start: time.Now(), done0: done, cap: rate}
	v.reenc = run
	rec := audit.Record{Event: audit.ReencryptStart, Volume: v.kr.UUID(), Backing: v.spec.Backing, Keyslot: -1, PeerUID: -1, PeerPID: -1}
	if p, ok := PeerFrom(ctx); ok {
		rec.PeerUID, rec.PeerPID = int64(p.UID), int64(p.PID)
	}
	audit.Log(ctx, v.log(), rec)
	go func() {
		defer close(run.done)
		defer rc.Close()
		run.err = v.reencryptOnline(runCtx, rc, rate)
		rec.Event, rec.Err = audit.ReencryptFinish, run.err
		if run.err != nil {
			// Stopped: by the server's shutdown or a lock (canceled), or
			// by a failure; the header records how far it got.
			rec.Event = audit.ReencryptStop
			if errors.Is(run.err, context.Canceled) {
				rec.Err = nil // a clean stop, resumable
			} else {
				v.log().Error("online reencryption stopped", "volume", v.id, "err", run.err)
			}
		}
		audit.Log(context.Background(), v.log(), rec)
	}()
	return true, nil
}

// reencryptOnline rewrites the remaining zones while the volume serves.
// A failure inside a zone leaves the zone's blocks mixed on disk, which
// only the resilience area can sort out: the volume is then locked (its
// keys wiped) until it is reopened, which recovers the zone.
func (v *Volume) reencryptOnline(ctx context.Context, rc *keyring.Reencryptor, rate uint64) error {
	start := time.Now()
	done0, _ := rc.Progress()
	for !rc.Done() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := v.vol.LockZone(ctx, int64(rc.NextZone())); err != nil {
			return err
		}
		if err := rc.Step(); err != nil {
			v.vol.ZoneAbort()
			lctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			v.vol.Lock(lctx)
			cancel()
			return fmt.Errorf("zone failed, volume locked until it is reopened: %w", err)
		}
		v.vol.ZoneDone()
		if rate == 0 {
			continue
		}
		done, _ := rc.Progress()
		due := start.Add(time.Duration(float64(done-done0) / float64(rate) * float64(time.Second)))
		select {
		case <-time.After(time.Until(due)):
		case <-ctx.Done():
		}
	}
	if err := rc.Finish(); err != nil {
		return err
	}
	if err := v.vol.FinishReencryption(); err != nil {
		return err
	}
	// The new DEK is in place: the reencryption period counts from now.
	if err := v.recordReencrypt(); err != nil {
		v.log().Warn("reencryption finished, but recording its time in the rotation token failed", "volume", v.id, "err", err)
	}
	done, _ := rc.Progress()
	v.log().Info("online reencryption finished", "volume", v.id, "bytes", done-done0, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// stopReencryption stops a background reencryption after its zone in
// progress (the header then records how far it got) and waits for it.
func (v *Volume) stopReencryption() {
	run := v.reenc
	if run == nil {
		return
	}
	run.cancel()
	<-run.done
	v.reenc = nil
}

// WaitReencryption waits until the background reencryption, if any, ends
// and returns its error (nil when it finished or none ran).
func (v *Volume) WaitReencryption(ctx context.Context) error {
	v.keyMu.Lock()
	run := v.reenc
	v.keyMu.Unlock()
	if run == nil {
		return nil
	}
	select {
	case <-run.done:
		return run.err
	case <-ctx.Done():
		return ctx.Err()
	}
}
