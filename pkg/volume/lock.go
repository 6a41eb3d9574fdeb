package volume

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/encblk/encblk/internal/secmem"
	"github.com/encblk/encblk/pkg/xts"
)

// State is a volume's lock state.
type State int

const (
	// Locked: no key; requests wait or fail.
	Locked State = iota
	// Unlocked: requests are served.
	Unlocked
	// Locking: Lock is waiting for in-flight requests; new ones wait.
	Locking
	// Closed: the volume is closed.
	Closed
)

// String names the state as status output spells it.
func (s State) String() string {
	switch s {
	case Unlocked:
		return "unlocked"
	case Locking:
		return "locking"
	case Closed:
		return "closed"
	}
	return "locked"
}

// State reports the lock state.
func (v *Volume) State() State {
	v.mu.Lock()
	defer v.mu.Unlock()
	switch {
	case v.closed:
		return Closed
	case v.c != nil && v.wake != nil:
		return Locking
	case v.c != nil:
		return Unlocked
	}
	return Locked
}

// Unlock keys the cipher with dek (the 32- or 64-byte LUKS2 volume key) and
// lets waiting requests through. It takes ownership of dek and destroys it
// once the cipher is keyed, on success and on failure. The caller has
// checked dek against the header's digest; Unlock of an unlocked volume
// only destroys dek.
func (v *Volume) Unlock(dek *secmem.Buffer) error {
	defer dek.Destroy()
	if dek == nil {
		return fmt.Errorf("unlock: no key")
	}
	v.admin.Lock()
	defer v.admin.Unlock()
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return ErrClosed
	}
	if v.c != nil {
		return nil
	}
	if err := v.checkUnlockLocked(); err != nil {
		return err
	}
	c, err := xts.New(dek.Bytes())
	if err != nil {
		return fmt.Errorf("unlock: %w", err)
	}
	v.c = c
	close(v.wake)
	v.wake = nil
	return nil
}

// Lock waits for in-flight requests, flushes the backing and wipes the
// key; requests arriving meanwhile wait (or fail, in LockFail). If ctx ends
// before the in-flight requests do, the volume stays unlocked and Lock
// returns ctx's error. A flush error is returned, but the volume is
// locked all the same. Lock of a locked volume does nothing.
func (v *Volume) Lock(ctx context.Context) error {
	v.admin.Lock()
	defer v.admin.Unlock()
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return ErrClosed
	}
	if v.c == nil {
		v.mu.Unlock()
		return nil
	}
	v.wake = make(chan struct{})
	idle := v.waitIdleLocked()
	v.mu.Unlock()

	select {
	case <-idle:
	case <-ctx.Done():
		v.mu.Lock()
		close(v.wake)
		v.wake = nil
		v.mu.Unlock()
		return fmt.Errorf("lock: waiting for in-flight requests: %w", ctx.Err())
	}
	err := v.flushBacking()
	v.mu.Lock()
	v.wipeLocked()
	v.mu.Unlock()
	if err != nil {
		return fmt.Errorf("volume locked, but flushing it failed: %w", err)
	}
	return nil
}

// wipeLocked forgets the key. v.mu is held.
func (v *Volume) wipeLocked() {
	if v.c != nil {
		v.c.Close()
		v.c = nil
	}
	v.wipeRouterLocked()
}

// acquire admits one request: it returns the cipher once the volume is
// unlocked, counting the request in flight until release. While locked it
// waits as Config's lock policy says.
func (v *Volume) acquire(ctx context.Context) (*xts.Cipher, error) {
	var timeout <-chan time.Time
	var waitStart time.Time
	defer func() {
		if !waitStart.IsZero() {
			v.stats.lockWait.Add(int64(time.Since(waitStart)))
		}
	}()
	v.mu.Lock()
	for {
		switch {
		case v.closed:
			v.mu.Unlock()
			return nil, errClosed()
		case v.wake == nil:
			v.inflight++
			c := v.c
			v.mu.Unlock()
			return c, nil
		case v.cfg.LockMode == LockFail:
			v.mu.Unlock()
			return nil, fmt.Errorf("%w: %w", ErrLocked, syscall.EIO)
		}
		wake := v.wake
		v.mu.Unlock()
		if waitStart.IsZero() {
			waitStart = time.Now()
		}
		if timeout == nil && v.cfg.LockTimeout > 0 {
			t := time.NewTimer(v.cfg.LockTimeout)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-wake:
		case <-timeout:
			return nil, fmt.Errorf("%w (waited %v): %w", ErrLocked, v.cfg.LockTimeout, syscall.EIO)
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for unlock: %w: %w", ctx.Err(), syscall.ESHUTDOWN)
		}
		v.mu.Lock()
	}
}

// release ends a request admitted by acquire.
func (v *Volume) release() {
	v.mu.Lock()
	v.inflight--
	if v.inflight == 0 && v.idle != nil {
		close(v.idle)
		v.idle = nil
	}
	v.mu.Unlock()
}
