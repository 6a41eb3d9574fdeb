package keyring

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/encblk/encblk/internal/testutil"
	"github.com/encblk/encblk/pkg/xts"
)

// Small in-place encryptions: a 512 KiB reduce size (shift and data
// offset 256 KiB: the header is 2×16 KiB, keyslot 0's 128 KiB area for a
// 256-bit key and the reencrypt keyslot's 4 KiB) and 832 KiB of plaintext,
// which is not a multiple of the shift (zones of 256, 256, 64 and 256 KiB,
// the last read from the moved copy).
const (
	shiftReduce = 512 << 10
	shiftData   = 832 << 10
)

func shiftOptions(ss int) *EncryptOptions {
	return &EncryptOptions{ReduceSize: shiftReduce, Format: FormatOptions{KDF: fastKDF, KeySize: 32, SectorSize: ss, MetadataSize: 16 << 10}}
}

// plainDevice writes a plain device: dataSize random bytes then reduce
// bytes of zeros. It returns the path, the plaintext and a key file.
func plainDevice(t *testing.T, dataSize, reduce int) (path string, plain []byte, keyPath string) {
	t.Helper()
	dir := t.TempDir()
	plain = make([]byte, dataSize)
	rand.Read(plain)
	path = filepath.Join(dir, "plain.img")
	if err := os.WriteFile(path, append(bytes.Clone(plain), make([]byte, reduce)...), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, plain, randomKeyFile(t, dir)
}

// encryptAll starts (unless the device already records it) and completes
// an encryption in place of dev, as encblk reencrypt --encrypt does.
func encryptAll(ctx context.Context, dev device, size uint64, id *Secret, opts *EncryptOptions) error {
	k, err := openDevice(dev, false)
	if errors.Is(err, ErrNotLUKS) {
		k, err = EncryptInPlace(ctx, dev, size, id, opts)
	}
	if err != nil {
		return err
	}
	if r, err := k.Reencryption(); err != nil || r == nil {
		return err // nil: finished (the crash came after the last commit)
	}
	return stepAll(ctx, k, []Identity{id}, dev, size, nil)
}

// openFinished opens the header at path, which must record no
// reencryption any more.
func openFinished(t *testing.T, path string) *Keyring {
	t.Helper()
	k := openPath(t, path)
	if r, err := k.Reencryption(); r != nil || err != nil {
		t.Fatalf("reencryption left: %+v, %v", r, err)
	}
	return k
}

// checkEncrypted checks that the volume at path opens with id and holds
// plain (the data at the shift, encrypted with the key id opens) and
// records no reencryption.
func checkEncrypted(t *testing.T, path string, id *Secret, plain []byte) []byte {
	t.Helper()
	k := openFinished(t, path)
	defer k.Close()
	seg, err := k.DataSegment()
	if err != nil {
		t.Fatal(err)
	}
	if seg.Offset != shiftReduce/2 || !seg.Dynamic || seg.IVTweak != 0 {
		t.Fatalf("segment %+v", seg)
	}
	dek := unlockBytes(t, k, id)
	data := readFile(t, path)
	buf := data[seg.Offset : seg.Offset+uint64(len(plain))]
	xtsSectors(t, dek, seg.SectorSize, buf, (*xts.Cipher).DecryptSectors)
	if !bytes.Equal(buf, plain) {
		t.Fatal("plaintext changed")
	}
	if bytes.Contains(data[:seg.Offset], plain[40<<10:48<<10]) || bytes.Contains(data[len(data)-shiftReduce/2:], plain[:4096]) {
		t.Fatal("plaintext left in the header's room or in the moved copy")
	}
	return dek
}

func TestEncryptInPlace(t *testing.T) {
	t.Parallel()
	for _, ss := range []int{512, 4096} {
		t.Run(strconv.Itoa(ss), func(t *testing.T) {
			t.Parallel()
			path, plain, keyPath := plainDevice(t, shiftData, shiftReduce)
			f := openRW(t, path, 0)
			id := keyFileAt(t, keyPath)
			if err := encryptAll(context.Background(), f, shiftData+shiftReduce, id, shiftOptions(ss)); err != nil {
				t.Fatal(err)
			}
			checkEncrypted(t, path, id, plain)
		})
	}
}

// Refusals write nothing: an existing LUKS header, a reduce size that is
// not whole sectors, too small for the header, or more than 1 GiB, a
// device too small, a wrong KEK on resume.
func TestEncryptRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path, _, keyPath := plainDevice(t, shiftData, shiftReduce)
	id := keyFileAt(t, keyPath)
	for _, c := range []struct {
		name   string
		size   uint64
		reduce uint64
		ss     int
		want   error
	}{
		{"not-whole-sectors", shiftData + shiftReduce, shiftReduce + 512, 512, ErrReduceSize},
		{"not-whole-4k-sectors", shiftData + shiftReduce, shiftReduce + 4096, 4096, ErrReduceSize},
		{"too-small-for-header", shiftData + shiftReduce, 256 << 10, 512, ErrReduceSize},
		{"over-1G", 4 << 30, 2 << 30, 512, ErrReduceSize},
		{"device-too-small", shiftReduce + shiftReduce/4, shiftReduce, 512, ErrTooSmall},
	} {
		before := fileSHA(t, path)
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		o := shiftOptions(c.ss)
		o.ReduceSize = c.reduce
		_, err = EncryptInPlace(ctx, f, c.size, id, o)
		f.Close()
		if !errors.Is(err, c.want) {
			t.Fatalf("%s: %v, want %v", c.name, err, c.want)
		}
		if strings.Count(err.Error(), "\n") != 0 {
			t.Fatalf("%s: error of several lines: %q", c.name, err)
		}
		if fileSHA(t, path) != before {
			t.Fatalf("%s: device written", c.name)
		}
	}
	// Already LUKS.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := encryptAll(ctx, f, shiftData+shiftReduce, id, shiftOptions(512)); err != nil {
		t.Fatal(err)
	}
	before := fileSHA(t, path)
	if _, err := EncryptInPlace(ctx, f, shiftData+shiftReduce, id, shiftOptions(512)); !errors.Is(err, ErrAlreadyLUKS) {
		t.Fatalf("encrypt of a LUKS volume: %v", err)
	}
	if fileSHA(t, path) != before {
		t.Fatal("LUKS volume written")
	}
}

// stepN opens the reencryption k records and runs n steps of it, fewer if
// one fails: with crashes, the last must end in the simulated crash;
// without, none may fail.
func stepN(t *testing.T, k *Keyring, id Identity, data device, size uint64, opts *ReencryptOptions, n int, crashes bool) {
	t.Helper()
	rc, err := k.OpenReencryption(context.Background(), []Identity{id}, data, size, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n && err == nil; i++ {
		err = rc.Step()
	}
	rc.Close()
	if !crashes && err != nil || crashes && !errors.Is(err, errCrash) {
		t.Fatalf("steps: %v", err)
	}
}

// cryptsetupFinishes checks that the header at hdr flags a hot zone
// exactly when hot, then has cryptsetup finish the operation it records
// on the data at data (hdr == data: the header is on the device):
// cryptsetup repair recovers a hot zone (after the last zone it finishes
// the operation too), reencrypt --resume-only does the rest.
func cryptsetupFinishes(t *testing.T, hdr, data, keyPath string, hot bool) {
	t.Helper()
	var header []string
	if hdr != data {
		header = []string{"--header", hdr}
	}
	dump := cryptsetup(t, "", "luksDump", hdr)
	if crashed := strings.Contains(dump, "in-reencryption"); crashed != hot {
		t.Fatalf("hot zone flagged %v:\n%s", crashed, dump)
	}
	if hot {
		cryptsetup(t, "", slices.Concat([]string{"repair", "--batch-mode"}, header, []string{"--key-file", keyPath, data})...)
	}
	if strings.Contains(cryptsetup(t, "", "luksDump", hdr), "online-reencrypt") {
		cryptsetup(t, "", slices.Concat([]string{"reencrypt", "--resume-only"}, header, []string{"--force-offline-reencrypt", "--batch-mode", "--key-file", keyPath, data})...)
	}
}

func fileSHA(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestEncryptCrashSafety stops a whole encryption in place at every write
// and sync (the write lost, torn in half, or complete). Then: if the
// device has a LUKS2 header, a resume must finish with the plaintext
// intact; if it has none yet (the crash came before the header's primary
// copy), the plaintext must still be all there: in place, or with its
// head [0, S) in the moved copy at the end of the device.
func TestEncryptCrashSafety(t *testing.T) {
	t.Parallel()
	golden, plain, keyPath := plainDevice(t, shiftData, shiftReduce)
	id := keyFileAt(t, keyPath)
	ctx := context.Background()
	const size = shiftData + shiftReduce
	const shift = shiftReduce / 2
	dir := t.TempDir()
	for _, torn := range crashTorns {
		for budget := 0; ; budget++ {
			path := filepath.Join(dir, "crash.img")
			copyFile(t, golden, path)
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			dev := &crashDevice{f: f, budget: budget, tornFraction: torn}
			err = encryptAll(ctx, dev, size, id, shiftOptions(4096))
			if err == nil {
				f.Close()
				checkEncrypted(t, path, id, plain)
				if budget < 20 {
					t.Fatalf("finished with a budget of %d writes and syncs", budget)
				}
				break
			}
			if !errors.Is(err, errCrash) {
				t.Fatalf("torn %v budget %d: %v", torn, budget, err)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := openDevice(f, false); errors.Is(err, ErrNotLUKS) || errors.Is(err, ErrCorrupt) {
				// No valid header (a copy torn): the volume does not open,
				// and encrypting it again is refused (ErrAlreadyLUKS).
				inPlace := bytes.Equal(data[:shiftData], plain)
				moved := bytes.Equal(data[size-shift:], plain[:shift]) && bytes.Equal(data[shift:shiftData], plain[shift:])
				if !inPlace && !moved {
					t.Fatalf("torn %v budget %d: no header and the plaintext is lost", torn, budget)
				}
				f.Close()
				continue
			} else if err != nil {
				t.Fatalf("torn %v budget %d: %v", torn, budget, err)
			}
			if err := encryptAll(ctx, f, size, id, nil); err != nil {
				t.Fatalf("torn %v budget %d: resume: %v", torn, budget, err)
			}
			f.Close()
			checkEncrypted(t, path, id, plain)
		}
	}
}

// The cryptsetup fixture encrypt-init (reencrypt --encrypt --init-only
// --reduce-device-size 1M of a 3 MiB file) is finished by encblk.
func TestEncryptCryptsetupFixture(t *testing.T) {
	t.Parallel()
	path := fixtureImage(t, "encrypt-init")
	runReencryption(t, path, fixtureKey(t), nil)
	k := openPath(t, path)
	dek := unlockBytes(t, k, fixtureKey(t))
	seg, err := k.DataSegment()
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	buf := data[seg.Offset : seg.Offset+2<<20]
	xtsSectors(t, dek, seg.SectorSize, buf, (*xts.Cipher).DecryptSectors)
	if s := sha256.Sum256(buf); hex.EncodeToString(s[:]) != fixtureSHA(t, "encrypt-plaintext.sha256") {
		t.Fatal("plaintext changed")
	}
}

// cryptsetup's encryption in place, interrupted by SIGKILL inside a zone
// (strace's fault injection at its Nth fdatasync) or stopped by SIGINT,
// is finished by encblk.
func TestInteropEncryptCryptsetupKilled(t *testing.T) {
	t.Parallel()
	testutil.RequireTool(t, "cryptsetup", "cryptsetup-bin")
	strace := testutil.RequireTool(t, "strace", "strace")
	cs, _ := exec.LookPath("cryptsetup")
	for _, c := range []struct {
		sig  string
		when int
	}{{"SIGKILL", 1}, {"SIGKILL", 3}, {"SIGKILL", 4}, {"SIGINT", 2}} {
		t.Run(c.sig+strconv.Itoa(c.when), func(t *testing.T) {
			t.Parallel()
			path, plain, keyPath := plainDevice(t, shiftData, shiftReduce)
			cmd := exec.Command(strace, "-f", "-qq", "-o", "/dev/null", "-e", "trace=fdatasync", "-e", "inject=fdatasync:signal="+c.sig+":when="+strconv.Itoa(c.when),
				cs, "reencrypt", "--encrypt", "--reduce-device-size", strconv.Itoa(shiftReduce), "--type", "luks2", "--pbkdf", "pbkdf2",
				"--pbkdf-force-iterations", "1000", "--luks2-metadata-size", "16k", "--key-size", "256", "--sector-size", "4096",
				"--force-offline-reencrypt", "--batch-mode", "--key-file", keyPath, path)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("cryptsetup was not interrupted:\n%s", out)
			}
			k := openPath(t, path)
			r, err := k.Reencryption()
			if err != nil || r == nil || r.Crashed() != (c.sig == "SIGKILL") {
				t.Fatalf("after %s: %+v, %v\n%s", c.sig, r, err, out)
			}
			k.Close()
			runReencryption(t, path, keyFileAt(t, keyPath), nil)
			checkEncrypted(t, path, keyFileAt(t, keyPath), plain)
		})
	}
}

// encblk stops (cleanly, or crashed with the zone hot, half written or
// written): cryptsetup reencrypt --resume-only finishes it, and OpenSSL
// (python3-cryptography) decrypts the plaintext with the key cryptsetup
// shows.
func TestInteropEncryptResumedByCryptsetup(t *testing.T) {
	t.Parallel()
	testutil.RequireTool(t, "cryptsetup", "cryptsetup-bin")
	py := testutil.RequirePythonModule(t, "cryptography", "python3-cryptography")
	const size = shiftData + shiftReduce
	for _, c := range []struct {
		name   string
		budget int // writes and syncs before the simulated crash; -1: stop cleanly
		torn   float64
	}{
		// Start: moved copy (write, sync), header (2 writes, 2 syncs);
		// each zone: hot commit (4), data write, data sync, commit (4).
		{"clean", -1, 0},
		{"hot-zone-committed", 20, 0},
		{"data-half-written", 20, 0.5},
		{"data-written", 21, 0},
		{"last-zone-hot", 40, 0}, // zone 4 (from the moved copy) hot, data lost
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			path, plain, keyPath := plainDevice(t, shiftData, shiftReduce)
			f := openRW(t, path, 0)
			var dev device = f
			if c.budget >= 0 {
				dev = &crashDevice{f: f, budget: c.budget, tornFraction: c.torn}
			}
			ctx := context.Background()
			id := keyFileAt(t, keyPath)
			k, err := EncryptInPlace(ctx, dev, size, id, shiftOptions(4096))
			if err != nil {
				t.Fatal(err)
			}
			steps := 4 // until the crash
			if c.budget < 0 {
				steps = 2
			}
			stepN(t, k, id, dev, size, nil, steps, c.budget >= 0)
			f.Close()
			cryptsetupFinishes(t, path, path, keyPath, c.budget >= 0)
			key := dumpVolumeKey(t, path, keyPath)
			s := sha256.Sum256(plain)
			if got := opensslSHA(t, py, path, key, shiftReduce/2, 4096, shiftData); got != hex.EncodeToString(s[:]) {
				t.Fatal("OpenSSL's plaintext differs")
			}
			checkEncrypted(t, path, keyFileAt(t, keyPath), plain)
		})
	}
}

// rwMem is a device in memory of a fixed size.
type rwMem struct{ b []byte }

func (m *rwMem) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, errTruncated
	}
	return copy(p, m.b[off:]), nil
}

func (m *rwMem) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, errTruncated
	}
	return copy(m.b[off:], p), nil
}

func (m *rwMem) Sync() error { return nil }

// FuzzEncryptResumeSegments: the segments of an encryption in place are
// not covered by the verification digest, so a resume reads them from
// metadata anyone may have written. Arbitrary segments (on cryptsetup's
// encrypt-init fixture, whose key is known) must be refused or resumed,
// never crash or write outside the device.
func FuzzEncryptResumeSegments(f *testing.F) {
	img := gunzipFixture(f, "encrypt-init.img.gz")
	keyBytes, err := os.ReadFile(filepath.Join(reencryptFixtures, "key"))
	if err != nil {
		f.Fatal(err)
	}
	fuzzResumeSegments(f, nil, img, keyBytes)
}
