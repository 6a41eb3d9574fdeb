package opalvolume

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/encblk/encblk/pkg/keyring"
	"github.com/encblk/encblk/pkg/sed"
	"github.com/encblk/encblk/pkg/sed/sedsim"
)

var fastKDF = keyring.KDFParams{Type: "pbkdf2", Hash: "sha256", Iterations: 1000}

func passphrase(t *testing.T, s string) *keyring.Secret {
	t.Helper()
	p, err := keyring.SecretFromBytes([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Destroy)
	return p
}

// TestVolumeLifecycle formats a hw-opal-crypt volume over a simulated
// drive with a detached header, then unlocks, locks and re-keys it.
func TestVolumeLifecycle(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(img, make([]byte, 4<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	sim, err := sedsim.New(img, sedsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	dev, err := sed.Open(ctx, sim)
	if err != nil {
		t.Fatal(err)
	}
	dev.Poll = sed.PollPolicy{Interval: time.Microsecond, Timeout: 20 * time.Millisecond}
	hdrPath := filepath.Join(dir, "header")
	hdr, err := os.Create(hdrPath)
	if err != nil {
		t.Fatal(err)
	}
	defer hdr.Close()
	admin := make([]byte, 32)
	rand.Read(admin)

	k, dek, err := Format(ctx, dev, hdr, uint64(sim.Size()), passphrase(t, "kek one"), admin,
		Options{Segment: 1, LUKS: keyring.FormatOptions{KDF: fastKDF, Detached: true}})
	if err != nil {
		t.Fatal(err)
	}
	if dek.Len() != 32+64 {
		t.Fatalf("volume key %d bytes", dek.Len())
	}
	rangeKey := append([]byte{}, dek.Bytes()[:32]...)
	dek.Destroy()
	s, err := Segment(k)
	if err != nil || s.Type != "hw-opal-crypt" || s.OpalSegmentNumber != 1 || s.OpalSegmentSize != 4<<20 || s.Offset != 0 {
		t.Fatalf("segment %+v %v", s, err)
	}

	// The range is locked; the drive's range matches the segment.
	buf := make([]byte, 4096)
	if _, err := sim.ReadAt(buf, 0); !errors.Is(err, sedsim.ErrLocked) {
		t.Fatalf("read before unlock: %v", err)
	}
	rs, err := dev.Range(ctx, sed.Credential{Authority: sed.AuthorityAdmin1, PIN: admin}, 1)
	if err != nil || rs.Start != 0 || rs.Length != 8192 || !rs.ReadLocked {
		t.Fatalf("range %+v %v", rs, err)
	}
	// The range user's PIN is the volume-key prefix.
	if err := dev.UnlockRange(ctx, 1, rangeKey); err != nil {
		t.Fatal(err)
	}
	if err := dev.LockRange(ctx, 1, rangeKey); err != nil {
		t.Fatal(err)
	}

	// A wrong KEK opens nothing and leaves the range locked.
	if _, err := Unlock(ctx, dev, k, passphrase(t, "wrong")); !errors.Is(err, keyring.ErrNoMatchingKeyslot) {
		t.Fatalf("wrong KEK: %v", err)
	}
	dek, err = Unlock(ctx, dev, k, passphrase(t, "kek one"))
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte{0x42}, 4096)
	if _, err := sim.WriteAt(data, 0); err != nil {
		t.Fatalf("write after unlock: %v", err)
	}
	if err := Lock(ctx, dev, k, dek); err != nil {
		t.Fatal(err)
	}
	dek.Destroy()
	if _, err := sim.ReadAt(buf, 0); !errors.Is(err, sedsim.ErrLocked) {
		t.Fatalf("read after lock: %v", err)
	}

	// Rotating the KEK is a keyslot change; the new KEK unlocks the range.
	if _, _, err := k.RotateKEK(ctx, passphrase(t, "kek one"), passphrase(t, "kek two"), &keyring.KeyslotOptions{KDF: fastKDF}); err != nil {
		t.Fatal(err)
	}
	if _, err := Unlock(ctx, dev, k, passphrase(t, "kek one")); !errors.Is(err, keyring.ErrNoMatchingKeyslot) {
		t.Fatalf("old KEK after rotation: %v", err)
	}
	dek, err = Unlock(ctx, dev, k, passphrase(t, "kek two"))
	if err != nil {
		t.Fatal(err)
	}
	dek.Destroy()
	if _, err := sim.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, data) {
		t.Fatalf("data after rotation: %v", err)
	}

	// Formatting again with a wrong admin key fails and leaves no header
	// that names a range.
	hdr2, err := os.Create(filepath.Join(dir, "header2"))
	if err != nil {
		t.Fatal(err)
	}
	defer hdr2.Close()
	_, _, err = Format(ctx, dev, hdr2, uint64(sim.Size()), passphrase(t, "x"), []byte("not the admin key"),
		Options{Segment: 2, LUKS: keyring.FormatOptions{KDF: fastKDF, Detached: true}})
	if !errors.Is(err, sed.StatusNotAuthorized) {
		t.Fatalf("format with wrong admin key: %v", err)
	}
	k2, err := keyring.OpenFile(hdr2, nil)
	if err == nil {
		if len(k2.Keyslots()) != 0 {
			t.Fatal("failed format left a usable keyslot")
		}
		k2.Close()
	}
}

func TestNotOpalVolume(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "plain"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(32 << 20); err != nil {
		t.Fatal(err)
	}
	k, dek, err := keyring.Format(context.Background(), f, passphrase(t, "p"), &keyring.FormatOptions{KDF: fastKDF})
	if err != nil {
		t.Fatal(err)
	}
	dek.Destroy()
	defer k.Close()
	if _, err := Segment(k); !errors.Is(err, ErrNotOpalVolume) {
		t.Fatal(err)
	}
}

// TestPartitionRange formats a volume on a "partition" (1 MiB at 1 MiB)
// of a simulated drive: the range starts at the partition's offset, as
// cryptsetup lays it out, and only the partition's data is locked.
func TestPartitionRange(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(img, make([]byte, 4<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	sim, err := sedsim.New(img, sedsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	dev, err := sed.Open(ctx, sim)
	if err != nil {
		t.Fatal(err)
	}
	admin := []byte("admin key for the partition test")
	format := func(name string, offset uint64) (*keyring.Keyring, error) {
		hdr, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { hdr.Close() })
		k, dek, err := Format(ctx, dev, hdr, 1<<20, passphrase(t, "kek"), admin,
			Options{DeviceOffset: offset, LUKS: keyring.FormatOptions{KDF: fastKDF, Detached: true}})
		if err == nil {
			dek.Destroy()
			t.Cleanup(func() { k.Close() })
		}
		return k, err
	}
	if _, err := format("misaligned", 1<<20+100); err == nil || !strings.Contains(err.Error(), "locking granularity") {
		t.Fatalf("misaligned partition: %v", err)
	}
	if _, err := format("header", 1<<20); err != nil {
		t.Fatal(err)
	}
	rs, err := dev.Range(ctx, sed.Credential{Authority: sed.AuthorityAdmin1, PIN: admin}, 1)
	if err != nil || rs.Start != 2048 || rs.Length != 2048 || !rs.ReadLocked {
		t.Fatalf("range %+v %v", rs, err)
	}
	buf := make([]byte, 512)
	for _, c := range []struct {
		off    int64
		locked bool
	}{{0, false}, {1<<20 - 512, false}, {1 << 20, true}, {2<<20 - 512, true}, {2 << 20, false}} {
		if _, err := sim.ReadAt(buf, c.off); errors.Is(err, sedsim.ErrLocked) != c.locked {
			t.Errorf("read at %d: %v, want locked %v", c.off, err, c.locked)
		}
	}
}
