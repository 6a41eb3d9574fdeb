package keyring

import (
	"bytes"
	"context"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"hash"
	"os"
	"strings"
	"testing"
)

func TestPBKDF2MatchesStdlib(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		h    func() hash.Hash
		n    int
	}{{"sha1", sha1.New, 20}, {"sha256", sha256.New, 64}, {"sha512", sha512.New, 100}} {
		want, err := pbkdf2.Key(tc.h, "password", []byte("salt"), 7, tc.n)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, tc.n)
		pbkdf2Key(got, []byte("password"), []byte("salt"), 7, tc.h)
		if !bytes.Equal(got, want) {
			t.Errorf("%s: pbkdf2 mismatch", tc.name)
		}
	}
}

func TestAFRoundTrip(t *testing.T) {
	t.Parallel()
	for _, n := range []int{16, 32, 33, 64} {
		key := bytes.Repeat([]byte{0xa5}, n)
		buf := make([]byte, n*afStripes)
		if err := afSplit(buf, key, afStripes, sha256.New); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, n)
		if err := afMerge(got, buf, afStripes, sha256.New); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, key) {
			t.Fatalf("key of %d bytes: AF round trip failed", n)
		}
		buf[0] ^= 1
		afMerge(got, buf, afStripes, sha256.New)
		if bytes.Equal(got, key) {
			t.Fatalf("key of %d bytes: a damaged stripe still merged to the key", n)
		}
	}
}

func TestFormatUnlock(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts FormatOptions
	}{
		{"pbkdf2-512", FormatOptions{KDF: fastKDF}},
		{"argon2id-4096", FormatOptions{KDF: fastArgon, SectorSize: 4096}},
		{"argon2i-256bit", FormatOptions{KDF: KDFParams{Type: "argon2i", Iterations: 4, MemoryKiB: 32, Parallel: 2}, KeySize: 32}},
		{"sha512-64k-metadata-discards", FormatOptions{KDF: KDFParams{Type: "pbkdf2", Hash: "sha512", Iterations: 1000}, MetadataSize: 64 << 10, AllowDiscards: true, Label: "data"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := newBacking(t, 20<<20)
			_, dek := formatPath(t, path, passphrase(t, "correct horse"), &tc.opts)
			k := openPath(t, path)
			if got := unlockBytes(t, k, passphrase(t, "correct horse")); !bytes.Equal(got, dek) {
				t.Fatal("unlocked DEK differs from the formatted one")
			}
			if _, err := k.Unlock(context.Background(), passphrase(t, "wrong")); !errors.Is(err, ErrNoMatchingKeyslot) {
				t.Fatalf("wrong passphrase: got %v, want ErrNoMatchingKeyslot", err)
			}
			seg, err := k.DataSegment()
			if err != nil {
				t.Fatal(err)
			}
			wantSector := max(tc.opts.SectorSize, 512)
			if seg.Offset != 16<<20 || seg.SectorSize != wantSector || !seg.Dynamic || seg.Encryption != "aes-xts-plain64" {
				t.Errorf("segment = %+v", seg)
			}
			if k.KeyBits() != len(dek)*8 {
				t.Errorf("KeyBits = %d, want %d", k.KeyBits(), len(dek)*8)
			}
			if k.AllowDiscards() != tc.opts.AllowDiscards {
				t.Errorf("AllowDiscards = %v", k.AllowDiscards())
			}
			if k.Label() != tc.opts.Label {
				t.Errorf("Label = %q", k.Label())
			}
		})
	}
}

func TestKeyFileTrailingNewlineIsData(t *testing.T) {
	t.Parallel()
	path := newBacking(t, 17<<20)
	kf, err := secretOf([]byte("key\n"))
	if err != nil {
		t.Fatal(err)
	}
	defer kf.Destroy()
	formatPath(t, path, kf, &FormatOptions{KDF: fastKDF})
	k := openPath(t, path)
	if _, err := k.Unlock(context.Background(), passphrase(t, "key")); !errors.Is(err, ErrNoMatchingKeyslot) {
		t.Fatalf("key without its newline opened the volume: %v", err)
	}
	unlockBytes(t, k, kf)
}

func TestOpenRejectsGarbage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrNotLUKS},
		{"zeros", make([]byte, 64<<10), ErrNotLUKS},
		{"magic only", append([]byte("LUKS\xba\xbe\x00\x02"), make([]byte, 100)...), ErrCorrupt},
	} {
		path := newBacking(t, 0)
		if err := os.WriteFile(path, tc.data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(path, nil); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
}

// RemoveKeyslots drops several keyslots in one commit and refuses to drop
// every keyslot that opens the volume.
func TestRemoveKeyslots(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := newBacking(t, 17<<20)
	k, dek := formatPath(t, path, passphrase(t, "a"), &FormatOptions{KDF: fastKDF})
	buf, err := secmemFrom(dek)
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Destroy()
	slots := map[string]int{"a": 0}
	for _, p := range []string{"b", "c"} {
		if slots[p], err = k.AddKeyslot(ctx, buf, passphrase(t, p), &KeyslotOptions{KDF: fastKDF}); err != nil {
			t.Fatal(err)
		}
	}
	seq := k.SeqID()
	if err := k.RemoveKeyslots(ctx, []int{slots["a"], slots["b"], slots["c"]}); err == nil || !strings.Contains(err.Error(), "use erase") {
		t.Fatalf("removing every keyslot: %v", err)
	}
	if err := k.RemoveKeyslots(ctx, []int{slots["a"], 9}); !errors.Is(err, ErrKeyslotNotFound) {
		t.Fatalf("removing a missing keyslot: %v", err)
	}
	if k.SeqID() != seq || len(k.Keyslots()) != 3 {
		t.Fatal("a refused removal changed the header")
	}
	if err := k.RemoveKeyslots(ctx, []int{slots["a"], slots["c"]}); err != nil {
		t.Fatal(err)
	}
	if k.SeqID() != seq+1 {
		t.Fatalf("seqid %d after one removal from %d: want one commit", k.SeqID(), seq)
	}
	k = openPath(t, path)
	for p, want := range map[string]error{"a": ErrNoMatchingKeyslot, "b": nil, "c": ErrNoMatchingKeyslot} {
		dek, err := k.Unlock(ctx, passphrase(t, p))
		if !errors.Is(err, want) {
			t.Errorf("passphrase %s: %v, want %v", p, err, want)
		}
		if err == nil {
			dek.Destroy()
		}
	}
}
