package kektest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/encblk/encblk/internal/testutil"
)

// LUKSImage is a LUKS2 image made by cryptsetup for binding tests: keyslot 0 opens with the key
// file KeyFile (cheap PBKDF2), and DEK is its volume key.
type LUKSImage struct {
	Path    string
	KeyFile string
	DEK     []byte
}

// NewLUKSImage formats a 20 MiB image with cryptsetup.
func NewLUKSImage(t testing.TB) *LUKSImage {
	t.Helper()
	cs := testutil.RequireTool(t, "cryptsetup", "cryptsetup-bin")
	dir := t.TempDir()
	v := &LUKSImage{Path: filepath.Join(dir, "disk.img"), KeyFile: filepath.Join(dir, "key")}
	if err := os.WriteFile(v.KeyFile, []byte("the first key file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(v.Path)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(20 << 20)
	f.Close()
	if out, err := exec.Command(cs, "luksFormat", "--type", "luks2", "--batch-mode", "--pbkdf", "pbkdf2",
		"--pbkdf-force-iterations", "1000", "--key-file", v.KeyFile, v.Path).CombinedOutput(); err != nil {
		t.Fatalf("cryptsetup luksFormat: %v\n%s", err, out)
	}
	out, err := exec.Command(cs, "luksDump", "--dump-volume-key", "--batch-mode", "--key-file", v.KeyFile, v.Path).CombinedOutput()
	if err != nil {
		t.Fatalf("cryptsetup luksDump: %v\n%s", err, out)
	}
	v.DEK = testutil.VolumeKey(t, string(out))
	return v
}

// ClevisPass is `clevis luks pass -d Path -s slot`: the keyslot passphrase
// clevis recovers from the token.
func (v *LUKSImage) ClevisPass(t testing.TB, slot int) ([]byte, error) {
	t.Helper()
	clevis := testutil.RequireTool(t, "clevis", "clevis-luks")
	return exec.Command(clevis, "luks", "pass", "-d", v.Path, "-s", strconv.Itoa(slot)).Output()
}

// CryptsetupAccepts runs cryptsetup open --test-passphrase on keyslot slot
// with passphrase.
func (v *LUKSImage) CryptsetupAccepts(t testing.TB, slot int, passphrase []byte) error {
	t.Helper()
	cs := testutil.RequireTool(t, "cryptsetup", "cryptsetup-bin")
	cmd := exec.Command(cs, "open", "--test-passphrase", "--key-slot", strconv.Itoa(slot), "--key-file", "-", v.Path)
	cmd.Stdin = bytes.NewReader(passphrase)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("cryptsetup open --test-passphrase: %v: %s", err, out)
	}
	return nil
}

// ClevisBind is `clevis luks bind -y -k KeyFile -d Path PIN CONFIG`; it
// returns the keyslot clevis used.
func (v *LUKSImage) ClevisBind(t testing.TB, pin, config string) int {
	t.Helper()
	clevis := testutil.RequireTool(t, "clevis", "clevis-luks")
	cs := testutil.RequireTool(t, "cryptsetup", "cryptsetup-bin")
	before := v.slots(t, cs)
	if out, err := exec.Command(clevis, "luks", "bind", "-y", "-k", v.KeyFile, "-d", v.Path, pin, config).CombinedOutput(); err != nil {
		t.Fatalf("clevis luks bind: %v\n%s", err, out)
	}
	for s := range v.slots(t, cs) {
		if !before[s] {
			return s
		}
	}
	t.Fatal("clevis luks bind added no keyslot")
	return -1
}

func (v *LUKSImage) slots(t testing.TB, cs string) map[int]bool {
	out, err := exec.Command(cs, "luksDump", "--dump-json-metadata", v.Path).Output()
	if err != nil {
		t.Fatalf("cryptsetup luksDump: %v", err)
	}
	var m struct {
		Keyslots map[string]json.RawMessage `json:"keyslots"`
	}
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	s := map[int]bool{}
	for k := range m.Keyslots {
		n, _ := strconv.Atoi(k)
		s[n] = true
	}
	return s
}
