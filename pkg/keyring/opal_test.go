package keyring

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFormatOpal writes cryptsetup 2.7's hw-opal-crypt and hw-opal
// segments: the opal fields, the "opal" requirement, the HW-OPAL subsystem
// and a volume key of range key plus crypt key.
func TestFormatOpal(t *testing.T) {
	t.Parallel()
	for _, only := range []bool{false, true} {
		path := newBacking(t, 32<<20)
		op := &OpalSegment{Number: 1, KeySize: 32, Size: 16 << 20, Only: only}
		k, dek := formatPath(t, path, passphrase(t, "opal"), &FormatOptions{KDF: fastKDF, Opal: op})
		wantType, wantLen := "hw-opal-crypt", 32+64
		if only {
			wantType, wantLen = "hw-opal", 32
		}
		if len(dek) != wantLen {
			t.Fatalf("%s: volume key of %d bytes, want %d", wantType, len(dek), wantLen)
		}
		k2, err := Open(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		segs := k2.Segments()
		if len(segs) != 1 {
			t.Fatalf("%d segments", len(segs))
		}
		s := segs[0]
		if s.Type != wantType || s.Offset != 16<<20 || s.Size != 16<<20 || s.Dynamic || s.OpalSegmentNumber != 1 || s.OpalKeySize != 32 || s.OpalSegmentSize != 16<<20 {
			t.Fatalf("segment %+v", s)
		}
		if !only && (s.Encryption != "aes-xts-plain64" || s.SectorSize != 512) {
			t.Fatalf("crypt fields %+v", s)
		}
		if only && s.Encryption != "" {
			t.Fatalf("hw-opal with encryption %q", s.Encryption)
		}
		if r := k2.Config().Requirements; len(r) != 1 || r[0] != "opal" || k2.Subsystem() != "HW-OPAL" {
			t.Fatalf("requirements %v subsystem %q", r, k2.Subsystem())
		}
		got, err := k2.Unlock(context.Background(), passphrase(t, "opal"))
		if err != nil {
			t.Fatal(err)
		}
		if string(got.Bytes()) != string(dek) {
			t.Fatal("unlocked a different volume key")
		}
		got.Destroy()
		if _, err := k2.DataSegment(); err == nil {
			t.Fatal("encblk claims to serve a hw-opal segment in software")
		}
		k.Close()
		k2.Close()
	}
	// Options that cryptsetup would refuse.
	for _, op := range []*OpalSegment{{Number: 0, KeySize: 32, Size: 1 << 20}, {Number: 1, KeySize: 33, Size: 1 << 20},
		{Number: 1, KeySize: 32, Size: 100}, {Number: 1, KeySize: 32, Size: 64 << 20}} {
		f, err := os.OpenFile(newBacking(t, 32<<20), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := Format(context.Background(), f, passphrase(t, "x"), &FormatOptions{KDF: fastKDF, Opal: op}); err == nil {
			t.Errorf("%+v accepted", *op)
		}
		f.Close()
	}
}

// TestFormatOpalCryptsetupParses: cryptsetup (2.6 here, which predates
// OPAL) must still read the header and show the segment and requirement;
// that it refuses to open it is right, since it cannot drive the range.
func TestFormatOpalCryptsetupParses(t *testing.T) {
	t.Parallel()
	path := newBacking(t, 32<<20)
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte("opal-key"), 0o600); err != nil {
		t.Fatal(err)
	}
	kf, err := openKeyFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	defer kf.Destroy()
	formatPath(t, path, kf, &FormatOptions{KDF: fastKDF, Opal: &OpalSegment{Number: 2, KeySize: 32, Size: 8 << 20}})
	out := cryptsetup(t, "", "luksDump", path)
	for _, want := range []string{"hw-opal-crypt", "opal"} {
		if !strings.Contains(out, want) {
			t.Errorf("luksDump lacks %q:\n%s", want, out)
		}
	}
}
