package keyring

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/encblk/encblk/internal/secmem"
	"github.com/encblk/encblk/internal/testutil"
	"github.com/encblk/encblk/pkg/xts"
)

// fastKDF keeps crypto-heavy tests quick on a 2-core CI box.
var fastKDF = KDFParams{Type: "pbkdf2", Hash: "sha256", Iterations: 1000}

var fastArgon = KDFParams{Type: "argon2id", Iterations: 4, MemoryKiB: 32, Parallel: 1}

func passphrase(t testing.TB, s string) *Secret {
	t.Helper()
	p, err := SecretFromBytes([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Destroy)
	return p
}

// newBacking creates a sparse file of size bytes.
func newBacking(t testing.TB, size int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "backing.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return path
}

// formatPath formats the file at path and returns the keyring and DEK.
func formatPath(t testing.TB, path string, r Recipient, opts *FormatOptions) (*Keyring, []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	k, dek, err := Format(context.Background(), f, r, opts)
	if err != nil {
		t.Fatalf("Format: %v", err)
	}
	defer dek.Destroy()
	return k, bytes.Clone(dek.Bytes())
}

func openPath(t testing.TB, path string) *Keyring {
	t.Helper()
	k, err := Open(path, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// openRW opens the file at path for reading and writing, with flag added
// (os.O_CREATE|os.O_EXCL for a new header file); it is closed at the
// test's end.
func openRW(t testing.TB, path string, flag int) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|flag, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// xtsSectors runs op, (*xts.Cipher).EncryptSectors or DecryptSectors,
// with key on buf in place: ss-byte sectors, the first one's tweak 0. The
// cipher is closed at once (its key schedule holds a page of locked
// memory, and the crash harnesses check hundreds of results).
func xtsSectors(t testing.TB, key []byte, ss int, buf []byte, op func(c *xts.Cipher, dst, src []byte, sectorSize int, firstTweak, tweakStep uint64) error) {
	t.Helper()
	c, err := xts.New(key)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := op(c, buf, buf, ss, 0, uint64(ss/512)); err != nil {
		t.Fatal(err)
	}
}

func unlockBytes(t testing.TB, k *Keyring, id Identity) []byte {
	t.Helper()
	dek, err := k.Unlock(context.Background(), id)
	if err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	defer dek.Destroy()
	return bytes.Clone(dek.Bytes())
}

// cryptsetup runs cryptsetup with args and stdin, failing the test on error.
func cryptsetup(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	out, err := cryptsetupErr(t, stdin, args...)
	if err != nil {
		t.Fatalf("cryptsetup %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func cryptsetupErr(t testing.TB, stdin string, args ...string) (string, error) {
	t.Helper()
	bin := testutil.RequireTool(t, "cryptsetup", "cryptsetup-bin")
	cmd := exec.Command(bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// dumpVolumeKey asks cryptsetup for the volume key, opening it with the
// key file at keyFile.
func dumpVolumeKey(t testing.TB, path, keyFile string, extra ...string) []byte {
	t.Helper()
	args := append([]string{"luksDump", "--dump-volume-key", "--batch-mode", "--key-file", keyFile}, extra...)
	out := cryptsetup(t, "", append(args, path)...)
	return testutil.VolumeKey(t, out)
}

func writeFile(t testing.TB, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// qemuLUKSCreate runs `qemu-img create -f luks args...`. Debian 12's
// qemu (7.2) benchmarks PBKDF2 by the thread's CPU time and gives up with
// "Unable to get accurate CPU usage" when one round of its benchmark reads
// as 0 ms, which getrusage(RUSAGE_THREAD) can report on a loaded machine
// (seen 1 run in a few on two shared cores; the check was reworked
// upstream in 2025). Only that failure is retried, a few times.
func qemuLUKSCreate(t testing.TB, qemuImg string, args ...string) {
	t.Helper()
	args = append([]string{"create", "-f", "luks"}, args...)
	for try := 1; ; try++ {
		out, err := exec.Command(qemuImg, args...).CombinedOutput()
		if err == nil {
			return
		}
		if try == 5 || !strings.Contains(string(out), "Unable to get accurate CPU usage") {
			t.Fatalf("%s %s: %v\n%s", qemuImg, strings.Join(args, " "), err, out)
		}
		t.Logf("qemu-img's PBKDF benchmark read 0 ms of CPU (try %d); again", try)
	}
}

// secretBuf is what Identity.Unwrap and Recipient.Wrap return.
type secretBuf = *Secret

// openKeyFile reads the key file at path as a KEK (pkg/kek/keyfile does
// this for users; it imports this package).
func openKeyFile(path string) (*Secret, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return SecretFromBytes(b)
}

// secretOf is a KEK of b's bytes.
func secretOf(b []byte) (*Secret, error) { return SecretFromBytes(bytes.Clone(b)) }

func secmemFrom(b []byte) (*secmem.Buffer, error) { return secmem.FromBytes(bytes.Clone(b)) }
