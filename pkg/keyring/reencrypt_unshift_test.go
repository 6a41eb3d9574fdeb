package keyring

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/encblk/encblk/internal/testutil"
	"github.com/encblk/encblk/pkg/xts"
)

// Small volumes with the header on the device for a decryption with a
// data shift: data offset (and shift) 256 KiB (a 16 KiB metadata area and
// 224 KiB of keyslots area), 640 KiB of random plaintext. Zones: the
// moved segment [0, 256K), then [256K, 512K) and [512K, 640K), the moved
// segment last.
const (
	unshiftOffset = 256 << 10
	unshiftData   = 640 << 10
	unshiftSize   = unshiftOffset + unshiftData
)

// shiftedVolume makes such a volume; it returns its path, the key file
// and the plaintext.
func shiftedVolume(t *testing.T, ss int) (path, keyPath string, plain []byte) {
	t.Helper()
	path = newBacking(t, unshiftSize)
	keyPath = randomKeyFile(t, t.TempDir())
	_, dek := formatPath(t, path, keyFileAt(t, keyPath), &FormatOptions{KDF: fastKDF, KeySize: 32, SectorSize: ss,
		DataOffset: unshiftOffset, MetadataSize: 16 << 10, KeyslotsSize: unshiftOffset - 32<<10})
	plain = make([]byte, unshiftData)
	rand.Read(plain)
	ct := bytes.Clone(plain)
	xtsSectors(t, dek, ss, ct, (*xts.Cipher).EncryptSectors)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(ct, unshiftOffset); err != nil {
		t.Fatal(err)
	}
	return path, keyPath, plain
}

// decryptShiftAll starts (unless newHdr records it already) and completes
// the decryption with a data shift of the volume on data, as encblk
// reencrypt --decrypt --header NEWFILE does.
func decryptShiftAll(ctx context.Context, data, newHdr device, id *Secret, opts *ReencryptOptions) error {
	k, err := openDevice(newHdr, false)
	if err != nil {
		src, err := openDevice(data, false)
		if err != nil {
			return err
		}
		if k, err = src.StartDecryptShift(ctx, []Identity{id}, data, unshiftSize, newHdr, opts); err != nil {
			return err
		}
	}
	if r, err := k.Reencryption(); err != nil || r == nil {
		return err // nil: finished (the crash came after the last commit)
	}
	return stepAll(ctx, k, []Identity{id}, data, unshiftSize, opts)
}

// checkUnshifted checks the end state: the plaintext at offset 0 of the
// device, no old ciphertext left after it, and a header file with one
// linear segment and no keyslot.
func checkUnshifted(t *testing.T, dataPath, hdrPath string, plain, oldCT []byte) {
	t.Helper()
	got, err := os.ReadFile(dataPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:unshiftData], plain) {
		t.Fatal("the device does not start with the plaintext")
	}
	if oldCT != nil && bytes.Contains(got[unshiftData:], oldCT[len(oldCT)-4096:]) {
		t.Fatal("old ciphertext left at the end of the device")
	}
	k := openFinished(t, hdrPath)
	defer k.Close()
	if len(k.meta.Keyslots) != 0 || len(k.meta.Digests) != 0 || len(k.meta.Segments) != 1 || k.meta.Segments[0].Type != "linear" ||
		k.meta.Segments[0].Offset != 0 || len(k.meta.Config.Requirements) != 0 {
		t.Fatalf("header after decryption: %d keyslots, %d digests, segments %v, requirements %v",
			len(k.meta.Keyslots), len(k.meta.Digests), k.meta.Segments, k.meta.Config.Requirements)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecryptShift(t *testing.T) {
	t.Parallel()
	for _, ss := range []int{512, 4096} {
		t.Run(strconv.Itoa(ss), func(t *testing.T) {
			t.Parallel()
			path, keyPath, plain := shiftedVolume(t, ss)
			oldCT := readFile(t, path)[unshiftOffset:]
			hdrPath := filepath.Join(t.TempDir(), "new.hdr")
			hf, df := openRW(t, hdrPath, os.O_CREATE|os.O_EXCL), openRW(t, path, 0)
			if err := decryptShiftAll(context.Background(), df, hf, keyFileAt(t, keyPath), nil); err != nil {
				t.Fatal(err)
			}
			checkUnshifted(t, path, hdrPath, plain, oldCT)
		})
	}
}

// Refusals write nothing: a wrong KEK, an opal volume, a detached header
// (data at 0), a reencryption recorded already.
func TestDecryptShiftRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	try := func(path string, id *Secret) error {
		t.Helper()
		before := fileSHA(t, path)
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fi, _ := f.Stat()
		hdrPath := filepath.Join(t.TempDir(), "new.hdr")
		hf, err := os.Create(hdrPath)
		if err != nil {
			t.Fatal(err)
		}
		defer hf.Close()
		k, err := openDevice(f, false)
		if err != nil {
			t.Fatal(err)
		}
		_, err = k.StartDecryptShift(ctx, []Identity{id}, f, uint64(fi.Size()), hf, nil)
		if fileSHA(t, path) != before {
			t.Fatal("device written by a refused start")
		}
		if b := readFile(t, hdrPath); len(b) != 0 {
			t.Fatal("header file written by a refused start")
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("error of several lines: %q", err)
		}
		return err
	}
	path, _, _ := shiftedVolume(t, 4096)
	if err := try(path, passphrase(t, "wrong")); !errors.Is(err, ErrNoMatchingKeyslot) {
		t.Fatalf("wrong KEK: %v", err)
	}
	opal := newBacking(t, 40<<20)
	formatPath(t, opal, passphrase(t, "opal"), &FormatOptions{KDF: fastKDF, Opal: &OpalSegment{Number: 1, KeySize: 32, Size: 8 << 20}})
	if err := try(opal, passphrase(t, "opal")); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "drive holds the data key") {
		t.Fatalf("hw-opal: %v", err)
	}
	hdrPath, _, detKey, _ := detachedVolume(t, 4096)
	if err := try(hdrPath, keyFileAt(t, detKey)); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("detached header: %v", err)
	}
	k := openPath(t, hdrPath)
	if err := k.StartDecrypt(ctx, []Identity{keyFileAt(t, detKey)}); err != nil {
		t.Fatal(err)
	}
	k.Close()
	if err := try(hdrPath, keyFileAt(t, detKey)); !errors.Is(err, ErrReencryptInProgress) {
		t.Fatalf("reencryption recorded: %v", err)
	}
}

// TestDecryptShiftCrashSafety stops a whole decryption with a data shift
// at every write and sync of the device or of the new header file (the
// write lost, torn in half, or complete; one budget for both). Then: if
// the header file records the decryption, a resume must end with the
// plaintext at offset 0; if not (the crash came before its commit), the
// volume must still be whole with the header file as its detached header:
// the data in place at the data offset, the header file opening the key.
func TestDecryptShiftCrashSafety(t *testing.T) {
	t.Parallel()
	golden, keyPath, plain := shiftedVolume(t, 4096)
	oldCT := readFile(t, golden)[unshiftOffset:]
	id := keyFileAt(t, keyPath)
	ctx := context.Background()
	dir := t.TempDir()
	dataPath, hdrPath := filepath.Join(dir, "data.img"), filepath.Join(dir, "new.hdr")
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
			err = decryptShiftAll(ctx, &crashDevice{f: df, shared: s}, &crashDevice{f: hf, shared: s}, id, nil)
			if err == nil {
				df.Close()
				hf.Close()
				checkUnshifted(t, dataPath, hdrPath, plain, oldCT)
				if budget < 20 {
					t.Fatalf("finished with a budget of %d", budget)
				}
				break
			}
			if !errors.Is(err, errCrash) {
				t.Fatalf("torn %v budget %d: %v", torn, budget, err)
			}
			k, err := openDevice(hf, false)
			recorded := false
			if err == nil {
				r, rerr := k.Reencryption()
				if rerr != nil {
					t.Fatalf("torn %v budget %d: %v", torn, budget, rerr)
				}
				// Recorded, or finished (the crash came after the last
				// commit, wiping the old keyslots).
				recorded = r != nil || k.meta.Segments[0].Type == "linear"
			}
			if !recorded {
				// Before the commit: the data is where it was, and the
				// header file (if whole) opens its key; the device's own
				// header may be gone.
				got := readFile(t, dataPath)
				if !bytes.Equal(got[unshiftOffset:], oldCT) {
					t.Fatalf("torn %v budget %d: data moved before the decryption was recorded", torn, budget)
				}
				opens := func(dev device) bool {
					k, err := openDevice(dev, false)
					if err != nil {
						return false
					}
					dek, err := k.Unlock(ctx, id)
					dek.Destroy()
					return err == nil
				}
				if !opens(hf) && !opens(df) {
					t.Fatalf("torn %v budget %d: neither the device nor the header file opens the volume", torn, budget)
				}
				df.Close()
				hf.Close()
				continue
			}
			if err := decryptShiftAll(ctx, df, hf, id, nil); err != nil {
				t.Fatalf("torn %v budget %d: resume: %v", torn, budget, err)
			}
			df.Close()
			hf.Close()
			checkUnshifted(t, dataPath, hdrPath, plain, oldCT)
		}
	}
}

// normalizedJSON is the metadata of the header file at path with what
// differs between two runs blanked: salts, digests, areas' contents are
// not in it; UUIDs and the verification digest's iterations are.
func normalizedJSON(t *testing.T, path string) map[string]any {
	t.Helper()
	out := cryptsetup(t, "", "luksDump", "--dump-json-metadata", path)
	var j map[string]any
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatal(err)
	}
	for _, ks := range j["keyslots"].(map[string]any) {
		ks := ks.(map[string]any)
		if kdf, ok := ks["kdf"].(map[string]any); ok {
			delete(kdf, "salt")
		}
	}
	for _, d := range j["digests"].(map[string]any) {
		d := d.(map[string]any)
		delete(d, "salt")
		delete(d, "digest")
		delete(d, "iterations")
		if segs, ok := d["segments"].([]any); ok {
			// The order of the ids is not meaningful.
			ss := make([]string, len(segs))
			for i, s := range segs {
				ss[i] = s.(string)
			}
			d["segments"] = strings.Join(sortedStrings(ss), ",")
		}
	}
	return j
}

func sortedStrings(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// The start state encblk commits is the one cryptsetup 2.6.1 commits for
// the same volume (reencrypt --decrypt --header NEWFILE --init-only),
// field for field but salts and digests, and each tool resumes the other.
func TestInteropDecryptShiftMetadata(t *testing.T) {
	t.Parallel()
	testutil.RequireTool(t, "cryptsetup", "cryptsetup-bin")
	path, keyPath, plain := shiftedVolume(t, 4096)
	csData, encData := filepath.Join(t.TempDir(), "cs.img"), filepath.Join(t.TempDir(), "enc.img")
	copyFile(t, path, csData)
	copyFile(t, path, encData)
	csHdr, encHdr := filepath.Join(t.TempDir(), "cs.hdr"), filepath.Join(t.TempDir(), "enc.hdr")
	cryptsetup(t, "", "reencrypt", "--decrypt", "--init-only", "--header", csHdr, "--force-offline-reencrypt", "--batch-mode", "--key-file", keyPath, csData)
	df, _ := os.OpenFile(encData, os.O_RDWR, 0)
	hf, _ := os.OpenFile(encHdr, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	k, err := openDevice(df, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.StartDecryptShift(context.Background(), []Identity{keyFileAt(t, keyPath)}, df, unshiftSize, hf, nil); err != nil {
		t.Fatal(err)
	}
	df.Close()
	hf.Close()
	cs, enc := normalizedJSON(t, csHdr), normalizedJSON(t, encHdr)
	csText, _ := json.MarshalIndent(cs, "", " ")
	encText, _ := json.MarshalIndent(enc, "", " ")
	if !bytes.Equal(csText, encText) {
		t.Fatalf("start states differ:\ncryptsetup %s\nencblk %s", csText, encText)
	}
	if !bytes.Equal(readFile(t, csData), readFile(t, encData)) {
		t.Fatal("the devices differ after the start")
	}
	// Crossed: cryptsetup runs encblk's, encblk cryptsetup's.
	cryptsetup(t, "", "reencrypt", "--resume-only", "--header", encHdr, "--force-offline-reencrypt", "--batch-mode", "--key-file", keyPath, encData)
	checkUnshifted(t, encData, encHdr, plain, nil)
	df, _ = os.OpenFile(csData, os.O_RDWR, 0)
	defer df.Close()
	hf, _ = os.OpenFile(csHdr, os.O_RDWR, 0)
	defer hf.Close()
	if err := decryptShiftAll(context.Background(), df, hf, keyFileAt(t, keyPath), nil); err != nil {
		t.Fatal(err)
	}
	checkUnshifted(t, csData, csHdr, plain, nil)
}

// cryptsetup's decryption with a data shift, interrupted by SIGKILL
// (strace's fault injection at its Nth fdatasync: the data sync of zone
// N, before the commit that ends it; zone 3 is the moved segment; or at
// the 5th fsync of the device: after the last zone's commit, when the
// end of the device is wiped) or stopped by SIGINT, is finished by
// encblk. (From the state the 5th fsync leaves, all plain, cryptsetup
// 2.6.1's own --resume-only decrypts the moved segment a second time.)
func TestInteropDecryptShiftCryptsetupKilled(t *testing.T) {
	t.Parallel()
	testutil.RequireTool(t, "cryptsetup", "cryptsetup-bin")
	strace := testutil.RequireTool(t, "strace", "strace")
	cs, _ := exec.LookPath("cryptsetup")
	for _, c := range []struct {
		sig     string
		syscall string
		when    int
		hot     bool
	}{{"SIGKILL", "fdatasync", 1, true}, {"SIGKILL", "fdatasync", 2, true}, {"SIGKILL", "fdatasync", 3, true},
		{"SIGKILL", "fsync", 5, false}, {"SIGINT", "fdatasync", 1, false}, {"SIGINT", "fdatasync", 2, false}} {
		t.Run(c.sig+"-"+c.syscall+strconv.Itoa(c.when), func(t *testing.T) {
			t.Parallel()
			path, keyPath, plain := shiftedVolume(t, 4096)
			hdrPath := filepath.Join(t.TempDir(), "new.hdr")
			args := []string{"-f", "-qq", "-o", "/dev/null", "-e", "trace=" + c.syscall, "-e", "inject=" + c.syscall + ":signal=" + c.sig + ":when=" + strconv.Itoa(c.when)}
			if c.syscall == "fsync" {
				args = append(args, "-P", path) // the device's syncs only
			}
			cmd := exec.Command(strace, append(args, cs, "reencrypt", "--decrypt", "--header", hdrPath, "--force-offline-reencrypt", "--batch-mode", "--key-file", keyPath, path)...)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("cryptsetup was not interrupted:\n%s", out)
			}
			k := openPath(t, hdrPath)
			r, err := k.Reencryption()
			if err != nil || r == nil || r.Mode != "decrypt" || r.Resilience != "datashift-checksum" || r.Crashed() != c.hot {
				t.Fatalf("after %s: %+v, %v\n%s", c.sig, r, err, out)
			}
			k.Close()
			df, hf := openRW(t, path, 0), openRW(t, hdrPath, 0)
			if err := decryptShiftAll(context.Background(), df, hf, keyFileAt(t, keyPath), nil); err != nil {
				t.Fatal(err)
			}
			checkUnshifted(t, path, hdrPath, plain, nil)
		})
	}
}

// encblk stops (cleanly, or crashed with a zone hot: after the moved
// segment's hot commit, with its data half written): cryptsetup reencrypt
// --resume-only finishes it (after cryptsetup repair when crashed).
func TestInteropDecryptShiftResumedByCryptsetup(t *testing.T) {
	t.Parallel()
	testutil.RequireTool(t, "cryptsetup", "cryptsetup-bin")
	// Start: header file (write, sync), wipe (2 writes, sync), move
	// (write, sync), commit (4). Each zone: hot commit (4), data write,
	// sync, commit (4); the moved segment's: checksums write and sync
	// first.
	for _, c := range []struct {
		name   string
		steps  int
		budget int // writes and syncs before the simulated crash; -1: stop cleanly
		torn   float64
	}{
		{"clean", 1, -1, 0},
		// All steps, no Finish: the moved segment's hot state is left
		// (see movedWrite).
		{"all-plain", 3, -1, 0},
		{"zone-hot", 2, 10 + 9 + 4, 0},
		{"zone-half-written", 2, 10 + 9 + 4, 0.5},
		{"moved-hot", 3, 10 + 9 + 9 + 6, 0},
		{"moved-half-written", 3, 10 + 9 + 9 + 6, 0.5},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			path, keyPath, plain := shiftedVolume(t, 4096)
			hdrPath := filepath.Join(t.TempDir(), "new.hdr")
			df, hf := openRW(t, path, 0), openRW(t, hdrPath, os.O_CREATE|os.O_EXCL)
			var data, hdr device = df, hf
			if c.budget >= 0 {
				s := &crashDevice{budget: c.budget, tornFraction: c.torn}
				data, hdr = &crashDevice{f: df, shared: s}, &crashDevice{f: hf, shared: s}
			}
			ctx := context.Background()
			id := keyFileAt(t, keyPath)
			src, err := openDevice(data, false)
			if err != nil {
				t.Fatal(err)
			}
			k, err := src.StartDecryptShift(ctx, []Identity{id}, data, unshiftSize, hdr, nil)
			if err != nil {
				t.Fatal(err)
			}
			stepN(t, k, id, data, unshiftSize, nil, c.steps, c.budget >= 0)
			df.Close()
			hf.Close()
			cryptsetupFinishes(t, hdrPath, path, keyPath, c.budget >= 0 || c.steps == 3)
			checkUnshifted(t, path, hdrPath, plain, nil)
		})
	}
}

// gunzipFixture returns the bytes of a gzipped fixture.
func gunzipFixture(tb testing.TB, name string) []byte {
	tb.Helper()
	f, err := os.Open(filepath.Join(reencryptFixtures, name))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// The cryptsetup fixture decrypt-shift-init (reencrypt --decrypt
// --init-only --header) is finished by encblk: the plaintext is at 0.
func TestDecryptShiftCryptsetupFixture(t *testing.T) {
	t.Parallel()
	data := &rwMem{b: gunzipFixture(t, "decrypt-shift-init.img.gz")}
	hdr := &rwMem{b: gunzipFixture(t, "decrypt-shift-init.hdr.gz")}
	k, err := openDevice(hdr, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := stepAll(context.Background(), k, []Identity{fixtureKey(t)}, data, uint64(len(data.b)), nil); err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(data.b[:448<<10])
	if hex.EncodeToString(s[:]) != fixtureSHA(t, "decrypt-shift-plaintext.sha256") {
		t.Fatal("plaintext changed")
	}
	if r, err := k.Reencryption(); r != nil || err != nil || len(k.meta.Keyslots) != 0 {
		t.Fatalf("after: %+v, %v, %d keyslots", r, err, len(k.meta.Keyslots))
	}
}

// Metadata encblk does not resume is refused with ErrUnsupported (exit 4),
// nothing written: another resilience type (the verification digest would
// fail too, but the type is looked at first), another hash.
func TestDecryptShiftUnsupported(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ field, value string }{{"type", "datashift-journal"}, {"hash", "sha1"}} {
		data := &rwMem{b: gunzipFixture(t, "decrypt-shift-init.img.gz")}
		hdr := &rwMem{b: gunzipFixture(t, "decrypt-shift-init.hdr.gz")}
		k, err := openDevice(hdr, false)
		if err != nil {
			t.Fatal(err)
		}
		e := k.meta.clone()
		var ks map[string]json.RawMessage
		json.Unmarshal(e.keyslots["1"], &ks)
		if ks["area"], err = setField(ks["area"], c.field, c.value); err != nil {
			t.Fatal(err)
		}
		e.keyslots["1"], _ = json.Marshal(ks)
		if k.meta, err = e.reparse(k.bin.HdrSize); err != nil {
			t.Fatal(err)
		}
		before := bytes.Clone(data.b)
		_, err = k.OpenReencryption(context.Background(), []Identity{fixtureKey(t)}, data, uint64(len(data.b)), nil)
		if !errors.Is(err, ErrUnsupported) {
			t.Fatalf("%s %s: %v", c.field, c.value, err)
		}
		if !bytes.Equal(before, data.b) {
			t.Fatalf("%s %s: data written", c.field, c.value)
		}
	}
}

// FuzzDecryptShiftResumeSegments: the segments of a decryption with a
// data shift are not covered by the verification digest, so a resume
// reads them from metadata anyone may have written. Arbitrary segments
// (on cryptsetup's decrypt-shift-init fixture, whose key is known) must
// be refused or resumed, never crash or write outside the devices.
func FuzzDecryptShiftResumeSegments(f *testing.F) {
	img := gunzipFixture(f, "decrypt-shift-init.img.gz")
	hdrImg := gunzipFixture(f, "decrypt-shift-init.hdr.gz")
	keyBytes, err := os.ReadFile(filepath.Join(reencryptFixtures, "key"))
	if err != nil {
		f.Fatal(err)
	}
	fuzzResumeSegments(f, hdrImg, img, keyBytes)
}
