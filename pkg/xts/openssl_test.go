package xts

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"

	"github.com/encblk/encblk/internal/testutil"
)

// opensslXTS encrypts sectors with OpenSSL's EVP aes-xts through Debian's
// python3-cryptography: the tweak of sector i is (tweak + i*step) mod 2^64
// as 16 little-endian bytes, the plain64 rule.
const opensslXTS = `
import sys
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
out = []
for line in sys.stdin:
    key, ss, tweak, step, data = line.split()
    key, data = bytes.fromhex(key), bytes.fromhex(data)
    ss, tweak, step = int(ss), int(tweak), int(step)
    res = bytearray()
    for i in range(0, len(data), ss):
        tw = ((tweak + (i // ss) * step) % 2**64).to_bytes(16, "little")
        enc = Cipher(algorithms.AES(key), modes.XTS(tw)).encryptor()
        res += enc.update(data[i:i + ss]) + enc.finalize()
    out.append(res.hex())
print("\n".join(out))
`

// TestAgainstOpenSSL compares every path byte for byte with OpenSSL.
func TestAgainstOpenSSL(t *testing.T) {
	python := testutil.RequirePythonModule(t, "cryptography", "python3-cryptography")
	type job struct {
		key, data   []byte
		ss          int
		tweak, step uint64
	}
	r := rand.New(rand.NewPCG(42, 0))
	var jobs []job
	var in strings.Builder
	for i := range 24 {
		j := job{
			key:   randBytes(r, []int{32, 64}[i%2]),
			ss:    sectorSizes[(i/2)%4],
			tweak: r.Uint64(),
			step:  []uint64{1, 8, r.Uint64()}[i%3],
		}
		if i%5 == 0 {
			j.tweak = ^uint64(0) - 1 // wraps inside the call
		}
		j.data = randBytes(r, j.ss*(1+r.IntN(5)))
		jobs = append(jobs, j)
		fmt.Fprintf(&in, "%x %d %d %d %x\n", j.key, j.ss, j.tweak, j.step, j.data)
	}
	cmd := exec.Command(python, "-c", opensslXTS)
	cmd.Stdin = strings.NewReader(in.String())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	lines := strings.Fields(string(out))
	if len(lines) != len(jobs) {
		t.Fatalf("python3 returned %d results for %d jobs", len(lines), len(jobs))
	}
	forEachPath(t, func(t *testing.T, p path) {
		for i, j := range jobs {
			want, err := hex.DecodeString(lines[i])
			if err != nil {
				t.Fatal(err)
			}
			c := mustNew(t, j.key, p)
			got := make([]byte, len(j.data))
			if err := c.EncryptSectors(got, j.data, j.ss, j.tweak, j.step); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("job %d (key %d bytes, sector %d, tweak %#x, step %#x): differs from OpenSSL",
					i, len(j.key), j.ss, j.tweak, j.step)
			}
			if err := c.DecryptSectors(got, want, j.ss, j.tweak, j.step); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, j.data) {
				t.Fatalf("job %d: decrypting OpenSSL's ciphertext differs", i)
			}
		}
	})
}
