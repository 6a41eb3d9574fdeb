package keyring

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/encblk/encblk/internal/testutil"
)

// encblk reencrypts; cryptsetup shows the new key, and the plaintext
// (decrypted by OpenSSL via python3-cryptography) is unchanged.
func TestInteropReencryptByEncblk(t *testing.T) {
	t.Parallel()
	testutil.RequireTool(t, "cryptsetup", "cryptsetup-bin")
	py := testutil.RequirePythonModule(t, "cryptography", "python3-cryptography")
	path, keyPath, want := reencryptVolume(t, 512<<10, 512)
	before := dumpVolumeKey(t, path, keyPath)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	ids := []Identity{keyFileAt(t, keyPath), passphrase(t, "second")}
	if err := reencryptAll(context.Background(), f, 1<<20+512<<10, ids, &ReencryptOptions{HotZone: 128 << 10, SectorSize: 4096, KeySize: 64}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	after := dumpVolumeKey(t, path, keyPath)
	if bytes.Equal(before, after) || len(after) != 64 {
		t.Fatalf("volume key not replaced (%d bytes)", len(after))
	}
	k := openPath(t, path)
	if got := unlockBytes(t, k, passphrase(t, "second")); !bytes.Equal(got, after) {
		t.Fatal("the passphrase keyslot opens another key than cryptsetup shows")
	}
	seg, err := k.DataSegment()
	if err != nil || seg.SectorSize != 4096 {
		t.Fatalf("segment %+v, %v", seg, err)
	}
	if got := opensslSHA(t, py, path, after, seg.Offset, 4096, 512<<10); got != want {
		t.Fatalf("OpenSSL's plaintext sha256 %s, want %s", got, want)
	}
	if out := cryptsetup(t, "", "luksDump", path); strings.Contains(out, "Requirements") || strings.Contains(out, "reencrypt") {
		t.Fatalf("reencryption left in the metadata:\n%s", out)
	}
}

// opensslSHA decrypts the data area with python3-cryptography (OpenSSL's
// AES-XTS) and returns the plaintext's sha256.
func opensslSHA(t *testing.T, py, path string, key []byte, dataOffset uint64, ss int, size int) string {
	t.Helper()
	script := `
import hashlib, sys
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
path, key, off, ss, size = sys.argv[1], bytes.fromhex(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
h = hashlib.sha256()
with open(path, "rb") as f:
    f.seek(off)
    data = f.read(size)
for i in range(0, size, ss):
    d = Cipher(algorithms.AES(key), modes.XTS((i // 512).to_bytes(16, "little"))).decryptor()
    h.update(d.update(data[i:i + ss]) + d.finalize())
print(h.hexdigest())
`
	out, err := exec.Command(py, "-c", script, path, hex.EncodeToString(key), strconv.FormatUint(dataOffset, 10), strconv.Itoa(ss), strconv.Itoa(size)).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// encblk stops after some zones (cleanly, or killed inside a zone);
// cryptsetup reencrypt --resume-only finishes; the plaintext is intact.
func TestInteropReencryptResumedByCryptsetup(t *testing.T) {
	t.Parallel()
	testutil.RequireTool(t, "cryptsetup", "cryptsetup-bin")
	for _, c := range []struct {
		name   string
		budget int // writes and syncs before the simulated crash; -1: stop cleanly
		torn   float64
	}{
		// Start: two keyslot areas (write, sync) and a commit (4); each
		// zone: checksums, hot commit (4), data write, data sync, commit (4).
		{"clean", -1, 0},
		{"hot-zone-committed", 24, 0},  // zone 2's data write lost
		{"data-half-written", 24, 0.5}, // zone 2's data write torn in half
		{"data-written", 25, 0},        // zone 2 written, its sync and commit lost
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			path, keyPath, want := reencryptVolume(t, 512<<10, 4096)
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			ids := []Identity{keyFileAt(t, keyPath), passphrase(t, "second")}
			opts := &ReencryptOptions{HotZone: 64 << 10}
			var dev device = f
			if c.budget >= 0 {
				dev = &crashDevice{f: f, budget: c.budget, tornFraction: c.torn}
			}
			k, err := openDevice(dev, false)
			if err != nil {
				t.Fatal(err)
			}
			if err := k.StartReencrypt(ctx, ids, opts); err != nil {
				t.Fatal(err)
			}
			rc, err := k.OpenReencryption(ctx, ids, dev, 1<<20+512<<10, opts)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 3 && err == nil; i++ {
				err = rc.Step()
			}
			rc.Close()
			if c.budget < 0 && err != nil || c.budget >= 0 && !errors.Is(err, errCrash) {
				t.Fatalf("steps: %v", err)
			}
			f.Close()
			dump := cryptsetup(t, "", "luksDump", path)
			if !strings.Contains(dump, "online-reencrypt-v2") {
				t.Fatalf("no reencryption requirement:\n%s", dump)
			}
			if crashed := strings.Contains(dump, "in-reencryption"); crashed != (c.budget >= 0) {
				t.Fatalf("hot zone flagged %v:\n%s", crashed, dump)
			}
			if c.budget >= 0 {
				// cryptsetup recovers a hot zone only in repair.
				cryptsetup(t, "", "repair", "--batch-mode", "--key-file", keyPath, path)
			}
			cryptsetup(t, "", "reencrypt", "--resume-only", "--force-offline-reencrypt", "--batch-mode", "--key-file", keyPath, path)
			key := dumpVolumeKey(t, path, keyPath)
			if got := plaintextSHA(t, path, key); got != want {
				t.Fatalf("plaintext changed")
			}
			k2 := openPath(t, path)
			if got := unlockBytes(t, k2, passphrase(t, "second")); !bytes.Equal(got, key) {
				t.Fatal("passphrase keyslot not carried over")
			}
		})
	}
}

// cryptsetup is killed inside its second hot zone (strace's fault
// injection sends SIGKILL at its second fdatasync); encblk resumes,
// recovers the zone and finishes. (With --key-slot 0, cryptsetup re-wraps
// only the key file's keyslot and drops the other at the end.)
func TestInteropReencryptCryptsetupKilled(t *testing.T) {
	t.Parallel()
	testutil.RequireTool(t, "cryptsetup", "cryptsetup-bin")
	strace := testutil.RequireTool(t, "strace", "strace")
	path, keyPath, want := reencryptVolume(t, 512<<10, 4096)
	cs, _ := exec.LookPath("cryptsetup")
	cmd := exec.Command(strace, "-f", "-qq", "-o", "/dev/null", "-e", "trace=fdatasync", "-e", "inject=fdatasync:signal=SIGKILL:when=2",
		cs, "reencrypt", "--force-offline-reencrypt", "--batch-mode", "--key-file", keyPath, "--key-slot", "0", "--pbkdf", "pbkdf2",
		"--pbkdf-force-iterations", "1000", "--hotzone-size", "64k", path)
	cmd.Stdin = strings.NewReader("second")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("cryptsetup was not killed:\n%s", out)
	}
	k := openPath(t, path)
	r, err := k.Reencryption()
	if err != nil || r == nil || !r.Crashed() {
		t.Fatalf("after SIGKILL: %+v, %v\n%s", r, err, out)
	}
	k.Close()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ids := []Identity{keyFileAt(t, keyPath), passphrase(t, "second")}
	if err := reencryptAll(context.Background(), f, 1<<20+512<<10, ids, nil); err != nil {
		t.Fatal(err)
	}
	key := dumpVolumeKey(t, path, keyPath)
	if got := plaintextSHA(t, path, key); got != want {
		t.Fatal("plaintext changed")
	}
	if out := cryptsetup(t, "", "luksDump", path); strings.Contains(out, "Requirements") {
		t.Fatalf("requirement left:\n%s", out)
	}
}
