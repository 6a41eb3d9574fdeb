package seal

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
)

// fast keeps tests quick; the format does not depend on the costs.
var fast = Params{Time: 1, MemoryKiB: 64, Threads: 1}

func sealBytes(t testing.TB, pt, pass []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := Seal(&out, bytes.NewReader(pt), pass, fast); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, chunkSize - 1, chunkSize, chunkSize + 1, 3*chunkSize + 17} {
		pt := make([]byte, n)
		rand.Read(pt)
		sealed := sealBytes(t, pt, []byte("pass"))
		if want := headerLen + n + 16*max(1, (n+chunkSize-1)/chunkSize); len(sealed) != want {
			t.Errorf("%d bytes sealed into %d, want %d", n, len(sealed), want)
		}
		if !IsSealed(sealed) || bytes.Contains(sealed, pt[:min(n, 64)]) && n >= 16 {
			t.Errorf("%d bytes: not sealed, or plaintext visible", n)
		}
		var out bytes.Buffer
		if err := Open(&out, bytes.NewReader(sealed), []byte("pass")); err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if !bytes.Equal(out.Bytes(), pt) {
			t.Fatalf("%d bytes: round trip differs", n)
		}
	}
}

func TestOpenRefuses(t *testing.T) {
	t.Parallel()
	pt := make([]byte, 2*chunkSize+5)
	rand.Read(pt)
	sealed := sealBytes(t, pt, []byte("pass"))
	flip := func(off int) []byte {
		b := bytes.Clone(sealed)
		b[off] ^= 1
		return b
	}
	cases := []struct {
		name  string
		input []byte
		pass  string
		want  error
	}{
		{"wrong passphrase", sealed, "Pass", ErrWrongPassphrase},
		{"plain file", pt, "pass", ErrNotSealed},
		{"empty", nil, "pass", ErrNotSealed},
		{"short header", sealed[:30], "pass", ErrCorrupt},
		{"salt changed", flip(30), "pass", ErrWrongPassphrase},
		{"cost changed", flip(24), "pass", ErrWrongPassphrase},
		{"huge memory", func() []byte { b := bytes.Clone(sealed); b[21] = 0xff; return b }(), "pass", ErrCorrupt},
		{"unknown KDF", flip(16), "pass", ErrCorrupt},
		{"first chunk changed", flip(headerLen + 3), "pass", ErrWrongPassphrase},
		{"second chunk changed", flip(headerLen + chunkSize + 16 + 3), "pass", ErrCorrupt},
		{"last chunk dropped", sealed[:headerLen+2*(chunkSize+16)], "pass", ErrCorrupt},
		{"truncated mid-chunk", sealed[:len(sealed)-3], "pass", ErrCorrupt},
		{"trailing data", append(bytes.Clone(sealed), 0), "pass", ErrCorrupt},
	}
	for _, tc := range cases {
		var out bytes.Buffer
		if err := Open(&out, bytes.NewReader(tc.input), []byte(tc.pass)); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestSealRefusesWeakParams(t *testing.T) {
	t.Parallel()
	for _, p := range []Params{{0, 64, 1}, {1, 4, 1}, {1, 64, 0}, {1, 8 << 20, 1}} {
		if err := Seal(&bytes.Buffer{}, bytes.NewReader(nil), []byte("x"), p); err == nil {
			t.Errorf("Seal with %+v succeeded", p)
		}
	}
}

// FuzzOpen checks that opening never panics and that a file it accepts
// really was sealed with the passphrase (the only one the fuzzer can
// produce is the seed's, unmodified).
func FuzzOpen(f *testing.F) {
	f.Add(sealBytes(f, []byte("header backup"), []byte("pass")))
	f.Add(sealBytes(f, nil, []byte("pass")))
	f.Add([]byte(Magic))
	small := Params{Time: 2, MemoryKiB: 256, Threads: 2}
	f.Fuzz(func(t *testing.T, b []byte) {
		var out bytes.Buffer
		err := open(&out, bytes.NewReader(b), []byte("pass"), small)
		if err == nil && !IsSealed(b) {
			t.Fatal("opened an input without the magic")
		}
	})
}
