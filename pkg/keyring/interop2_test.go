package keyring

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/encblk/encblk/internal/testutil"
)

// Interop test 3: after encblk rotates the KEK, cryptsetup rejects the old
// one and opens with the new one, and sees the same DEK.
func TestInteropRotateKEK(t *testing.T) {
	t.Parallel()
	path := newBacking(t, 20<<20)
	oldFile := writeFile(t, []byte("old KEK"))
	newFile := writeFile(t, []byte("new KEK"))
	k, dek := formatPath(t, path, passphrase(t, "old KEK"), &FormatOptions{KDF: fastArgon})
	oldSlot, newSlot, err := k.RotateKEK(context.Background(), passphrase(t, "old KEK"), passphrase(t, "new KEK"), &KeyslotOptions{KDF: fastArgon})
	if err != nil {
		t.Fatal(err)
	}
	if oldSlot != 0 || newSlot != 1 {
		t.Errorf("rotated slot %d -> %d, want 0 -> 1", oldSlot, newSlot)
	}
	if out, err := cryptsetupErr(t, "", "luksDump", "--dump-volume-key", "--batch-mode", "--key-file", oldFile, path); err == nil {
		t.Fatalf("cryptsetup still accepts the old KEK:\n%s", out)
	} else if !strings.Contains(out, "No key available with this passphrase") {
		t.Errorf("cryptsetup's refusal: %s", out)
	}
	if got := dumpVolumeKey(t, path, newFile); !bytes.Equal(got, dek) {
		t.Fatal("cryptsetup's DEK with the new KEK differs")
	}
	if _, err := k.Unlock(context.Background(), passphrase(t, "old KEK")); !errors.Is(err, ErrNoMatchingKeyslot) {
		t.Fatalf("encblk still accepts the old KEK: %v", err)
	}
	dump := cryptsetup(t, "", "luksDump", path)
	if strings.Contains(dump, "  0: luks2") || !strings.Contains(dump, "  1: luks2") {
		t.Errorf("luksDump after rotation:\n%s", dump)
	}

	// Crypto-erase: cryptsetup still reads the header, and nothing opens it.
	if err := k.Erase(context.Background()); err != nil {
		t.Fatal(err)
	}
	dump = cryptsetup(t, "", "luksDump", path)
	if strings.Contains(dump, ": luks2") {
		t.Errorf("luksDump after erase still lists keyslots:\n%s", dump)
	}
	if out, err := cryptsetupErr(t, "", "luksDump", "--dump-volume-key", "--batch-mode", "--key-file", newFile, path); err == nil {
		t.Fatalf("cryptsetup opens an erased volume:\n%s", out)
	}
}

// Interop test 4: a corrupt primary or secondary copy leaves the volume
// openable by both tools; both corrupt, both refuse.
func TestInteropCorruptHeader(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		offsets []int64 // where to flip a byte (JSON areas)
		opens   bool
		bad     string // which copy encblk reports bad
	}{
		{"primary", []int64{4096 + 20}, true, "primary"},
		{"primary-binary", []int64{300}, true, "primary"},
		{"secondary", []int64{16384 + 4096 + 20}, true, "secondary"},
		{"both", []int64{4096 + 20, 16384 + 4096 + 20}, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := newBacking(t, 20<<20)
			keyFile := writeFile(t, []byte("kek"))
			_, dek := formatPath(t, path, passphrase(t, "kek"), &FormatOptions{KDF: fastKDF})
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, off := range tc.offsets {
				b := []byte{0}
				f.ReadAt(b, off)
				b[0] ^= 0x55
				f.WriteAt(b, off)
			}
			f.Close()

			k, err := Open(path, &Options{ReadOnly: true})
			if !tc.opens {
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "primary: checksum mismatch; secondary: checksum mismatch") {
					t.Fatalf("both copies corrupt: Open gave %v", err)
				}
				if out, err := cryptsetupErr(t, "", "luksDump", path); err == nil {
					t.Fatalf("cryptsetup opened a volume with both copies corrupt:\n%s", out)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := unlockBytes(t, k, passphrase(t, "kek")); !bytes.Equal(got, dek) {
				t.Fatal("DEK differs")
			}
			p, s := k.HeaderStatus()
			bad := map[string]error{"primary": p, "secondary": s}
			if bad[tc.bad] == nil {
				t.Errorf("%s copy not reported bad (primary %v, secondary %v)", tc.bad, p, s)
			}
			k.Close()

			// cryptsetup opens a copy (it repairs what it loads).
			theirs := t.TempDir() + "/theirs.img"
			copyFile(t, path, theirs)
			if got := dumpVolumeKey(t, theirs, keyFile); !bytes.Equal(got, dek) {
				t.Fatal("cryptsetup's DEK differs")
			}

			// encblk repair fixes the bad copy; afterwards both copies are good
			// and cryptsetup finds nothing more to repair.
			k = openPath(t, path)
			what, err := k.Repair()
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(what, tc.bad+" header") {
				t.Errorf("Repair reported %q, want the %s header", what, tc.bad)
			}
			k = openPath(t, path)
			if p, s := k.HeaderStatus(); p != nil || s != nil {
				t.Errorf("after repair: primary %v, secondary %v", p, s)
			}
			if out := cryptsetup(t, "", "repair", "--batch-mode", "--debug", path); strings.Contains(out, "requires recovery") {
				t.Errorf("cryptsetup still finds something to repair:\n%s", out)
			}
			unlockBytes(t, k, passphrase(t, "kek"))
		})
	}
}

// LUKS1 volumes made by cryptsetup and qemu-img unlock to the same DEK.
func TestInteropLUKS1(t *testing.T) {
	t.Parallel()
	for _, hash := range []string{"sha256", "sha1"} {
		t.Run("cryptsetup-"+hash, func(t *testing.T) {
			t.Parallel()
			path := newBacking(t, 20<<20)
			keyFile := writeFile(t, []byte("luks1 pass"))
			cryptsetup(t, "", "luksFormat", "--type", "luks1", "--batch-mode", "--hash", hash, "--pbkdf-force-iterations", "1000", "--key-file", keyFile, path)
			want := dumpVolumeKey(t, path, keyFile)
			k := openPath(t, path)
			if k.Version() != 1 {
				t.Fatalf("Version = %d", k.Version())
			}
			if got := unlockBytes(t, k, passphrase(t, "luks1 pass")); !bytes.Equal(got, want) {
				t.Fatalf("DEK %x, cryptsetup %x", got, want)
			}
			seg, err := k.DataSegment()
			if err != nil {
				t.Fatal(err)
			}
			if seg.Offset != 4096*512 || seg.SectorSize != 512 {
				t.Errorf("segment %+v", seg)
			}
			if _, err := k.Unlock(context.Background(), passphrase(t, "wrong")); !errors.Is(err, ErrNoMatchingKeyslot) {
				t.Errorf("wrong passphrase: %v", err)
			}
			sameBackupAsCryptsetup(t, k, path)
			if err := k.RemoveKeyslot(context.Background(), 0); !errors.Is(err, ErrReadOnly) {
				t.Errorf("RemoveKeyslot on LUKS1: %v", err)
			}
		})
	}
	t.Run("qemu-img", func(t *testing.T) {
		t.Parallel()
		qemuImg := testutil.RequireTool(t, "qemu-img", "qemu-utils")
		dir := t.TempDir()
		path := dir + "/q.luks"
		qemuLUKSCreate(t, qemuImg, "--object", "secret,id=sec0,data=qemu pass",
			"-o", "key-secret=sec0,iter-time=100", path, "4M")
		keyFile := writeFile(t, []byte("qemu pass"))
		want := dumpVolumeKey(t, path, keyFile)
		k := openPath(t, path)
		if got := unlockBytes(t, k, passphrase(t, "qemu pass")); !bytes.Equal(got, want) {
			t.Fatalf("DEK %x, cryptsetup %x", got, want)
		}
		if _, err := k.DataSegment(); err != nil {
			t.Fatal(err)
		}
	})
}

// A header backup restores a volume whose header was destroyed, and
// cryptsetup reads encblk's backup file.
func TestHeaderBackupRestore(t *testing.T) {
	t.Parallel()
	path := newBacking(t, 20<<20)
	keyFile := writeFile(t, []byte("kek"))
	k, dek := formatPath(t, path, passphrase(t, "kek"), &FormatOptions{KDF: fastKDF})
	backup := t.TempDir() + "/hdr.backup"
	f, err := os.Create(backup)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Backup(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if fi, _ := os.Stat(backup); fi.Size() != int64(k.HeaderAreaSize()) || fi.Size() != 16<<20 {
		t.Fatalf("backup is %d bytes, want %d", fi.Size(), k.HeaderAreaSize())
	}
	sameBackupAsCryptsetup(t, k, path)
	// cryptsetup understands the backup file as a header.
	if got := dumpVolumeKey(t, backup, keyFile); !bytes.Equal(got, dek) {
		t.Fatal("cryptsetup's DEK from the backup differs")
	}
	// Destroy the header, then restore it.
	dev := wipeHeader(t, path)
	if _, err := Open(path, nil); !errors.Is(err, ErrNotLUKS) {
		t.Fatalf("wiped header opens: %v", err)
	}
	if err := Restore(dev, openReader(t, backup)); err != nil {
		t.Fatal(err)
	}
	if got := unlockBytes(t, openPath(t, path), passphrase(t, "kek")); !bytes.Equal(got, dek) {
		t.Fatal("restored header gives another DEK")
	}
	// A backup of another layout is refused.
	other := newBacking(t, 20<<20)
	formatPath(t, other, passphrase(t, "x"), &FormatOptions{KDF: fastKDF, DataOffset: 18 << 20})
	if err := Restore(dev, openReader(t, other)); err == nil || !strings.Contains(err.Error(), "another volume") {
		t.Fatalf("restoring a foreign header: %v", err)
	}
}

// wipeHeader zeroes the first MiB of path, and returns it open read-write
// until the test ends.
func wipeHeader(t *testing.T, path string) *os.File {
	t.Helper()
	dev, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	if err := zeroRange(dev, 0, 1<<20); err != nil {
		t.Fatal(err)
	}
	return dev
}

// openReader opens path for reading until the test ends.
func openReader(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// sameBackupAsCryptsetup checks that Backup writes exactly the bytes
// cryptsetup luksHeaderBackup writes.
func sameBackupAsCryptsetup(t *testing.T, k *Keyring, path string) {
	t.Helper()
	var ours bytes.Buffer
	if err := k.Backup(&ours); err != nil {
		t.Fatal(err)
	}
	theirs := t.TempDir() + "/cryptsetup.backup"
	cryptsetup(t, "", "luksHeaderBackup", "--header-backup-file", theirs, path)
	want, err := os.ReadFile(theirs)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ours.Bytes(), want) {
		t.Fatalf("header backup differs from cryptsetup's (%d vs %d bytes)", ours.Len(), len(want))
	}
}

// A backup that is short, unreadable to its end or damaged is refused
// before anything is written.
func TestRestoreRefusesBadBackups(t *testing.T) {
	t.Parallel()
	path := newBacking(t, 20<<20)
	k, _ := formatPath(t, path, passphrase(t, "kek"), &FormatOptions{KDF: fastKDF})
	var backup bytes.Buffer
	if err := k.Backup(&backup); err != nil {
		t.Fatal(err)
	}
	dev := wipeHeader(t, path)
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	full := backup.Bytes()
	damaged := bytes.Clone(full)
	damaged[4096+100] ^= 1 // in the primary copy's JSON: its checksum fails
	readErr := errors.New("the reader failed")
	for _, tc := range []struct {
		name string
		r    io.Reader
		want error
	}{
		{"truncated in the keyslots area", bytes.NewReader(full[:len(full)-4096]), ErrCorrupt},
		{"truncated in the header", bytes.NewReader(full[:1000]), ErrCorrupt},
		{"empty", bytes.NewReader(nil), ErrNotLUKS},
		{"damaged copy", bytes.NewReader(damaged), ErrCorrupt},
		{"reader fails at the end", io.MultiReader(bytes.NewReader(full), iotest.ErrReader(readErr)), readErr},
	} {
		if err := Restore(dev, tc.r); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
			t.Fatalf("%s: the device was written", tc.name)
		}
	}
}
