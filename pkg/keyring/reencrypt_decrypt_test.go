package keyring

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/encblk/encblk/internal/testutil"
	"github.com/encblk/encblk/pkg/xts"
)

// Detached volumes for decryption: a header file and a data file of
// decryptData bytes (random plaintext, encrypted in ss-byte sectors), in
// zones of 64 KiB (5 zones, the first one short).
const decryptData = 288 << 10

func detachedVolume(t *testing.T, ss int) (hdrPath, dataPath, keyPath string, plain []byte) {
	t.Helper()
	dir := t.TempDir()
	hdrPath, dataPath = filepath.Join(dir, "hdr.img"), filepath.Join(dir, "data.img")
	keyPath = randomKeyFile(t, dir)
	if err := os.WriteFile(hdrPath, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	kf := keyFileAt(t, keyPath)
	_, dek := formatPath(t, hdrPath, kf, &FormatOptions{KDF: fastKDF, Detached: true, SectorSize: ss, KeySize: 32})
	plain = make([]byte, decryptData)
	rand.Read(plain)
	ct := bytes.Clone(plain)
	xtsSectors(t, dek, ss, ct, (*xts.Cipher).EncryptSectors)
	if err := os.WriteFile(dataPath, ct, 0o600); err != nil {
		t.Fatal(err)
	}
	return hdrPath, dataPath, keyPath, plain
}

// decryptAll starts (unless recorded) and completes a decryption of the
// detached volume (header hdr, data), as encblk reencrypt --decrypt
// --header does.
func decryptAll(ctx context.Context, hdr, data device, id *Secret, opts *ReencryptOptions) error {
	k, err := openDevice(hdr, false)
	if err != nil {
		return err
	}
	r, err := k.Reencryption()
	if err != nil {
		return err
	}
	if r == nil {
		if seg := k.meta.Segments[0]; seg != nil && seg.Type == "linear" {
			return nil // finished (the crash came after the last commit)
		}
		if err := k.StartDecrypt(ctx, []Identity{id}); err != nil {
			return err
		}
	}
	return stepAll(ctx, k, []Identity{id}, data, decryptData, opts)
}

func checkDecrypted(t *testing.T, hdrPath, dataPath string, plain []byte) {
	t.Helper()
	got, err := os.ReadFile(dataPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, plain) {
		t.Fatal("data is not the plaintext")
	}
	k := openFinished(t, hdrPath)
	defer k.Close()
	if len(k.meta.Keyslots) != 0 || len(k.meta.Segments) != 1 || k.meta.Segments[0].Type != "linear" {
		t.Fatalf("header after decryption: %d keyslots, segments %v", len(k.meta.Keyslots), k.meta.Segments)
	}
}

var decryptZone = &ReencryptOptions{HotZone: 64 << 10}

func TestDecryptInPlace(t *testing.T) {
	t.Parallel()
	for _, ss := range []int{512, 4096} {
		t.Run(strconv.Itoa(ss), func(t *testing.T) {
			t.Parallel()
			hdrPath, dataPath, keyPath, plain := detachedVolume(t, ss)
			hf, df := openRW(t, hdrPath, 0), openRW(t, dataPath, 0)
			if err := decryptAll(context.Background(), hf, df, keyFileAt(t, keyPath), decryptZone); err != nil {
				t.Fatal(err)
			}
			checkDecrypted(t, hdrPath, dataPath, plain)
		})
	}
}

// Refusals, nothing written: an opal volume, a second start, a wrong KEK.
func TestDecryptRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := newBacking(t, 40<<20)
	formatPath(t, path, passphrase(t, "opal"), &FormatOptions{KDF: fastKDF, Opal: &OpalSegment{Number: 1, KeySize: 32, Size: 8 << 20}})
	k := openPath(t, path)
	seq := k.SeqID()
	if err := k.StartDecrypt(ctx, []Identity{passphrase(t, "opal")}); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "drive holds the data key") {
		t.Fatalf("hw-opal: %v", err)
	}
	hdrPath, _, keyPath, _ := detachedVolume(t, 4096)
	k = openPath(t, hdrPath)
	if err := k.StartDecrypt(ctx, []Identity{passphrase(t, "wrong")}); !errors.Is(err, ErrNoMatchingKeyslot) {
		t.Fatalf("wrong KEK: %v", err)
	}
	if k.SeqID() != 1 || seq != 1 {
		t.Fatal("metadata written by a refused start")
	}
	if err := k.StartDecrypt(ctx, []Identity{keyFileAt(t, keyPath)}); err != nil {
		t.Fatal(err)
	}
	if err := k.StartDecrypt(ctx, []Identity{keyFileAt(t, keyPath)}); !errors.Is(err, ErrReencryptInProgress) {
		t.Fatalf("second start: %v", err)
	}
}

// TestDecryptCrashSafety stops a whole decryption at every write and sync
// of the header or the data (lost, torn in half, complete), then resumes:
// the data must end as the plaintext.
func TestDecryptCrashSafety(t *testing.T) {
	t.Parallel()
	hdrGolden, dataGolden, keyPath, plain := detachedVolume(t, 4096)
	id := keyFileAt(t, keyPath)
	ctx := context.Background()
	dir := t.TempDir()
	hdrPath, dataPath := filepath.Join(dir, "hdr.img"), filepath.Join(dir, "data.img")
	for _, torn := range crashTorns {
		for budget := 0; ; budget++ {
			copyFile(t, hdrGolden, hdrPath)
			copyFile(t, dataGolden, dataPath)
			hf, err := os.OpenFile(hdrPath, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			df, err := os.OpenFile(dataPath, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			s := &crashDevice{budget: budget, tornFraction: torn}
			err = decryptAll(ctx, &crashDevice{f: hf, shared: s}, &crashDevice{f: df, shared: s}, id, decryptZone)
			if err == nil {
				hf.Close()
				df.Close()
				checkDecrypted(t, hdrPath, dataPath, plain)
				if budget < 20 {
					t.Fatalf("finished with a budget of %d", budget)
				}
				break
			}
			if !errors.Is(err, errCrash) {
				t.Fatalf("torn %v budget %d: %v", torn, budget, err)
			}
			if err := decryptAll(ctx, hf, df, id, decryptZone); err != nil {
				t.Fatalf("torn %v budget %d: resume: %v", torn, budget, err)
			}
			hf.Close()
			df.Close()
			checkDecrypted(t, hdrPath, dataPath, plain)
		}
	}
}

// cryptsetup's detached decryption, SIGKILLed inside a zone or stopped by
// SIGINT, is finished by encblk; encblk's, stopped or crashed, is finished
// by cryptsetup.
func TestInteropDecrypt(t *testing.T) {
	t.Parallel()
	testutil.RequireTool(t, "cryptsetup", "cryptsetup-bin")
	strace := testutil.RequireTool(t, "strace", "strace")
	cs, _ := exec.LookPath("cryptsetup")
	for _, c := range []struct {
		sig  string
		when int
	}{{"SIGKILL", 2}, {"SIGINT", 2}} {
		t.Run("cryptsetup-"+c.sig, func(t *testing.T) {
			t.Parallel()
			hdrPath, dataPath, keyPath, plain := detachedVolume(t, 4096)
			cmd := exec.Command(strace, "-f", "-qq", "-o", "/dev/null", "-e", "trace=fdatasync", "-e", "inject=fdatasync:signal="+c.sig+":when="+strconv.Itoa(c.when),
				cs, "reencrypt", "--decrypt", "--header", hdrPath, "--hotzone-size", "64k", "--force-offline-reencrypt", "--batch-mode", "--key-file", keyPath, dataPath)
			if out, err := cmd.CombinedOutput(); err == nil {
				t.Fatalf("cryptsetup was not interrupted:\n%s", out)
			}
			k := openPath(t, hdrPath)
			r, err := k.Reencryption()
			if err != nil || r == nil || r.Mode != "decrypt" || r.Crashed() != (c.sig == "SIGKILL") {
				t.Fatalf("after %s: %+v, %v", c.sig, r, err)
			}
			k.Close()
			hf, df := openRW(t, hdrPath, 0), openRW(t, dataPath, 0)
			if err := decryptAll(context.Background(), hf, df, keyFileAt(t, keyPath), nil); err != nil {
				t.Fatal(err)
			}
			checkDecrypted(t, hdrPath, dataPath, plain)
		})
	}
	for _, c := range []struct {
		name   string
		budget int
	}{{"encblk-clean", -1}, {"encblk-crashed", 20}} { // start (4), zone 1 (11), zone 2's checksums and hot commit (5)
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			hdrPath, dataPath, keyPath, plain := detachedVolume(t, 4096)
			hf, df := openRW(t, hdrPath, 0), openRW(t, dataPath, 0)
			var hdr, data device = hf, df
			if c.budget >= 0 {
				s := &crashDevice{budget: c.budget}
				hdr, data = &crashDevice{f: hf, shared: s}, &crashDevice{f: df, shared: s}
			}
			ctx := context.Background()
			id := keyFileAt(t, keyPath)
			k, err := openDevice(hdr, false)
			if err != nil {
				t.Fatal(err)
			}
			if err := k.StartDecrypt(ctx, []Identity{id}); err != nil {
				t.Fatal(err)
			}
			stepN(t, k, id, data, decryptData, decryptZone, 2, c.budget >= 0)
			hf.Close()
			df.Close()
			cryptsetupFinishes(t, hdrPath, dataPath, keyPath, c.budget >= 0)
			got, err := os.ReadFile(dataPath)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("data is not the plaintext (%v)", err)
			}
		})
	}
}
