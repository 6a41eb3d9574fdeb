package agekek

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/encblk/encblk/internal/agekeys"
	"github.com/encblk/encblk/internal/kektest"
	"github.com/encblk/encblk/internal/testutil"
	"github.com/encblk/encblk/pkg/kek/passphrase"
	"github.com/encblk/encblk/pkg/keyring"
)

// newIdentity makes an identity with the real age-keygen and returns the
// file, the parsed identities and the recipient.
func newIdentity(t *testing.T) (string, []age.Identity, agekeys.Recipient) {
	t.Helper()
	keygen := testutil.RequireTool(t, "age-keygen", "age")
	path := filepath.Join(t.TempDir(), "host.key")
	testutil.Run(t, keygen, "-o", path)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ids, err := agekeys.ReadIdentities(f, path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := agekeys.ParseRecipient(strings.TrimSpace(string(testutil.Run(t, keygen, "-y", path))))
	if err != nil {
		t.Fatal(err)
	}
	return path, ids, r
}

// addSlot adds an age keyslot for rs to the volume at path.
func addSlot(t *testing.T, path string, rs ...agekeys.Recipient) int {
	t.Helper()
	kr := kektest.OpenKeyring(t, path)
	pass, _ := passphrase.New([]byte(kektest.Passphrase))
	defer pass.Destroy()
	dek, err := kr.Unlock(context.Background(), pass)
	if err != nil {
		t.Fatal(err)
	}
	defer dek.Destroy()
	var names []string
	for _, r := range rs {
		names = append(names, r.Text)
	}
	rcpt, err := NewRecipient(agekeys.Ages(rs), names)
	if err != nil {
		t.Fatal(err)
	}
	slot, err := kr.AddKeyslot(context.Background(), dek, rcpt, KeyslotOptions())
	if err != nil {
		t.Fatal(err)
	}
	return slot
}

// unlock opens the volume at path with ids.
func unlock(t *testing.T, path string, ids []age.Identity) (int, []byte, error) {
	t.Helper()
	kr := kektest.OpenKeyring(t, path)
	id, err := NewIdentity(ids)
	if err != nil {
		t.Fatal(err)
	}
	slot, dek, err := kr.Match(context.Background(), id)
	if err != nil {
		return slot, nil, err
	}
	defer dek.Destroy()
	return slot, bytes.Clone(dek.Bytes()), nil
}

// tokenOf returns the id and the JSON of the encblk-age token bound to
// slot, as cryptsetup exports it.
func tokenOf(t *testing.T, path string, slot int) (int, []byte) {
	t.Helper()
	cryptsetup := testutil.RequireTool(t, "cryptsetup", "cryptsetup-bin")
	kr, err := keyring.Open(path, &keyring.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer kr.Close()
	for _, tok := range kr.Tokens() {
		if tok.Type == TokenType && len(tok.Keyslots) == 1 && tok.Keyslots[0] == slot {
			return tok.ID, testutil.Run(t, cryptsetup, "token", "export", "--token-id", strconv.Itoa(tok.ID), path)
		}
	}
	t.Fatalf("no %s token bound to keyslot %d", TokenType, slot)
	return 0, nil
}

// The age keyslot end to end, with cryptsetup and age as judges: the token
// that encblk writes is one cryptsetup lists and exports, whose age file
// the real age opens into the key file cryptsetup opens the keyslot with;
// encblk opens it with the identity and with nothing else; cryptsetup's
// own header updates keep it; removing the keyslot removes it.
func TestAgeKeyslot(t *testing.T) {
	t.Parallel()
	cryptsetup := testutil.RequireTool(t, "cryptsetup", "cryptsetup-bin")
	ageTool := testutil.RequireTool(t, "age", "age")
	keyFile, ids, rcpt := newIdentity(t)
	_, otherIDs, other := newIdentity(t)
	path, dek := kektest.Volume(t)
	slot := addSlot(t, path, rcpt)

	got, err := func() ([]byte, error) { _, d, err := unlock(t, path, ids); return d, err }()
	if err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("unlock with the identity: %v", err)
	}
	if _, _, err := unlock(t, path, otherIDs); !errors.Is(err, keyring.ErrNoMatchingKeyslot) {
		t.Fatalf("unlock with another identity: %v, want ErrNoMatchingKeyslot", err)
	}

	// cryptsetup shows the token, bound to the keyslot.
	dump := string(testutil.Run(t, cryptsetup, "luksDump", path))
	id, raw := tokenOf(t, path, slot)
	if !strings.Contains(dump, strconv.Itoa(id)+": "+TokenType) {
		t.Fatalf("luksDump does not show the token:\n%s", dump)
	}
	var tok Token
	if err := json.Unmarshal(raw, &tok); err != nil {
		t.Fatal(err)
	}
	if len(tok.Recipients) != 1 || tok.Recipients[0] != rcpt.Text {
		t.Fatalf("token recipients %q, want %q", tok.Recipients, rcpt.Text)
	}
	// age opens the token's file; cryptsetup opens the keyslot with it.
	dir := t.TempDir()
	armored := filepath.Join(dir, "token.age")
	if err := os.WriteFile(armored, []byte(tok.File), 0o600); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "secret")
	testutil.Run(t, ageTool, "-d", "-i", keyFile, "-o", secret, armored)
	out := testutil.Run(t, cryptsetup, "luksDump", "--batch-mode", "--dump-volume-key", "--key-slot", strconv.Itoa(slot), "--key-file", secret, path)
	if !bytes.Equal(testutil.VolumeKey(t, string(out)), dek) {
		t.Fatal("cryptsetup's volume key through the age token differs")
	}

	// cryptsetup changes the header (a new keyslot): the token stays, and
	// still opens the keyslot.
	pass := filepath.Join(dir, "pass")
	os.WriteFile(pass, []byte("correct horse"), 0o600)
	testutil.Run(t, cryptsetup, "luksAddKey", "--batch-mode", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
		"--key-file", pass, path, secret)
	if s, got, err := unlock(t, path, ids); err != nil || s != slot || !bytes.Equal(got, dek) {
		t.Fatalf("after cryptsetup luksAddKey: keyslot %d, %v", s, err)
	}

	// A second keyslot for two recipients: either identity opens it.
	slot2 := addSlot(t, path, other, rcpt)
	if s, _, err := unlock(t, path, otherIDs); err != nil || s != slot2 {
		t.Fatalf("second keyslot with the other identity: keyslot %d, %v", s, err)
	}

	// Removing the keyslot removes its token.
	kr, err := keyring.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := kr.RemoveKeyslot(context.Background(), slot2); err != nil {
		t.Fatal(err)
	}
	for _, tok := range kr.Tokens() {
		if tok.Type == TokenType && (len(tok.Keyslots) != 1 || tok.Keyslots[0] != slot) {
			t.Fatalf("token %d bound to %v is left", tok.ID, tok.Keyslots)
		}
	}
	kr.Close()
	if _, _, err := unlock(t, path, otherIDs); !errors.Is(err, keyring.ErrNoMatchingKeyslot) {
		t.Fatalf("the removed keyslot's identity: %v", err)
	}
}

// A damaged token is ErrBadToken: the header is the same, nothing opens.
func TestDamagedToken(t *testing.T) {
	t.Parallel()
	_, ids, rcpt := newIdentity(t)
	secret := bytes.Repeat([]byte{7}, secretLen)
	raw, err := sealSecret(secret, []age.Recipient{rcpt.Recipient}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ParseToken(raw)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, secretLen)
	if err := tok.open(got, ids); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("open: %v", err)
	}
	lines := strings.Split(tok.File, "\n")
	for _, tc := range []struct {
		name string
		file string
	}{
		{"truncated", strings.Join(lines[:len(lines)-3], "\n") + "\n-----END AGE ENCRYPTED FILE-----\n"},
		{"a changed character", strings.Replace(tok.File, lines[1][:10], flip(lines[1][:10]), 1)},
		{"not base64", strings.Replace(tok.File, lines[1][:4], "!!!!", 1)},
		{"no end line", strings.Join(lines[:len(lines)-2], "\n")},
	} {
		bad := *tok
		bad.File = tc.file
		err := bad.open(got, ids)
		if !errors.Is(err, ErrBadToken) && !errors.Is(err, errNotMine) {
			t.Errorf("%s: %v, want ErrBadToken", tc.name, err)
		}
	}
	// A longer or shorter secret is refused too.
	for _, n := range []int{secretLen - 1, secretLen + 1} {
		raw, _ := sealSecret(make([]byte, n), []age.Recipient{rcpt.Recipient}, nil)
		tok, _ := ParseToken(raw)
		if err := tok.open(got, ids); !errors.Is(err, ErrBadToken) {
			t.Errorf("a %d-byte secret: %v", n, err)
		}
	}
}

// flip changes the first character of a base64 string to another.
func flip(s string) string {
	if s[0] == 'A' {
		return "B" + s[1:]
	}
	return "A" + s[1:]
}

func TestParseToken(t *testing.T) {
	t.Parallel()
	good := `{"type":"encblk-age","keyslots":["1"],"encblk_age_version":1,"recipients":[],"age":"-----BEGIN AGE ENCRYPTED FILE-----\nx\n"}`
	if _, err := ParseToken([]byte(good)); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		`[]`,
		`{"type":"encblk-kmip","encblk_age_version":1,"age":"-----BEGIN AGE ENCRYPTED FILE-----\n"}`,
		`{"type":"encblk-age","encblk_age_version":2,"age":"-----BEGIN AGE ENCRYPTED FILE-----\n"}`,
		`{"type":"encblk-age","encblk_age_version":1,"age":"age-encryption.org/v1\n"}`,
		`{"type":"encblk-age","encblk_age_version":1,"recipients":["` + strings.Repeat("a", maxRecipientText+1) + `"],"age":"-----BEGIN AGE ENCRYPTED FILE-----\n"}`,
		`{"type":"encblk-age","encblk_age_version":1,"age":"-----BEGIN AGE ENCRYPTED FILE-----\n` + strings.Repeat("a", maxAgeFileSize) + `"}`,
		strings.Repeat(" ", maxTokenSize+1),
	} {
		if _, err := ParseToken([]byte(bad)); !errors.Is(err, ErrBadToken) {
			t.Errorf("ParseToken(%.60q) = %v, want ErrBadToken", bad, err)
		}
	}
}

// FuzzToken: any token parses or fails with ErrBadToken, and opening a
// parsed one gives the secret, "not mine" or ErrBadToken, never a panic.
func FuzzToken(f *testing.F) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		f.Fatal(err)
	}
	raw, err := sealSecret(bytes.Repeat([]byte{1}, secretLen), []age.Recipient{id.Recipient()}, []string{id.Recipient().String()})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Add([]byte(`{"type":"encblk-age","keyslots":["1"],"encblk_age_version":1,"age":"-----BEGIN AGE ENCRYPTED FILE-----\n"}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		tok, err := ParseToken(raw)
		if err != nil {
			if !errors.Is(err, ErrBadToken) {
				t.Fatalf("ParseToken: %v is not ErrBadToken", err)
			}
			return
		}
		got := make([]byte, secretLen)
		if err := tok.open(got, []age.Identity{id}); err != nil && !errors.Is(err, ErrBadToken) && !errors.Is(err, errNotMine) {
			t.Fatalf("open: %v", err)
		}
	})
}

// A keyslot whose token is damaged is unavailable: the keyring goes on to
// the next keyslot, and if none opens, the error says the metadata is
// corrupt (the CLI's exit status 4).
func TestDamagedTokenInVolume(t *testing.T) {
	t.Parallel()
	_, ids, rcpt := newIdentity(t)
	path, dek := kektest.Volume(t)
	damaged := addSlot(t, path, rcpt)
	good := addSlot(t, path, rcpt)
	kr, err := keyring.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer kr.Close()
	damage := func(slot int) {
		t.Helper()
		for _, tok := range kr.Tokens() {
			if tok.Type != TokenType || tok.Keyslots[0] != slot {
				continue
			}
			var m map[string]any
			json.Unmarshal(tok.Raw, &m)
			m["age"] = strings.Replace(m["age"].(string), "\n", "\nAAAA", 2) // the header's first line
			raw, _ := json.Marshal(m)
			if err := kr.RemoveToken(tok.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := kr.AddToken(raw); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Fatalf("no token for keyslot %d", slot)
	}
	damage(damaged)
	if s, got, err := unlock(t, path, ids); err != nil || s != good || !bytes.Equal(got, dek) {
		t.Fatalf("with keyslot %d damaged: keyslot %d, %v; want keyslot %d", damaged, s, err, good)
	}
	damage(good)
	_, _, err = unlock(t, path, ids)
	if !errors.Is(err, keyring.ErrUnavailable) || !errors.Is(err, keyring.ErrCorrupt) || !errors.Is(err, ErrBadToken) {
		t.Fatalf("with both damaged: %v, want unavailable, corrupt", err)
	}
	t.Log(err)
}
