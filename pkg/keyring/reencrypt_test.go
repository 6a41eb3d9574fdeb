package keyring

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/encblk/encblk/pkg/xts"
)

const reencryptFixtures = "testdata/reencrypt"

// fixtureImage unpacks a cryptsetup-made fixture into a temporary file.
func fixtureImage(t *testing.T, name string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".img")
	if err := os.WriteFile(path, gunzipFixture(t, name+".img.gz"), 0o666); err != nil {
		t.Fatal(err)
	}
	return path
}

func fixtureKey(t *testing.T) *Secret {
	t.Helper()
	k, err := openKeyFile(filepath.Join(reencryptFixtures, "key"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Destroy)
	return k
}

func fixtureSHA(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(reencryptFixtures, name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// plaintextSHA decrypts the data segment of the plain LUKS2 volume at path
// with dek and returns the sha256 of the plaintext.
func plaintextSHA(t *testing.T, path string, dek []byte) string {
	t.Helper()
	k, err := Open(path, &Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	seg, err := k.DataSegment()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	buf := data[seg.Offset:]
	c, err := xts.New(dek)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.DecryptSectors(buf, buf, seg.SectorSize, seg.IVTweak, uint64(seg.SectorSize/512)); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:])
}

// runReencryption resumes the reencryption at path to its end.
func runReencryption(t *testing.T, path string, id Identity, opts *ReencryptOptions) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	k, err := OpenFile(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := k.OpenReencryption(context.Background(), []Identity{id}, f, uint64(fi.Size()), opts)
	if err != nil {
		t.Fatalf("OpenReencryption: %v", err)
	}
	defer rc.Close()
	for !rc.Done() {
		if err := rc.Step(); err != nil {
			t.Fatalf("Step: %v", err)
		}
	}
	if err := rc.Finish(); err != nil {
		t.Fatalf("Finish: %v", err)
	}
}

// The fixtures parse, report the state cryptsetup left, verify, and
// encblk finishes each; the plaintext is the one they were made with.
func TestReencryptCryptsetupFixtures(t *testing.T) {
	t.Parallel()
	want := fixtureSHA(t, "plaintext.sha256")
	for _, c := range []struct {
		name     string
		crashed  bool
		progress uint64
	}{
		{"reencrypt-init", false, 0},
		{"reencrypt-clean", false, 128 << 10},
		{"reencrypt-crash", true, 64 << 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			path := fixtureImage(t, c.name)
			k, err := Open(path, &Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			r, err := k.Reencryption()
			if err != nil || r == nil {
				t.Fatalf("Reencryption: %v, %v", r, err)
			}
			if r.Mode != "reencrypt" || r.Direction != "forward" || r.Resilience != "checksum" || r.Hash != "sha256" || r.HashBlock != 4096 {
				t.Fatalf("reencryption %+v", r)
			}
			if r.Crashed() != c.crashed {
				t.Fatalf("crashed %v, want %v", r.Crashed(), c.crashed)
			}
			if c.crashed && r.Hot.Offset-r.New.Offset != c.progress {
				t.Fatalf("hot zone at %d, want %d", r.Hot.Offset-r.New.Offset, c.progress)
			}
			if !c.crashed {
				k.mu.Lock()
				got := k.meta.progressOf(r, 256<<10)
				k.mu.Unlock()
				if got != c.progress {
					t.Fatalf("progress %d, want %d", got, c.progress)
				}
			}
			// A reader that only unlocks must refuse the volume.
			if _, err := k.Unlock(context.Background(), fixtureKey(t)); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "online-reencrypt-v2") {
				t.Fatalf("Unlock during reencryption: %v", err)
			}
			k.Close()

			runReencryption(t, path, fixtureKey(t), nil)
			k, err = Open(path, &Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer k.Close()
			if r, err := k.Reencryption(); r != nil || err != nil {
				t.Fatalf("after finishing: %v, %v", r, err)
			}
			if n := len(k.Keyslots()); n != 1 {
				t.Fatalf("%d keyslots after finishing, want 1", n)
			}
			dek, err := k.Unlock(context.Background(), fixtureKey(t))
			if err != nil {
				t.Fatal(err)
			}
			defer dek.Destroy()
			if got := plaintextSHA(t, path, dek.Bytes()); got != want {
				t.Fatalf("plaintext sha256 %s, want %s", got, want)
			}
		})
	}
}

// Metadata changed without the keys is refused: the verification digest
// binds the reencrypt keyslot and the backup segments (CVE-2021-4122).
func TestReencryptDigestBindsMetadata(t *testing.T) {
	t.Parallel()
	for _, edit := range []struct{ from, to string }{
		{`"direction":"forward"`, `"direction":"backward"`},
		{`"sector_size":4096,"flags":["backup-final"]`, `"sector_size":512,"flags":["backup-final"]`},
		{`"hash":"sha256","sector_size":4096`, `"hash":"sha256","sector_size":512`},
	} {
		path := fixtureImage(t, "reencrypt-clean")
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		k, err := OpenFile(f, nil)
		if err != nil {
			t.Fatal(err)
		}
		text, _ := k.meta.marshal()
		edited := strings.Replace(string(compactJSON(t, text)), edit.from, edit.to, 1)
		if edited == string(compactJSON(t, text)) {
			t.Fatalf("edit %q not applicable to %s", edit.from, text)
		}
		m, err := parseMetadata([]byte(edited), k.bin.HdrSize)
		if err != nil {
			t.Fatal(err)
		}
		k.mu.Lock()
		err = k.commit(m)
		k.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := f.Stat()
		_, err = k.OpenReencryption(context.Background(), []Identity{fixtureKey(t)}, f, uint64(fi.Size()), nil)
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("edit %s: OpenReencryption: %v, want ErrCorrupt", edit.to, err)
		}
		f.Close()
	}
}

// compactJSON re-encodes JSON text with sorted keys so edits can match.
func compactJSON(t *testing.T, text []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.Write(text)
	return buf.Bytes()
}

// FuzzReencryptMetadata feeds mutations of cryptsetup's reencryption
// metadata (the fixtures' JSON) through validation, the reencryption
// state, the segment builder and the verification-data serializer: only
// sentinel errors may come out, never a panic.
func FuzzReencryptMetadata(f *testing.F) {
	for _, name := range []string{"reencrypt-init", "reencrypt-clean", "reencrypt-crash", "encrypt-init"} {
		zf, err := os.Open(filepath.Join(reencryptFixtures, name+".img.gz"))
		if err != nil {
			f.Fatal(err)
		}
		zr, err := gzip.NewReader(zf)
		if err != nil {
			f.Fatal(err)
		}
		hdr := make([]byte, minHdrSize)
		if _, err := io.ReadFull(zr, hdr); err != nil {
			f.Fatal(err)
		}
		zf.Close()
		text, err := extractJSON(hdr[binHeaderSize:])
		if err != nil {
			f.Fatal(err)
		}
		f.Add(text)
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		m, err := parseMetadata(text, minHdrSize)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("parse: %v", err)
			}
			return
		}
		r, err := m.reencryption()
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("reencryption: %v", err)
			}
			return
		}
		if r == nil {
			return
		}
		key := make([]byte, 32)
		if d := m.keyslotDigest(r.Keyslot); d != nil && d.Iterations > 10000 {
			return // a mutated cost would only make the fuzzer slow
		}
		if err := m.verifyReencryptDigest(r, key, key); err == nil {
			t.Fatal("verification digest matched a zero key")
		} else if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) {
			t.Fatalf("verify: %v", err)
		}
		m.progressOf(r, 1<<30)
		if r.Old.Type == "crypt" && r.New.Type == "crypt" {
			if e, err := m.withSegments(m.layoutOf(r, 1<<30), 4096, 4096, false); err == nil {
				e.reparse(minHdrSize)
			}
		}
	})
}

// Refusals, nothing written: a hw-opal volume (the drive holds the data
// key), a second start, an unknown requirement next to the reencryption's.
func TestReencryptRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, only := range []bool{false, true} {
		path := newBacking(t, 40<<20)
		formatPath(t, path, passphrase(t, "opal"), &FormatOptions{KDF: fastKDF, Opal: &OpalSegment{Number: 1, KeySize: 32, Size: 8 << 20, Only: only}})
		k := openPath(t, path)
		seq := k.SeqID()
		if err := k.StartReencrypt(ctx, []Identity{passphrase(t, "opal")}, nil); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "drive holds the data key") {
			t.Fatalf("hw-opal (only %v): %v", only, err)
		}
		if k.SeqID() != seq {
			t.Fatal("metadata written by a refused start")
		}
	}

	path := fixtureImage(t, "reencrypt-init")
	k := openPath(t, path)
	if err := k.StartReencrypt(ctx, []Identity{fixtureKey(t)}, nil); !errors.Is(err, ErrReencryptInProgress) {
		t.Fatalf("second start: %v", err)
	}
	m := k.meta.clone()
	m.config["requirements"] = json.RawMessage(`{"mandatory":["online-reencrypt-v2","encblk-future"]}`)
	n, err := m.reparse(k.bin.HdrSize)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.reencryption(); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "encblk-future") {
		t.Fatalf("unknown requirement: %v", err)
	}

	// cryptsetup's in-place encryption (datashift, a moved first segment)
	// is read as recorded; TestEncryptCryptsetupFixture resumes it.
	path = fixtureImage(t, "encrypt-init")
	k = openPath(t, path)
	r, err := k.Reencryption()
	if err != nil || r == nil || r.Mode != "encrypt" || r.Direction != "backward" || r.Resilience != "datashift" ||
		r.ShiftSize != r.New.Offset || r.Moved == nil || r.OldDigest != -1 || r.Old.Type != "linear" {
		t.Fatalf("encrypt fixture: %+v, %v", r, err)
	}
	seq := k.SeqID()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := k.OpenReencryption(ctx, []Identity{passphrase(t, "wrong")}, f, 3<<20, nil); !errors.Is(err, ErrNoMatchingKeyslot) {
		t.Fatalf("resume of encrypt with a wrong KEK: %v", err)
	}
	if k.SeqID() != seq {
		t.Fatal("metadata written by a refused resume")
	}
}
