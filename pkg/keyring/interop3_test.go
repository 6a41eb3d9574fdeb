package keyring

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Detached headers work both ways, with every metadata size cryptsetup
// accepts at the edges (16 KiB and 4 MiB).
func TestInteropDetachedHeader(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyFile := writeFile(t, []byte("detached"))
	data := newBacking(t, 4<<20)

	// cryptsetup makes it, encblk opens it.
	theirs := filepath.Join(dir, "theirs.hdr")
	cryptsetup(t, "", "luksFormat", "--type", "luks2", "--batch-mode", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
		"--key-file", keyFile, "--header", theirs, "--luks2-metadata-size", "4m", data)
	want := dumpVolumeKey(t, theirs, keyFile)
	k := openPath(t, theirs)
	if k.MetadataSize() != 4<<20 {
		t.Errorf("metadata size %d, want 4 MiB", k.MetadataSize())
	}
	if got := unlockBytes(t, k, passphrase(t, "detached")); !bytes.Equal(got, want) {
		t.Fatal("DEK mismatch on cryptsetup's detached header")
	}
	if seg, err := k.DataSegment(); err != nil || seg.Offset != 0 {
		t.Fatalf("segment %+v, %v", seg, err)
	}

	// encblk makes it (the header file grows as needed), cryptsetup opens it.
	ours := filepath.Join(dir, "ours.hdr")
	f, err := os.Create(ours)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, dek, err := Format(context.Background(), f, passphrase(t, "detached"), &FormatOptions{KDF: fastKDF, Detached: true})
	if err != nil {
		t.Fatal(err)
	}
	defer dek.Destroy()
	if got := dumpVolumeKey(t, ours, keyFile); !bytes.Equal(got, dek.Bytes()) {
		t.Fatal("cryptsetup's DEK from encblk's detached header differs")
	}
	dataBefore, _ := os.ReadFile(data)
	if !bytes.Equal(dataBefore, make([]byte, len(dataBefore))) {
		t.Error("formatting a detached header wrote to the data device")
	}
}

// Tokens of other tools survive encblk's rewrites and encblk's tokens
// survive cryptsetup's; a Recipient's tokens are bound to its keyslot and
// an Identity sees them.
func TestTokens(t *testing.T) {
	t.Parallel()
	path := newBacking(t, 20<<20)
	keyFile := writeFile(t, []byte("kek"))
	k, _ := formatPath(t, path, passphrase(t, "kek"), &FormatOptions{KDF: fastKDF})

	// A foreign token with fields encblk does not know, imported by cryptsetup.
	foreign := `{"type":"acme-hsm","keyslots":["0"],"hsm-slot":[7],"blob":"AAEC","nested":{"a":[1,2,{"b":null}]}}`
	tokFile := writeFile(t, []byte(foreign))
	cryptsetup(t, "", "token", "import", "--json-file", tokFile, path)

	// encblk rewrites the metadata (a new keyslot with a token of its own).
	k = openPath(t, path)
	dek, err := k.Unlock(context.Background(), passphrase(t, "kek"))
	if err != nil {
		t.Fatal(err)
	}
	defer dek.Destroy()
	r := &tokenRecipient{Secret: passphrase(t, "kmip secret"), token: `{"type":"encblk-kmip","server":"kms:5696","uid":"42"}`}
	slot, err := k.AddKeyslot(context.Background(), dek, r, &KeyslotOptions{KDF: fastKDF})
	if err != nil {
		t.Fatal(err)
	}

	// cryptsetup still has the foreign token, unchanged in meaning.
	exported := cryptsetup(t, "", "token", "export", "--token-id", "0", path)
	if !sameJSON(t, exported, foreign) {
		t.Errorf("foreign token changed:\n got %s\nwant %s", exported, foreign)
	}
	// cryptsetup rewrites (adds a keyslot); encblk's token survives.
	cryptsetup(t, "", "luksAddKey", "--batch-mode", "--key-file", keyFile, "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", path, writeFile(t, []byte("third")))
	k = openPath(t, path)
	var ours *Token
	for _, tok := range k.Tokens() {
		if tok.Type == "encblk-kmip" {
			ours = &tok
		}
	}
	if ours == nil || len(ours.Keyslots) != 1 || ours.Keyslots[0] != slot || !strings.Contains(string(ours.Raw), `"uid":"42"`) {
		t.Fatalf("encblk token after cryptsetup's rewrite: %+v", ours)
	}

	// The identity for that slot sees its token.
	id := &tokenIdentity{Secret: passphrase(t, "kmip secret")}
	if _, err := k.Unlock(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if id.sawType != "encblk-kmip" {
		t.Errorf("identity saw token type %q", id.sawType)
	}

	// Removing the slot removes encblk's token but keeps the foreign one.
	if err := k.RemoveKeyslot(context.Background(), slot); err != nil {
		t.Fatal(err)
	}
	for _, tok := range k.Tokens() {
		if tok.Type == "encblk-kmip" {
			t.Error("encblk token of a removed keyslot is still there")
		}
	}
	if len(k.Tokens()) != 1 {
		t.Errorf("tokens after removal: %+v", k.Tokens())
	}

	// Token API: add, assign, remove; bad tokens are refused.
	id2, err := k.AddToken(json.RawMessage(`{"type":"encblk-note","keyslots":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := k.AssignToken(id2, 0); err != nil {
		t.Fatal(err)
	}
	if err := k.AssignToken(id2, 9); err == nil {
		t.Error("assigning a token to a missing keyslot succeeded")
	}
	if _, err := k.AddToken(json.RawMessage(`{"keyslots":[]}`)); err == nil {
		t.Error("token without a type accepted")
	}
	if _, err := k.AddToken(json.RawMessage(`{"type":"x","keyslots":["77"]}`)); err == nil {
		t.Error("token with a bad keyslot id accepted")
	}
	if err := k.RemoveToken(id2); err != nil {
		t.Fatal(err)
	}
	cryptsetup(t, "", "luksDump", path)
}

type tokenRecipient struct {
	*Secret
	token string
}

func (r *tokenRecipient) Wrap(ctx context.Context) (secretBuf, []json.RawMessage, error) {
	s, _, err := r.Secret.Wrap(ctx)
	return s, []json.RawMessage{json.RawMessage(r.token)}, err
}

type tokenIdentity struct {
	*Secret
	sawType string
}

func (i *tokenIdentity) Unwrap(ctx context.Context, ks *Keyslot) (secretBuf, error) {
	if len(ks.Tokens) == 0 {
		return nil, ErrNoMatchingKeyslot
	}
	i.sawType = ks.Tokens[0].Type
	return i.Secret.Unwrap(ctx, ks)
}

func sameJSON(t *testing.T, a, b string) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal([]byte(a), &x); err != nil {
		t.Fatalf("%v: %s", err, a)
	}
	if err := json.Unmarshal([]byte(b), &y); err != nil {
		t.Fatal(err)
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return bytes.Equal(xb, yb)
}

// A volume in the middle of a cryptsetup re-encryption carries a mandatory
// requirement encblk does not implement: dump works, unlocking and serving
// are refused clearly, and nothing is written.
func TestInteropUnknownRequirement(t *testing.T) {
	t.Parallel()
	path := newBacking(t, 40<<20)
	keyFile := writeFile(t, []byte("k"))
	cryptsetup(t, "", "luksFormat", "--type", "luks2", "--batch-mode", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", keyFile, path)
	cryptsetup(t, "", "reencrypt", "--init-only", "--batch-mode", "--key-file", keyFile, "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", path)
	before, _ := os.ReadFile(path)
	k := openPath(t, path)
	if reqs := k.Config().Requirements; len(reqs) != 1 || reqs[0] != "online-reencrypt-v2" {
		t.Errorf("requirements %v", reqs)
	}
	if len(k.Segments()) < 2 || len(k.Keyslots()) < 3 {
		t.Errorf("segments %d, keyslots %d", len(k.Segments()), len(k.Keyslots()))
	}
	if _, err := k.Unlock(context.Background(), passphrase(t, "k")); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "online-reencrypt-v2") {
		t.Fatalf("Unlock: %v", err)
	}
	if _, err := k.DataSegment(); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("DataSegment: %v", err)
	}
	if _, err := k.AddKeyslot(context.Background(), nil, passphrase(t, "x"), &KeyslotOptions{KDF: fastKDF}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("AddKeyslot: %v", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("a refused operation changed the volume")
	}
}

// hw-opal segments (cryptsetup 2.7 SED volumes) are parsed; serving them
// is refused with a message naming the segment type.
func TestOpalSegmentParsed(t *testing.T) {
	t.Parallel()
	text := `{"keyslots":{},"tokens":{},"segments":{"0":{"type":"hw-opal-crypt","offset":"16777216","size":"1048576",
	"iv_tweak":"0","encryption":"aes-xts-plain64","sector_size":4096,"opal_segment_number":1,"opal_key_size":32,
	"opal_segment_size":"2048"}},"digests":{},"config":{"json_size":"12288","keyslots_size":"16744448",
	"requirements":{"mandatory":["opal"]}}}`
	dev := sealHeader(t, []byte(text))
	k, err := openDevice(&memDevice{b: dev}, true)
	if err != nil {
		t.Fatal(err)
	}
	segs := k.Segments()
	if len(segs) != 1 || segs[0].Type != "hw-opal-crypt" || segs[0].OpalSegmentNumber != 1 || segs[0].OpalKeySize != 32 || segs[0].OpalSegmentSize != 2048 || segs[0].Size != 1<<20 {
		t.Fatalf("segments %+v", segs)
	}
	if _, err := k.DataSegment(); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), `"hw-opal-crypt"`) {
		t.Fatalf("DataSegment: %v", err)
	}
}

// sealHeader builds a 16 KiB two-copy LUKS2 header around JSON text.
func sealHeader(t testing.TB, text []byte) []byte {
	t.Helper()
	dev := make([]byte, 2*minHdrSize)
	for i := range 2 {
		h := binHeader{Secondary: i == 1, HdrSize: minHdrSize, SeqID: 1, ChecksumAlg: "sha256", UUID: "test"}
		if h.Secondary {
			h.HdrOffset = minHdrSize
		}
		c, err := h.encodeCopy(text)
		if err != nil {
			t.Fatal(err)
		}
		copy(dev[i*minHdrSize:], c)
	}
	return dev
}

// Benchmarked KDF parameters respect cryptsetup's minimums (no timing is
// asserted).
func TestKDFBenchmark(t *testing.T) {
	t.Parallel()
	for _, p := range []KDFParams{
		{Type: "pbkdf2", IterTime: 20e6},
		{Type: "argon2id", MemoryKiB: 256, IterTime: 20e6},
		{Type: "argon2i", MemoryKiB: 256, Parallel: 1, IterTime: 1},
	} {
		k, err := p.resolve(context.Background(), 64)
		if err != nil {
			t.Fatal(err)
		}
		switch k.Type {
		case "pbkdf2":
			if k.Iterations < minPBKDF2Iterations || k.Hash != "sha256" {
				t.Errorf("%+v", k)
			}
		default:
			if k.Iterations < minArgonTime || k.MemoryKiB < minArgonMemoryKiB || k.Parallel < 1 || k.Parallel > 4 {
				t.Errorf("%+v", k)
			}
		}
		if len(k.Salt) != kdfSaltLen {
			t.Errorf("salt of %d bytes", len(k.Salt))
		}
	}
}
