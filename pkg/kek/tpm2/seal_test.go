package tpm2_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"testing"

	"github.com/encblk/encblk/internal/kektest"
	"github.com/encblk/encblk/internal/testutil"
	"github.com/encblk/encblk/pkg/kek/tpm2"
	"github.com/encblk/encblk/pkg/kek/tpm2/tpm2test"
	"github.com/encblk/encblk/pkg/keyring"
)

// luksJSON is what cryptsetup reads of an image's header.
type luksJSON struct {
	Keyslots map[string]struct {
		KDF struct {
			Type       string `json:"type"`
			Hash       string `json:"hash"`
			Iterations int    `json:"iterations"`
		} `json:"kdf"`
	} `json:"keyslots"`
	Tokens map[string]map[string]json.RawMessage `json:"tokens"`
}

func dumpJSON(t *testing.T, path string) luksJSON {
	t.Helper()
	cs := testutil.RequireTool(t, "cryptsetup", "cryptsetup-bin")
	out, err := exec.Command(cs, "luksDump", "--dump-json-metadata", path).Output()
	if err != nil {
		t.Fatalf("cryptsetup luksDump: %v", err)
	}
	var m luksJSON
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// tokenOf returns the systemd-tpm2 token bound to keyslot slot.
func tokenOf(t *testing.T, m luksJSON, slot int) map[string]json.RawMessage {
	t.Helper()
	for _, tok := range m.Tokens {
		var ks []string
		json.Unmarshal(tok["keyslots"], &ks)
		if string(tok["type"]) == `"systemd-tpm2"` && slices.Equal(ks, []string{strconv.Itoa(slot)}) {
			return tok
		}
	}
	t.Fatalf("no systemd-tpm2 token bound to keyslot %d", slot)
	return nil
}

// encblk seals a keyslot to the TPM (PCRs 7 and 11). The judges are not
// encblk: systemd-cryptenroll seals one beside it to the same PCRs, and
// the two tokens have the same fields, policy digest and sealed object
// template, and keyslots the same KDF; tpm2-tools unseal encblk's object
// and cryptsetup accepts the base64 of the secret as the keyslot's
// passphrase; systemd-cryptenroll --wipe-slot=tpm2 recognises the keyslot
// as its own kind. encblk opens it too, and no longer once PCR 7 changed.
func TestEncblkSealsLikeSystemd(t *testing.T) {
	enroll := testutil.RequireTool(t, "systemd-cryptenroll", "systemd")
	pcrextend := testutil.RequireTool(t, "tpm2_pcrextend", "tpm2-tools")
	dev := tpm2test.Start(t)
	// PCR 7 extended: the sha256 bank is chosen because it is set, as on
	// a machine whose firmware measures.
	cmd := exec.Command(pcrextend, "7:sha256=00000000000000000000000000000000000000000000000000000000000000aa")
	cmd.Env = append(os.Environ(), "TPM2TOOLS_TCTI="+dev)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tpm2_pcrextend: %v\n%s", err, out)
	}
	ctx := context.Background()
	v := kektest.NewLUKSImage(t)
	kr, dek := v.Unlocked(t)
	pcrs, err := tpm2.ParsePCRs("11+7")
	if err != nil {
		t.Fatal(err)
	}
	slot, err := kr.AddKeyslot(ctx, dek, tpm2.NewRecipient(dev, pcrs, nil), tpm2.KeyslotOptions())
	if err != nil {
		t.Fatal(err)
	}
	// systemd-cryptenroll finds its own policy digest in encblk's token.
	out, err := exec.Command(enroll, "--unlock-key-file="+v.KeyFile, "--tpm2-device="+dev, "--tpm2-pcrs=7,11", v.Path).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("This PCR set is already enrolled")) {
		t.Fatalf("systemd-cryptenroll on encblk's keyslot: %v\n%s", err, out)
	}
	// systemd's own keyslot, on another image, for the same PCRs.
	v2 := kektest.NewLUKSImage(t)
	if out, err := exec.Command(enroll, "--unlock-key-file="+v2.KeyFile, "--tpm2-device="+dev, "--tpm2-pcrs=7,11", v2.Path).CombinedOutput(); err != nil {
		t.Fatalf("systemd-cryptenroll: %v\n%s", err, out)
	}
	m, m2 := dumpJSON(t, v.Path), dumpJSON(t, v2.Path)
	ours, theirs := tokenOf(t, m, slot), tokenOf(t, m2, 1)
	if len(ours) != len(theirs) {
		t.Errorf("encblk's token has %d fields, systemd's %d", len(ours), len(theirs))
	}
	for k, want := range theirs {
		got, ok := ours[k]
		switch {
		case !ok:
			t.Errorf("encblk's token has no %q", k)
		case k == "tpm2-blob" || k == "keyslots":
		case !bytes.Equal(got, want):
			t.Errorf("%q: encblk %s, systemd %s", k, got, want)
		}
	}
	var ourBlob, theirBlob []byte
	json.Unmarshal(ours["tpm2-blob"], &ourBlob)
	json.Unmarshal(theirs["tpm2-blob"], &theirBlob)
	// The TPM2B_PUBLIC of the sealed objects: all but the unique field
	// (the TPM's hash of each object's own seed) is the same.
	ourPub, theirPub := publicOf(t, ourBlob), publicOf(t, theirBlob)
	if len(ourPub) != len(theirPub) || !bytes.Equal(ourPub[:len(ourPub)-32], theirPub[:len(theirPub)-32]) {
		t.Errorf("sealed object public areas differ:\nencblk  %x\nsystemd %x", ourPub, theirPub)
	}
	if a, b := m.Keyslots[strconv.Itoa(slot)].KDF, m2.Keyslots["1"].KDF; a != b {
		t.Errorf("keyslot KDF: encblk %+v, systemd %+v", a, b)
	}

	pass, err := tpm2test.ToolsUnseal(t, dev, ourBlob, []int{7, 11}, "sha256", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := v.CryptsetupAccepts(t, slot, pass); err != nil {
		t.Fatalf("tpm2-tools' unsealed secret, in base64: %v", err)
	}

	kr = kektest.OpenKeyring(t, v.Path)
	got, d2, err := kr.Match(ctx, tpm2.NewIdentity(dev))
	if err != nil || got != slot {
		t.Fatalf("encblk opens keyslot %d (want %d): %v", got, slot, err)
	}
	d2.Destroy()

	cmd = exec.Command(pcrextend, "7:sha256=0000000000000000000000000000000000000000000000000000000000000001")
	cmd.Env = append(os.Environ(), "TPM2TOOLS_TCTI="+dev)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tpm2_pcrextend: %v\n%s", err, out)
	}
	if _, _, err := kr.Match(ctx, tpm2.NewIdentity(dev)); !errors.Is(err, tpm2.ErrPolicyMismatch) {
		t.Fatalf("after a PCR change: %v", err)
	}

	if out, err := exec.Command(enroll, "--unlock-key-file="+v.KeyFile, "--wipe-slot=tpm2", v.Path).CombinedOutput(); err != nil {
		t.Fatalf("systemd-cryptenroll --wipe-slot=tpm2: %v\n%s", err, out)
	}
	m = dumpJSON(t, v.Path)
	if len(m.Keyslots) != 1 || len(m.Tokens) != 0 {
		t.Fatalf("after systemd-cryptenroll --wipe-slot=tpm2: %d keyslots, %d tokens", len(m.Keyslots), len(m.Tokens))
	}
}

// publicOf returns the TPM2B_PUBLIC's contents of a tpm2-blob.
func publicOf(t *testing.T, blob []byte) []byte {
	t.Helper()
	if len(blob) < 2 {
		t.Fatal("blob too short")
	}
	n := 2 + (int(blob[0])<<8 | int(blob[1]))
	if len(blob) < n+2 {
		t.Fatal("blob too short")
	}
	return blob[n+2:]
}

// A PIN-protected keyslot (no PCR): the token says so and has no bank, as
// systemd's; tpm2-tools unseal it with the PIN's SHA-256 as auth value;
// encblk opens it with the PIN and refuses a wrong one.
func TestEncblkSealsWithPIN(t *testing.T) {
	dev := tpm2test.Start(t)
	ctx := context.Background()
	v := kektest.NewLUKSImage(t)
	kr, dek := v.Unlocked(t)
	pin := func(s string) func() (*keyring.Secret, error) {
		return func() (*keyring.Secret, error) { return keyring.SecretFromBytes([]byte(s)) }
	}
	slot, err := kr.AddKeyslot(ctx, dek, tpm2.NewRecipient(dev, nil, pin("1234")), tpm2.KeyslotOptions())
	if err != nil {
		t.Fatal(err)
	}
	tok := tokenOf(t, dumpJSON(t, v.Path), slot)
	var pcrs []int
	if err := json.Unmarshal(tok["tpm2-pcrs"], &pcrs); err != nil || pcrs == nil || len(pcrs) != 0 || string(tok["tpm2-pin"]) != "true" || tok["tpm2-pcr-bank"] != nil {
		t.Errorf("token: pin %s, pcrs %s, bank %s", tok["tpm2-pin"], tok["tpm2-pcrs"], tok["tpm2-pcr-bank"])
	}
	var blob []byte
	json.Unmarshal(tok["tpm2-blob"], &blob)
	sum := sha256.Sum256([]byte("1234"))
	pass, err := tpm2test.ToolsUnseal(t, dev, blob, nil, "", hex.EncodeToString(sum[:]))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.CryptsetupAccepts(t, slot, pass); err != nil {
		t.Fatal(err)
	}
	kr = kektest.OpenKeyring(t, v.Path)
	got, d2, err := kr.Match(ctx, tpm2.NewIdentity(dev).WithPIN(pin("1234")))
	if err != nil || got != slot {
		t.Fatalf("with the PIN: keyslot %d, %v", got, err)
	}
	d2.Destroy()
	if _, _, err := kr.Match(ctx, tpm2.NewIdentity(dev).WithPIN(pin("4321"))); !errors.Is(err, tpm2.ErrWrongPIN) {
		t.Fatalf("wrong PIN: %v", err)
	}
}

func TestParsePCRs(t *testing.T) {
	for in, want := range map[string][]int{"": {}, "7": {7}, "7+11": {7, 11}, "11,7,7": {7, 11}, "0+23": {0, 23}} {
		got, err := tpm2.ParsePCRs(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ParsePCRs(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"24", "-1", "7+", "+7", "7++11", "a", "07", " 7", "7,,11"} {
		if _, err := tpm2.ParsePCRs(in); err == nil {
			t.Errorf("ParsePCRs(%q) accepted", in)
		}
	}
}

func FuzzParsePCRs(f *testing.F) {
	f.Add("7+11")
	f.Add("0,1,2")
	f.Fuzz(func(t *testing.T, s string) {
		pcrs, err := tpm2.ParsePCRs(s)
		for _, p := range pcrs {
			if err == nil && (p < 0 || p > 23) {
				t.Fatalf("%q: PCR %d", s, p)
			}
		}
	})
}

// systemd's bank choice: PCR 7 extended only in the sha1 bank makes it the
// bank (sha256's PCR 7 is unset), and systemd-cryptenroll, asked for the
// same PCR, finds encblk's policy already enrolled: same bank, same
// digest. tpm2-tools unseal it with a sha1 PCR policy.
func TestSealBankFallsBackToSHA1(t *testing.T) {
	enroll := testutil.RequireTool(t, "systemd-cryptenroll", "systemd")
	pcrextend := testutil.RequireTool(t, "tpm2_pcrextend", "tpm2-tools")
	dev := tpm2test.Start(t)
	cmd := exec.Command(pcrextend, "7:sha1=00000000000000000000000000000000000000aa")
	cmd.Env = append(os.Environ(), "TPM2TOOLS_TCTI="+dev)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tpm2_pcrextend: %v\n%s", err, out)
	}
	v := kektest.NewLUKSImage(t)
	kr, dek := v.Unlocked(t)
	slot, err := kr.AddKeyslot(context.Background(), dek, tpm2.NewRecipient(dev, []int{7}, nil), tpm2.KeyslotOptions())
	if err != nil {
		t.Fatal(err)
	}
	tok := tokenOf(t, dumpJSON(t, v.Path), slot)
	if string(tok["tpm2-pcr-bank"]) != `"sha1"` {
		t.Fatalf("bank %s, want sha1", tok["tpm2-pcr-bank"])
	}
	out, err := exec.Command(enroll, "--unlock-key-file="+v.KeyFile, "--tpm2-device="+dev, "--tpm2-pcrs=7", v.Path).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("This PCR set is already enrolled")) {
		t.Fatalf("systemd-cryptenroll: %v\n%s", err, out)
	}
	var blob []byte
	json.Unmarshal(tok["tpm2-blob"], &blob)
	pass, err := tpm2test.ToolsUnseal(t, dev, blob, []int{7}, "sha1", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := v.CryptsetupAccepts(t, slot, pass); err != nil {
		t.Fatal(err)
	}
}
