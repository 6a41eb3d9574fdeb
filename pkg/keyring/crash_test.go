package keyring

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var errCrash = errors.New("simulated crash")

// crashDevice passes reads through and lets budget writes and syncs
// happen; the next write is torn (only the first tornFraction of it
// reaches the file) and everything after it fails, as if the machine had
// lost power at that point. With tornFraction reordered, the crash
// leaves only the last write since the last sync on the disk.
type crashDevice struct {
	f            *os.File
	budget       int
	tornFraction float64
	crashed      bool
	// shared, when set, holds the budget and the crash of a device group
	// (a detached header and its data crash together).
	shared   *crashDevice
	unsynced []undo // with reordered
}

// reordered, as a crashDevice's tornFraction: the interrupted write is
// complete, and the writes before it since the last sync are lost. A disk
// cache (or the page cache) writes back in any order between two syncs,
// so only a sync orders writes.
const reordered = -1.0

// crashTorns are the crash harnesses' tornFractions: the interrupted
// write lost, torn in half, complete, and reordered.
var crashTorns = []float64{0, 0.5, 1, reordered}

// undo is what a write replaced.
type undo struct {
	f   *os.File
	off int64
	old []byte
}

func (d *crashDevice) ReadAt(p []byte, off int64) (int, error) { return d.f.ReadAt(p, off) }

func (d *crashDevice) state() *crashDevice {
	if d.shared != nil {
		return d.shared
	}
	return d
}

func (d *crashDevice) WriteAt(p []byte, off int64) (int, error) {
	s := d.state()
	if s.crashed {
		return 0, errCrash
	}
	if s.budget == 0 {
		s.crash(0) // this write is the last
		n := int(float64(len(p)) * max(s.tornFraction, 0))
		if s.tornFraction == reordered {
			n = len(p)
		}
		d.f.WriteAt(p[:n], off)
		return n, errCrash
	}
	s.budget--
	if s.tornFraction == reordered {
		old := make([]byte, len(p))
		n, _ := d.f.ReadAt(old, off)
		s.unsynced = append(s.unsynced, undo{d.f, off, old[:n]})
	}
	return d.f.WriteAt(p, off)
}

// crash undoes, when reordered, the unsynced writes but the last keep.
func (s *crashDevice) crash(keep int) {
	s.crashed = true
	if s.tornFraction == reordered {
		for i := len(s.unsynced) - 1 - keep; i >= 0; i-- {
			u := s.unsynced[i]
			u.f.WriteAt(u.old, u.off)
		}
	}
}

func (d *crashDevice) Sync() error {
	s := d.state()
	if s.crashed {
		return errCrash
	}
	if s.budget == 0 {
		s.crash(1)
		return errCrash
	}
	s.budget--
	kept := s.unsynced[:0]
	for _, u := range s.unsynced {
		if u.f != d.f {
			kept = append(kept, u) // another device of the group
		}
	}
	s.unsynced = kept
	return nil
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
}

// TestRotateKEKCrashSafety stops RotateKEK's write sequence at every step
// (with the interrupted write lost, torn in half, or complete) and checks
// that exactly one of the old and the new KEK opens the volume, with the
// same DEK: never both (a rotation away from a leaked KEK must not leave
// it working), never neither. Once the new one works, the old one must
// never work again at a later step.
func TestRotateKEKCrashSafety(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	golden := filepath.Join(dir, "golden.img")
	if err := os.WriteFile(golden, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// A small layout keeps the 40-odd copies cheap: data at 1 MiB leaves
	// room for the two keyslots a rotation needs.
	if err := os.Truncate(golden, 2<<20); err != nil {
		t.Fatal(err)
	}
	_, dek := formatPath(t, golden, passphrase(t, "old"), &FormatOptions{KDF: fastKDF, DataOffset: 1 << 20})
	ctx := context.Background()

	for _, torn := range crashTorns {
		completed, sawNew := false, false
		for step := 0; step < 64 && !completed; step++ {
			path := filepath.Join(dir, "crash.img")
			copyFile(t, golden, path)
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			dev := &crashDevice{f: f, budget: step, tornFraction: torn}
			k, err := openDevice(dev, false)
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = k.RotateKEK(ctx, passphrase(t, "old"), passphrase(t, "new"), &KeyslotOptions{KDF: fastKDF})
			f.Close()
			if err == nil {
				completed = true
			} else if !errors.Is(err, errCrash) {
				t.Fatalf("torn %.1f, step %d: unexpected error %v", torn, step, err)
			}

			after, err := Open(path, &Options{ReadOnly: true})
			if err != nil {
				t.Fatalf("torn %.1f, crash at step %d: header does not open: %v", torn, step, err)
			}
			var opened []string
			for _, kek := range []string{"old", "new"} {
				got, err := after.Unlock(ctx, passphrase(t, kek))
				if err == nil {
					if !bytes.Equal(got.Bytes(), dek) {
						t.Fatalf("torn %.1f, step %d: %s KEK gives a different DEK", torn, step, kek)
					}
					got.Destroy()
					opened = append(opened, kek)
				} else if !errors.Is(err, ErrNoMatchingKeyslot) {
					t.Fatalf("torn %.1f, step %d: unlock with %s: %v", torn, step, kek, err)
				}
			}
			after.Close()
			if len(opened) != 1 {
				t.Fatalf("torn %.1f, crash at step %d: these KEKs open the volume: %v, want exactly one", torn, step, opened)
			}
			if opened[0] == "new" {
				sawNew = true
			} else if sawNew {
				t.Fatalf("torn %.1f, crash at step %d: the old KEK opens again after an earlier step opened only the new one", torn, step)
			}
			if completed && (len(opened) != 1 || opened[0] != "new") {
				t.Fatalf("after a complete rotation these KEKs open: %v, want only new", opened)
			}
			t.Logf("torn %.1f, crash at step %d: %v open", torn, step, opened)
		}
		if !completed {
			t.Fatalf("torn %.1f: RotateKEK never completed", torn)
		}
	}
}

// A second writer (another Keyring, or cryptsetup) changed the header:
// additions re-read it and succeed without touching the other writer's
// keyslot; a removal is refused with ErrStale, since the slot number may no
// longer mean what the caller saw; after Reload it succeeds.
func TestStaleHeader(t *testing.T) {
	t.Parallel()
	path := newBacking(t, 17<<20)
	first, dek := formatPath(t, path, passphrase(t, "a"), &FormatOptions{KDF: fastKDF})
	second := openPath(t, path)
	buf, err := secmemFrom(dek)
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Destroy()
	ctx := context.Background()
	if _, err := second.AddKeyslot(ctx, buf, passphrase(t, "b"), &KeyslotOptions{KDF: fastKDF}); err != nil {
		t.Fatal(err)
	}
	slotC, err := first.AddKeyslot(ctx, buf, passphrase(t, "c"), &KeyslotOptions{KDF: fastKDF})
	if err != nil {
		t.Fatalf("AddKeyslot over a changed header: %v", err)
	}
	k := openPath(t, path)
	for _, p := range []string{"a", "b", "c"} {
		unlockBytes(t, k, passphrase(t, p))
	}
	if err := second.RemoveKeyslot(ctx, slotC); !errors.Is(err, ErrStale) {
		t.Fatalf("stale RemoveKeyslot: %v, want ErrStale", err)
	}
	if err := second.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := second.RemoveKeyslot(ctx, slotC); err != nil {
		t.Fatal(err)
	}
	k = openPath(t, path)
	if _, err := k.Unlock(ctx, passphrase(t, "c")); !errors.Is(err, ErrNoMatchingKeyslot) {
		t.Fatalf("removed keyslot still opens: %v", err)
	}
}

// The daemon reads and unlocks while keyslots are added and removed
// online; run with -race.
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	path := newBacking(t, 17<<20)
	k, dek := formatPath(t, path, passphrase(t, "base"), &FormatOptions{KDF: fastKDF})
	buf, err := secmemFrom(dek)
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Destroy()
	done := make(chan struct{})
	errs := make(chan error, 1)
	go func() {
		defer close(done)
		for i := 0; i < 4; i++ {
			slot, err := k.AddKeyslot(context.Background(), buf, passphrase(t, "extra"), &KeyslotOptions{KDF: fastKDF})
			if err == nil {
				err = k.RemoveKeyslot(context.Background(), slot)
			}
			if err != nil {
				errs <- err
				return
			}
		}
	}()
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		k.Keyslots()
		k.Tokens()
		k.DataSegment()
		got, err := k.Unlock(context.Background(), passphrase(t, "base"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), dek) {
			t.Fatal("DEK changed")
		}
		got.Destroy()
	}
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}

// TestCrashHarnessesUseCrashTorns: every crash harness loops over
// crashTorns, so each runs the reordered mode too (a missing sync between
// two writes that must be ordered is seen only there; two harnesses
// written with their own list missed one).
func TestCrashHarnessesUseCrashTorns(t *testing.T) {
	files, err := filepath.Glob("*_test.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files (%v)", err)
	}
	own := regexp.MustCompile(`^\s*for _, torn := range \[\]float64\{`)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(data), "\n") {
			if own.MatchString(line) {
				t.Errorf("%s:%d: %q: range over crashTorns", f, i+1, strings.TrimSpace(line))
			}
		}
	}
}
