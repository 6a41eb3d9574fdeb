package tpm2_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/encblk/encblk/internal/kektest"
	"github.com/encblk/encblk/internal/testutil"
	"github.com/encblk/encblk/pkg/kek/tpm2"
	"github.com/encblk/encblk/pkg/kek/tpm2/tpm2test"
	"github.com/encblk/encblk/pkg/keyring"
)

// systemd-cryptenroll seals a keyslot to the TPM; encblk unlocks it through
// the systemd-tpm2 token. After a PCR changes the keyslot is skipped with
// the reason (a wrong key: exit 2), and the other keyslots still open.
func TestSystemdCryptenrollToEncblk(t *testing.T) {
	enroll := testutil.RequireTool(t, "systemd-cryptenroll", "systemd")
	pcrextend := testutil.RequireTool(t, "tpm2_pcrextend", "tpm2-tools")
	dev := tpm2test.Start(t)
	v := kektest.NewLUKSImage(t)
	out, err := exec.Command(enroll, "--unlock-key-file="+v.KeyFile, "--tpm2-device="+dev, "--tpm2-pcrs=7", v.Path).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-cryptenroll: %v\n%s", err, out)
	}
	ctx := context.Background()
	kr, err := keyring.Open(v.Path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer kr.Close()
	slot, dek, err := kr.Match(ctx, tpm2.NewIdentity(dev))
	if err != nil {
		t.Fatal(err)
	}
	if slot != 1 || !bytes.Equal(dek.Bytes(), v.DEK) {
		t.Fatalf("opened keyslot %d; DEK match %v", slot, bytes.Equal(dek.Bytes(), v.DEK))
	}
	dek.Destroy()
	for _, tok := range kr.Tokens() {
		if text, _ := tpm2.Describe(tok.Raw); text != "PCRs [7] (sha256)" {
			t.Errorf("Describe = %q", text)
		}
	}

	cmd := exec.Command(pcrextend, "7:sha256=0000000000000000000000000000000000000000000000000000000000000001")
	cmd.Env = append(os.Environ(), "TPM2TOOLS_TCTI="+dev)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tpm2_pcrextend: %v\n%s", err, out)
	}
	_, _, err = kr.Match(ctx, tpm2.NewIdentity(dev))
	if !errors.Is(err, tpm2.ErrPolicyMismatch) || !errors.Is(err, keyring.ErrNoMatchingKeyslot) || !errors.Is(err, keyring.ErrUnavailable) {
		t.Fatalf("after a PCR change: %v", err)
	}
	t.Logf("after a PCR change: %v", err)
	kf, _ := keyring.SecretFromBytes([]byte("the first key file\n"))
	defer kf.Destroy()
	if slot, dek, err := kr.Match(ctx, tpm2.NewIdentity(dev), kf); err != nil || slot != 0 {
		t.Fatalf("key file after the TPM keyslot failed: %d, %v", slot, err)
	} else {
		dek.Destroy()
	}
	// No TPM at all: unavailable, with the reason.
	if _, _, err := kr.Match(ctx, tpm2.NewIdentity(filepath.Join(t.TempDir(), "no-tpm"))); !errors.Is(err, keyring.ErrUnavailable) {
		t.Fatalf("no TPM: %v", err)
	}
}

// FuzzParseToken: a hostile token never panics.
func FuzzParseToken(f *testing.F) {
	f.Add([]byte(`{"type":"systemd-tpm2","keyslots":["1"],"tpm2-blob":"AAIAAQACAAE=","tpm2-pcrs":[7],"tpm2-pcr-bank":"sha256","tpm2-primary-alg":"ecc","tpm2-policy-hash":"00","tpm2-pin":false}`))
	// systemd-cryptenroll 252's, PCRs 7+11 on a swtpm.
	f.Add([]byte(`{"type":"systemd-tpm2","keyslots":["2"],"tpm2-blob":"AJ4AIDP+LLTTB9gTcwCKljbWwXIJeLH/UK+cNbcHKwIz8N+SABAN30tNzRy/Xg1tBkNlERyoKIye3kolc4UBt7N3KLpkuyjXnaLAGUge7/VUPRFH8HK2qvpuQvm7mK0Ts2ehjL1vO+edtJ9jgonKwxcXGEiJcbd9dTv9WyiH7Y+tD65dEvH3MuAES8Sk+0reQ4Lff5aSvngtzXE40451qQBOAAgACwAAABIAIDhDeMrt3JaQsqyViYJ6dWpcRsizMXiy/kaMgFMbl6U+ABAAIPq07i53u2eM38br3et9VWNuX9QfdZfo26vDf0gXwtXt","tpm2-pcrs":[7,11],"tpm2-pcr-bank":"sha256","tpm2-primary-alg":"ecc","tpm2-policy-hash":"384378caeddc9690b2ac9589827a756a5c46c8b33178b2fe468c80531b97a53e","tpm2-pin":false}`))
	if _, err := tpm2.ParseToken([]byte(`{"type":"systemd-tpm2","keyslots":["2"],"tpm2-blob":"AJ4AIDP+LLTTB9gTcwCKljbWwXIJeLH/UK+cNbcHKwIz8N+SABAN30tNzRy/Xg1tBkNlERyoKIye3kolc4UBt7N3KLpkuyjXnaLAGUge7/VUPRFH8HK2qvpuQvm7mK0Ts2ehjL1vO+edtJ9jgonKwxcXGEiJcbd9dTv9WyiH7Y+tD65dEvH3MuAES8Sk+0reQ4Lff5aSvngtzXE40451qQBOAAgACwAAABIAIDhDeMrt3JaQsqyViYJ6dWpcRsizMXiy/kaMgFMbl6U+ABAAIPq07i53u2eM38br3et9VWNuX9QfdZfo26vDf0gXwtXt","tpm2-pcrs":[7,11],"tpm2-pcr-bank":"sha256","tpm2-primary-alg":"ecc","tpm2-policy-hash":"384378caeddc9690b2ac9589827a756a5c46c8b33178b2fe468c80531b97a53e","tpm2-pin":false}`)); err != nil {
		f.Fatalf("systemd's token: %v", err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := tpm2.ParseToken(b); err != nil && !errors.Is(err, tpm2.ErrBadToken) {
			t.Fatalf("error %v does not wrap ErrBadToken", err)
		}
		tpm2.Describe(b)
	})
}

// A token with a signed PCR policy (systemd 252's --tpm2-public-key) is
// refused with its reason, not mistaken for a PCR change.
func TestSignedPolicyRefused(t *testing.T) {
	_, err := tpm2.ParseToken([]byte(`{"type":"systemd-tpm2","keyslots":["1"],"tpm2-blob":"AAIAAQACAAE=","tpm2-pcrs":[],"tpm2-primary-alg":"ecc","tpm2-policy-hash":"00","tpm2-pin":false,"tpm2_pubkey_pcrs":[11],"tpm2_pubkey":"AAAA"}`))
	if !errors.Is(err, tpm2.ErrBadToken) || !strings.Contains(err.Error(), "signed PCR policy") {
		t.Fatalf("signed policy: %v", err)
	}
}
