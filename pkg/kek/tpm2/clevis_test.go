package tpm2_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/encblk/encblk/internal/testutil"
	"github.com/encblk/encblk/pkg/kek/clevis"
	"github.com/encblk/encblk/pkg/kek/tpm2"
	"github.com/encblk/encblk/pkg/kek/tpm2/tpm2test"
)

// clevis's tpm2 pin both ways, with and without PCRs: clevis encrypt tpm2
// (tpm2-tools on the swtpm) → encblk decrypts, encblk encrypts → clevis
// decrypt. After PCR 7 changes, neither opens a JWE bound to it, and
// encblk says why.
func TestClevisTPM2PinBothWays(t *testing.T) {
	clevisBin := testutil.RequireTool(t, "clevis", "clevis")
	testutil.RequireTool(t, "clevis-encrypt-tpm2", "clevis-tpm2")
	pcrextend := testutil.RequireTool(t, "tpm2_pcrextend", "tpm2-tools")
	dev := tpm2test.Start(t)
	t.Setenv("TPM2TOOLS_TCTI", dev)
	ctx := context.Background()
	pin := tpm2.NewClevisPin(dev)
	plaintext := []byte("the keyslot passphrase")
	configs := []string{`{}`, `{"pcr_ids":"7","pcr_bank":"sha256"}`, `{"pcr_ids":[7,11],"pcr_bank":"sha256","key":"rsa"}`}
	var theirs, ours []*clevis.JWE
	for _, cfg := range configs {
		jwe := clevisEncrypt(t, clevisBin, cfg, plaintext)
		got, err := pin.Decrypt(ctx, jwe)
		if err != nil {
			t.Fatalf("clevis's %s: %v", cfg, err)
		}
		if !bytes.Equal(got.Bytes(), plaintext) {
			t.Fatalf("clevis's %s: wrong plaintext", cfg)
		}
		got.Destroy()
		theirs = append(theirs, jwe)

		mine, err := pin.Encrypt(ctx, json.RawMessage(cfg), plaintext)
		if err != nil {
			t.Fatalf("Encrypt %s: %v", cfg, err)
		}
		cmd := exec.Command(clevisBin, "decrypt")
		cmd.Stdin = strings.NewReader(mine.Compact())
		if out, err := cmd.Output(); err != nil || !bytes.Equal(out, plaintext) {
			t.Fatalf("clevis decrypt of encblk's %s: %v %q", cfg, err, out)
		}
		ours = append(ours, mine)
		if cfg != `{}` && !strings.Contains(pin.Describe(mine), "PCRs [7") {
			t.Errorf("Describe = %q", pin.Describe(mine))
		}
	}

	cmd := exec.Command(pcrextend, "7:sha256=0000000000000000000000000000000000000000000000000000000000000001")
	cmd.Env = append(os.Environ(), "TPM2TOOLS_TCTI="+dev)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tpm2_pcrextend: %v\n%s", err, out)
	}
	for i, cfg := range configs {
		for who, jwe := range map[string]*clevis.JWE{"clevis's": theirs[i], "encblk's": ours[i]} {
			s, err := pin.Decrypt(ctx, jwe)
			cmd := exec.Command(clevisBin, "decrypt")
			cmd.Stdin = strings.NewReader(jwe.Compact())
			_, cerr := cmd.Output()
			if cfg == `{}` {
				if err != nil || cerr != nil {
					t.Fatalf("%s %s (no PCR) after a PCR change: encblk %v, clevis %v", who, cfg, err, cerr)
				}
				s.Destroy()
				continue
			}
			if !errors.Is(err, tpm2.ErrPolicyMismatch) || cerr == nil {
				t.Fatalf("%s %s after a PCR change: encblk %v, clevis %v", who, cfg, err, cerr)
			}
		}
	}
}

// FuzzClevisHeader: a hostile clevis.tpm2 header never panics and never
// reaches a TPM (there is none here).
func FuzzClevisHeader(f *testing.F) {
	f.Add(`{"hash":"sha256","key":"ecc","pcr_bank":"sha256","pcr_ids":"7","jwk_pub":"AAQAAQID","jwk_priv":"AAIAAQ"}`)
	f.Add(`{"hash":"sha1"}`)
	// clevis encrypt tpm2 '{"pcr_ids":"7","pcr_bank":"sha256"}' on a swtpm.
	f.Add(`{"hash":"sha256","jwk_priv":"AO4AIJupdDDQyCasfNN0cy6yHNu_v51cXKnOdlJTcKgHgw3eABAktYVioig_F9SY-bGQ_4saV4Vu0GyGbCMP46XK-HjIDeXS8ABmBgjWPQyKyOUZpxUh2ai1bgrlNHKSejV-itlsaa5q-l4A9QYucDu-N4GzVJ24rDHqkBULvjkEMazfxUS2-3IuIoMVZ5fKWCxhvIet_XTgHIjuydTrcG7mhWk7MNMmZzzWqR-LUVzIgd_ZmVhwIR0hbEpqkGEASdD0XbiuKHWWeulOpfZXQyuAKdVXbjAexFKH0duyxM9VhyPvP_3GBqm4mGnSE0jH","jwk_pub":"AE4ACAALAAAEkgAgi1aC2BspQ10I15J4FQYR3H5ZI7L-_M5oSglXe0ATCosAEAAg6NO6lRq0iug0tekwgraKJrTedfOigz4Ytx7r0LEvJps","key":"ecc","pcr_bank":"sha256","pcr_ids":"7"}`)
	pin := tpm2.NewClevisPin("/nonexistent/tpm")
	f.Fuzz(func(t *testing.T, h string) {
		hdr, _ := json.Marshal(map[string]any{"alg": "dir", "enc": "A256GCM", "clevis": map[string]any{"pin": "tpm2", "tpm2": json.RawMessage(h)}})
		if !json.Valid([]byte(h)) {
			return
		}
		jwe, err := clevis.ParseCompact(clevis.B64(hdr) + "..AAAAAAAAAAAAAAAA.AA.AAAAAAAAAAAAAAAAAAAAAA")
		if err != nil {
			return
		}
		if _, err := pin.Decrypt(context.Background(), jwe); err == nil {
			t.Fatal("decrypted with no TPM")
		}
		pin.Describe(jwe)
		pin.Params(jwe)
	})
}

// clevis's pcr_digest (clevis 19: the PCR values, base64url, that
// tpm2_createpolicy -f binds the policy to instead of the current ones),
// both ways: clevis encrypt tpm2 and encblk seal to the value PCR 7 will
// have after a planned extension; neither tool opens either JWE before
// it, both open both after it. A pcr_digest of the wrong size, not
// base64url, or without pcr_ids is refused in one line.
func TestClevisTPM2PCRDigest(t *testing.T) {
	clevisBin := testutil.RequireTool(t, "clevis", "clevis")
	testutil.RequireTool(t, "clevis-encrypt-tpm2", "clevis-tpm2")
	pcrread := testutil.RequireTool(t, "tpm2_pcrread", "tpm2-tools")
	pcrextend := testutil.RequireTool(t, "tpm2_pcrextend", "tpm2-tools")
	dev := tpm2test.Start(t)
	t.Setenv("TPM2TOOLS_TCTI", dev)
	ctx := context.Background()
	pin := tpm2.NewClevisPin(dev)
	plaintext := []byte("the keyslot passphrase")

	cur := filepath.Join(t.TempDir(), "pcr7")
	if out, err := exec.Command(pcrread, "sha256:7", "-o", cur).CombinedOutput(); err != nil {
		t.Fatalf("tpm2_pcrread: %v\n%s", err, out)
	}
	now, err := os.ReadFile(cur)
	if err != nil || len(now) != 32 {
		t.Fatalf("PCR 7: %x %v", now, err)
	}
	ext := bytes.Repeat([]byte{0x5a}, 32)
	next := sha256.Sum256(append(bytes.Clone(now), ext...))
	cfg := `{"pcr_ids":"7","pcr_bank":"sha256","pcr_digest":"` + base64.RawURLEncoding.EncodeToString(next[:]) + `"}`

	theirs := clevisEncrypt(t, clevisBin, cfg, plaintext)
	ours, err := pin.Encrypt(ctx, json.RawMessage(cfg), plaintext)
	if err != nil {
		t.Fatalf("Encrypt %s: %v", cfg, err)
	}
	try := func(when string, wantOpen bool) {
		t.Helper()
		for who, jwe := range map[string]*clevis.JWE{"clevis's": theirs, "encblk's": ours} {
			s, err := pin.Decrypt(ctx, jwe)
			cmd := exec.Command(clevisBin, "decrypt")
			cmd.Stdin = strings.NewReader(jwe.Compact())
			got, cerr := cmd.Output()
			if !wantOpen {
				if !errors.Is(err, tpm2.ErrPolicyMismatch) || cerr == nil {
					t.Fatalf("%s JWE %s: encblk %v, clevis %v (want both refused)", who, when, err, cerr)
				}
				continue
			}
			if err != nil || cerr != nil || !bytes.Equal(s.Bytes(), plaintext) || !bytes.Equal(got, plaintext) {
				t.Fatalf("%s JWE %s: encblk %v, clevis %v", who, when, err, cerr)
			}
			s.Destroy()
		}
	}
	try("before PCR 7 has the value", false)
	if out, err := exec.Command(pcrextend, "7:sha256="+hex.EncodeToString(ext)).CombinedOutput(); err != nil {
		t.Fatalf("tpm2_pcrextend: %v\n%s", err, out)
	}
	try("once PCR 7 has the value", true)

	for _, c := range []struct{ cfg, want string }{
		{`{"pcr_ids":"7","pcr_bank":"sha256","pcr_digest":"` + base64.RawURLEncoding.EncodeToString(next[:20]) + `"}`, "holds 20 bytes; 1 PCRs of sha256 want 32"},
		{`{"pcr_ids":"7,11","pcr_bank":"sha256","pcr_digest":"` + base64.RawURLEncoding.EncodeToString(next[:]) + `"}`, "want 64"},
		{`{"pcr_ids":"7","pcr_bank":"sha256","pcr_digest":"not base64!"}`, "not base64url"},
		{`{"pcr_digest":"` + base64.RawURLEncoding.EncodeToString(next[:]) + `"}`, "pcr_digest needs pcr_ids"},
	} {
		_, err := pin.Encrypt(ctx, json.RawMessage(c.cfg), plaintext)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Encrypt %s: %v, want one line saying %q", c.cfg, err, c.want)
		}
	}
}

// clevisEncrypt is clevis encrypt tpm2 cfg of plaintext.
func clevisEncrypt(t *testing.T, clevisBin, cfg string, plaintext []byte) *clevis.JWE {
	t.Helper()
	cmd := exec.Command(clevisBin, "encrypt", "tpm2", cfg)
	cmd.Stdin = bytes.NewReader(plaintext)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("clevis encrypt tpm2 %s: %v", cfg, err)
	}
	jwe, err := clevis.ParseCompact(string(out))
	if err != nil {
		t.Fatal(err)
	}
	return jwe
}
