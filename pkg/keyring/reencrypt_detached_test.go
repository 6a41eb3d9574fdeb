package keyring

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/encblk/encblk/internal/testutil"
	"github.com/encblk/encblk/pkg/xts"
)

// Plain data devices for an encryption with a detached header: 288 KiB of
// random bytes, in zones of 64 KiB (5 zones, the last one short).
const detachedData = 288 << 10

var detachedZone = &ReencryptOptions{HotZone: 64 << 10}

func detachedFormat() *FormatOptions {
	return &FormatOptions{KDF: fastKDF, KeySize: 64, SectorSize: 4096, MetadataSize: 16 << 10, KeyslotsSize: 1 << 20}
}

func plainData(t *testing.T) (dataPath, keyPath string, plain []byte) {
	t.Helper()
	dir := t.TempDir()
	plain = make([]byte, detachedData)
	rand.Read(plain)
	dataPath = filepath.Join(dir, "data.img")
	if err := os.WriteFile(dataPath, plain, 0o600); err != nil {
		t.Fatal(err)
	}
	return dataPath, randomKeyFile(t, dir), plain
}

// encryptDetachedAll starts (unless hdr holds a header already) and
// completes an encryption of data with a detached header, as encblk
// reencrypt --encrypt --header does.
func encryptDetachedAll(ctx context.Context, hdr, data device, id *Secret) error {
	k, err := openDevice(hdr, false)
	if err != nil {
		if k, err = EncryptDetached(ctx, hdr, data, detachedData, id, detachedFormat()); err != nil {
			return err
		}
	}
	if r, err := k.Reencryption(); err != nil || r == nil {
		return err // nil: finished (the crash came after the last commit)
	}
	return stepAll(ctx, k, []Identity{id}, data, detachedData, detachedZone)
}

// checkEncryptedDetached checks that the header at hdrPath opens with id,
// records no reencryption, and that the data decrypts to plain.
func checkEncryptedDetached(t *testing.T, hdrPath, dataPath string, id *Secret, plain []byte) {
	t.Helper()
	k := openFinished(t, hdrPath)
	defer k.Close()
	seg, err := k.DataSegment()
	if err != nil {
		t.Fatal(err)
	}
	if seg.Offset != 0 || !seg.Dynamic || seg.IVTweak != 0 || len(k.Keyslots()) != 1 {
		t.Fatalf("segment %+v, %d keyslots", seg, len(k.Keyslots()))
	}
	dek := unlockBytes(t, k, id)
	data := readFile(t, dataPath)
	if bytes.Equal(data[:4096], plain[:4096]) {
		t.Fatal("data not encrypted")
	}
	xtsSectors(t, dek, seg.SectorSize, data, (*xts.Cipher).DecryptSectors)
	if !bytes.Equal(data, plain) {
		t.Fatal("plaintext changed")
	}
}

func TestEncryptDetached(t *testing.T) {
	t.Parallel()
	dataPath, keyPath, plain := plainData(t)
	hdrPath := filepath.Join(t.TempDir(), "hdr")
	hf, df := openRW(t, hdrPath, os.O_CREATE|os.O_EXCL), openRW(t, dataPath, 0)
	if err := encryptDetachedAll(context.Background(), hf, df, keyFileAt(t, keyPath)); err != nil {
		t.Fatal(err)
	}
	checkEncryptedDetached(t, hdrPath, dataPath, keyFileAt(t, keyPath), plain)
}

// TestEncryptDetachedCrashSafety stops a whole encryption with a detached
// header at every write and sync of the header or the data (lost, torn,
// complete), then resumes: the data must end encrypted, the plaintext
// intact; a crash before the header is whole leaves the data untouched.
func TestEncryptDetachedCrashSafety(t *testing.T) {
	t.Parallel()
	golden, keyPath, plain := plainData(t)
	id := keyFileAt(t, keyPath)
	ctx := context.Background()
	dir := t.TempDir()
	dataPath, hdrPath := filepath.Join(dir, "data.img"), filepath.Join(dir, "hdr")
	for _, torn := range crashTorns {
		for budget := 0; ; budget++ {
			copyFile(t, golden, dataPath)
			os.Remove(hdrPath)
			df, err := os.OpenFile(dataPath, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			hf, err := os.OpenFile(hdrPath, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			s := &crashDevice{budget: budget, tornFraction: torn}
			err = encryptDetachedAll(ctx, &crashDevice{f: hf, shared: s}, &crashDevice{f: df, shared: s}, id)
			if err == nil {
				df.Close()
				hf.Close()
				checkEncryptedDetached(t, hdrPath, dataPath, id, plain)
				if budget < 20 {
					t.Fatalf("finished with a budget of %d", budget)
				}
				break
			}
			if !errors.Is(err, errCrash) {
				t.Fatalf("torn %v budget %d: %v", torn, budget, err)
			}
			if _, err := openDevice(hf, false); err != nil {
				// No usable header yet: the data must be untouched.
				if !bytes.Equal(readFile(t, dataPath), plain) {
					t.Fatalf("torn %v budget %d: data written before the header", torn, budget)
				}
				df.Close()
				hf.Close()
				continue
			}
			if err := encryptDetachedAll(ctx, hf, df, id); err != nil {
				t.Fatalf("torn %v budget %d: resume: %v", torn, budget, err)
			}
			df.Close()
			hf.Close()
			checkEncryptedDetached(t, hdrPath, dataPath, id, plain)
		}
	}
}

// The start state encblk commits is cryptsetup 2.6.1's for the same
// options (reencrypt --encrypt --header FILE --init-only), field for field
// but salts and digests; each tool then finishes the other's.
func TestInteropEncryptDetachedMetadata(t *testing.T) {
	t.Parallel()
	testutil.RequireTool(t, "cryptsetup", "cryptsetup-bin")
	dataPath, keyPath, plain := plainData(t)
	csData, encData := filepath.Join(t.TempDir(), "cs.img"), filepath.Join(t.TempDir(), "enc.img")
	copyFile(t, dataPath, csData)
	copyFile(t, dataPath, encData)
	csHdr, encHdr := filepath.Join(t.TempDir(), "cs.hdr"), filepath.Join(t.TempDir(), "enc.hdr")
	cryptsetup(t, "", "reencrypt", "--encrypt", "--init-only", "--type", "luks2", "--header", csHdr, "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
		"--luks2-metadata-size", "16k", "--luks2-keyslots-size", "1m", "--key-size", "512", "--sector-size", "4096",
		"--force-offline-reencrypt", "--batch-mode", "--key-file", keyPath, csData)
	hf, _ := os.OpenFile(encHdr, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	df, _ := os.Open(encData)
	defer df.Close()
	if _, err := EncryptDetached(context.Background(), hf, df, detachedData, keyFileAt(t, keyPath), detachedFormat()); err != nil {
		t.Fatal(err)
	}
	hf.Close()
	cs, enc := normalizedJSON(t, csHdr), normalizedJSON(t, encHdr)
	csText, _ := json.MarshalIndent(cs, "", " ")
	encText, _ := json.MarshalIndent(enc, "", " ")
	if !bytes.Equal(csText, encText) {
		t.Fatalf("start states differ:\ncryptsetup %s\nencblk %s", csText, encText)
	}
	cryptsetup(t, "", "reencrypt", "--resume-only", "--header", encHdr, "--force-offline-reencrypt", "--batch-mode", "--key-file", keyPath, encData)
	checkEncryptedDetached(t, encHdr, encData, keyFileAt(t, keyPath), plain)
	df, _ = os.OpenFile(csData, os.O_RDWR, 0)
	defer df.Close()
	hf, _ = os.OpenFile(csHdr, os.O_RDWR, 0)
	defer hf.Close()
	if err := encryptDetachedAll(context.Background(), hf, df, keyFileAt(t, keyPath)); err != nil {
		t.Fatal(err)
	}
	checkEncryptedDetached(t, csHdr, csData, keyFileAt(t, keyPath), plain)
}

// cryptsetup's encryption with a detached header, SIGKILLed inside a zone
// or stopped by SIGINT (at its 2nd fdatasync), is finished by encblk;
// encblk's, stopped or crashed inside zone 2, by cryptsetup.
func TestInteropEncryptDetachedResume(t *testing.T) {
	t.Parallel()
	testutil.RequireTool(t, "cryptsetup", "cryptsetup-bin")
	strace := testutil.RequireTool(t, "strace", "strace")
	cs, _ := exec.LookPath("cryptsetup")
	for _, sig := range []string{"SIGKILL", "SIGINT"} {
		t.Run("cryptsetup-"+sig, func(t *testing.T) {
			t.Parallel()
			dataPath, keyPath, plain := plainData(t)
			hdrPath := filepath.Join(t.TempDir(), "hdr")
			cmd := exec.Command(strace, "-f", "-qq", "-o", "/dev/null", "-e", "trace=fdatasync", "-e", "inject=fdatasync:signal="+sig+":when=2",
				cs, "reencrypt", "--encrypt", "--type", "luks2", "--header", hdrPath, "--hotzone-size", "64k", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
				"--key-size", "256", "--sector-size", "4096", "--force-offline-reencrypt", "--batch-mode", "--key-file", keyPath, dataPath)
			if out, err := cmd.CombinedOutput(); err == nil {
				t.Fatalf("cryptsetup was not interrupted:\n%s", out)
			}
			k := openPath(t, hdrPath)
			r, err := k.Reencryption()
			if err != nil || r == nil || r.Mode != "encrypt" || r.Crashed() != (sig == "SIGKILL") {
				t.Fatalf("after %s: %+v, %v", sig, r, err)
			}
			k.Close()
			hf, df := openRW(t, hdrPath, 0), openRW(t, dataPath, 0)
			if err := encryptDetachedAll(context.Background(), hf, df, keyFileAt(t, keyPath)); err != nil {
				t.Fatal(err)
			}
			checkEncryptedDetached(t, hdrPath, dataPath, keyFileAt(t, keyPath), plain)
		})
	}
	for _, c := range []struct {
		name   string
		budget int
	}{{"encblk-clean", -1}, {"encblk-crashed", 11 + 5}} { // zone 1 (11), zone 2's checksums and hot commit (5)
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dataPath, keyPath, plain := plainData(t)
			hdrPath := filepath.Join(t.TempDir(), "hdr")
			hf, df := openRW(t, hdrPath, os.O_CREATE|os.O_EXCL), openRW(t, dataPath, 0)
			ctx := context.Background()
			id := keyFileAt(t, keyPath)
			k, err := EncryptDetached(ctx, hf, df, detachedData, id, detachedFormat())
			if err != nil {
				t.Fatal(err)
			}
			var hdr, data device = hf, df
			if c.budget >= 0 {
				s := &crashDevice{budget: c.budget}
				hdr, data = &crashDevice{f: hf, shared: s}, &crashDevice{f: df, shared: s}
			}
			if k, err = openDevice(hdr, false); err != nil {
				t.Fatal(err)
			}
			stepN(t, k, id, data, detachedData, detachedZone, 2, c.budget >= 0)
			hf.Close()
			df.Close()
			cryptsetupFinishes(t, hdrPath, dataPath, keyPath, c.budget >= 0)
			checkEncryptedDetached(t, hdrPath, dataPath, keyFileAt(t, keyPath), plain)
		})
	}
}
