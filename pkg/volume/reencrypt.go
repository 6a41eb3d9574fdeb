package volume

import (
	"context"
	"fmt"
	"sync"
	"syscall"

	"github.com/encblk/encblk/internal/secmem"
	"github.com/encblk/encblk/pkg/xts"
)

// Online reencryption: while the data is rewritten from the old DEK to a
// new one, zone by zone from the start, each request is routed by
// position. Data below the boundary is under the new key, data from it on
// under the old one; a request that straddles the boundary is decrypted
// (or encrypted) in two pieces. The zone being rewritten (the hot zone,
// [boundary, hotEnd)) is excluded: requests that overlap it wait until it
// is done, and the rewriter waits until no request in flight overlaps it
// before it reads it. The rewriter (keyring.Reencryptor) records every
// step in the LUKS2 metadata; the volume only routes.

// router is the routing state of an online reencryption.
type router struct {
	mu       sync.Mutex
	released *sync.Cond // broadcast when the hot zone or a request ends
	newC     *xts.Cipher
	boundary int64 // plaintext offset: below it, the new key
	hotEnd   int64 // the hot zone is [boundary, hotEnd); empty when equal
	inflight map[*span]struct{}
}

// span is the range of one request in flight.
type span struct{ lo, hi int64 }

func (s *span) overlaps(lo, hi int64) bool { return lo < hi && s.lo < hi && lo < s.hi }

// ErrReencrypting means an online reencryption is already routing.
var ErrReencrypting = fmt.Errorf("volume: an online reencryption is in progress")

// StartReencryption begins routing: data below done (bytes from the start
// of the volume, a multiple of the sector size) is under newDEK, the rest
// under the current key. The new key must use the volume's sector size
// and iv_tweak. newDEK is moved into the volume (the caller must not use
// it afterwards).
func (v *Volume) StartReencryption(newDEK *secmem.Buffer, done int64) error {
	defer newDEK.Destroy()
	if done < 0 || done > v.cfg.Size || done%v.ss != 0 {
		return fmt.Errorf("%w: reencryption progress %d", ErrConfig, done)
	}
	c, err := xts.New(newDEK.Bytes())
	if err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.rt != nil && v.rt.newC != nil {
		c.Close()
		return ErrReencrypting
	}
	// A keyless router (the volume was locked meanwhile) is replaced.
	r := &router{newC: c, boundary: done, hotEnd: done, inflight: map[*span]struct{}{}}
	r.released = sync.NewCond(&r.mu)
	v.rt = r
	return nil
}

// LockZone makes [boundary, boundary+n) the hot zone: requests that
// overlap it wait from now on, and LockZone returns once every request in
// flight that overlaps it has finished. The zone starts at the boundary.
func (v *Volume) LockZone(ctx context.Context, n int64) (lo int64, err error) {
	r := v.router()
	if r == nil {
		return 0, fmt.Errorf("volume: no reencryption in progress")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	lo = r.boundary
	if n <= 0 || n%v.ss != 0 || lo+n > v.cfg.Size {
		return lo, fmt.Errorf("%w: hot zone %d+%d", ErrConfig, lo, n)
	}
	r.hotEnd = lo + n
	stop := context.AfterFunc(ctx, func() {
		r.mu.Lock()
		r.released.Broadcast()
		r.mu.Unlock()
	})
	defer stop()
	for r.overlapsInflight(lo, lo+n) {
		if err := ctx.Err(); err != nil {
			r.hotEnd = lo
			r.released.Broadcast()
			return lo, err
		}
		r.released.Wait()
	}
	return lo, nil
}

// ZoneDone moves the boundary past the hot zone (now under the new key)
// and lets the requests that waited for it go.
func (v *Volume) ZoneDone() {
	r := v.router()
	if r == nil {
		return
	}
	r.mu.Lock()
	r.boundary = r.hotEnd
	r.released.Broadcast()
	r.mu.Unlock()
}

// ZoneAbort releases the hot zone without moving the boundary: the zone
// was not rewritten.
func (v *Volume) ZoneAbort() {
	r := v.router()
	if r == nil {
		return
	}
	r.mu.Lock()
	r.hotEnd = r.boundary
	r.released.Broadcast()
	r.mu.Unlock()
}

// FinishReencryption ends routing once all data is under the new key: the
// new key becomes the volume's key and the old one is wiped.
func (v *Volume) FinishReencryption() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	r := v.rt
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.boundary != v.cfg.Size {
		return fmt.Errorf("volume: reencryption not finished (%d of %d bytes)", r.boundary, v.cfg.Size)
	}
	for len(r.inflight) > 0 {
		r.released.Wait()
	}
	if v.c != nil {
		v.c.Close()
	}
	v.c = r.newC
	v.rt = nil
	return nil
}

// ReencryptionProgress reports the boundary, or -1 without a reencryption.
func (v *Volume) ReencryptionProgress() int64 {
	r := v.router()
	if r == nil {
		return -1
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.boundary
}

func (v *Volume) router() *router {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.rt
}

func (r *router) overlapsInflight(lo, hi int64) bool {
	for s := range r.inflight {
		if s.overlaps(lo, hi) {
			return true
		}
	}
	return false
}

// enter registers a request on [off, off+n), waiting while it overlaps
// the hot zone. It returns the span to pass to leave and the boundary
// the request is routed by (it cannot move past the request meanwhile:
// the next zone starts at the boundary and waits for it).
func (r *router) enter(ctx context.Context, off, n int64) (*span, int64, error) {
	s := &span{lo: off, hi: off + n}
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.overlaps(r.boundary, r.hotEnd) {
		stop := context.AfterFunc(ctx, func() {
			r.mu.Lock()
			r.released.Broadcast()
			r.mu.Unlock()
		})
		defer stop()
		for s.overlaps(r.boundary, r.hotEnd) {
			if err := ctx.Err(); err != nil {
				return nil, 0, fmt.Errorf("waiting for the reencryption hot zone: %w: %w", err, syscall.ESHUTDOWN)
			}
			r.released.Wait()
		}
	}
	r.inflight[s] = struct{}{}
	return s, r.boundary, nil
}

func (r *router) leave(s *span) {
	r.mu.Lock()
	delete(r.inflight, s)
	r.released.Broadcast()
	r.mu.Unlock()
}

// routing is how one request is routed: nothing (no reencryption: the
// zero value), or its span and the boundary it was admitted with.
type routing struct {
	r        *router
	s        *span
	boundary int64
}

// route registers a request with the router, if any. The caller calls
// done when the request is over.
func (v *Volume) route(ctx context.Context, off, n int64) (routing, error) {
	r := v.router()
	if r == nil {
		return routing{}, nil
	}
	s, boundary, err := r.enter(ctx, off, n)
	if err != nil {
		return routing{}, err
	}
	return routing{r: r, s: s, boundary: boundary}, nil
}

func (rt routing) done() {
	if rt.r != nil {
		rt.r.leave(rt.s)
	}
}

// cryptAt runs a request's crypto with the right key on each side of the
// boundary; old is the key acquire returned.
func (v *Volume) cryptAt(rt routing, old *xts.Cipher, dst, src []byte, off int64, encrypt bool) error {
	if rt.r == nil {
		return v.crypt(old, dst, src, off, encrypt)
	}
	n := int64(len(src))
	split := min(max(rt.boundary-off, 0), n) // bytes under the new key
	if split > 0 {
		if err := v.crypt(rt.r.newC, dst[:split], src[:split], off, encrypt); err != nil {
			return err
		}
	}
	if split < n {
		return v.crypt(old, dst[split:], src[split:], off+split, encrypt)
	}
	return nil
}

// wipeRouterLocked drops the new key (the volume is being locked or
// closed). The router stays, keyless, so that Unlock with the old key
// alone is refused: the data below the boundary is under the new one.
// v.mu is held.
func (v *Volume) wipeRouterLocked() {
	if v.rt != nil && v.rt.newC != nil {
		v.rt.newC.Close()
		v.rt.newC = nil
	}
}

// checkUnlockLocked refuses Unlock after a lock wiped an online
// reencryption's new key. v.mu is held.
func (v *Volume) checkUnlockLocked() error {
	if v.rt != nil && v.rt.newC == nil {
		return fmt.Errorf("unlock: the volume was locked during an online reencryption; reopen it (the header records how far it got)")
	}
	return nil
}
