package tpm2

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/encblk/encblk/pkg/keyring"
)

// DefaultPCRs are the PCRs a keyslot is sealed to when none are named:
// 7 (Secure Boot state), systemd-cryptenroll 252's default.
var DefaultPCRs = []int{7}

// secretLen is the length of the sealed secret (systemd's 32 bytes).
const secretLen = 32

// ParsePCRs parses a PCR list in systemd's syntax: indexes from 0 to 23
// separated by "+" or "," ("7+11", "0,7"); "" is no PCR. The result is
// sorted, without repeats.
func ParsePCRs(s string) ([]int, error) {
	pcrs := []int{}
	if s == "" {
		return pcrs, nil
	}
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == '+' || r == ',' }) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 || n > 23 || f != strconv.Itoa(n) {
			return nil, fmt.Errorf("tpm2: PCR %q: want a number from 0 to 23", f)
		}
		pcrs = append(pcrs, n)
	}
	if strings.HasPrefix(s, "+") || strings.HasPrefix(s, ",") || strings.HasSuffix(s, "+") || strings.HasSuffix(s, ",") ||
		strings.Contains(s, "++") || strings.Contains(s, ",,") || strings.Contains(s, "+,") || strings.Contains(s, ",+") {
		return nil, fmt.Errorf("tpm2: PCR list %q has an empty entry", s)
	}
	slices.Sort(pcrs)
	return slices.Compact(pcrs), nil
}

// NewRecipient is the KEK that seals new keyslots to the TPM device under
// a policy on the current values of pcrs (none: any machine state), and,
// if pin is not nil, the PIN it returns (asked once per keyslot; the
// caller's secret is destroyed after use). It opens keyslots too (without
// a PIN unless WithPIN is used).
func NewRecipient(device string, pcrs []int, pin func() (*keyring.Secret, error)) *KEK {
	k := NewIdentity(device)
	k.pcrs = slices.Clone(pcrs)
	k.newPIN = pin
	k.sealing = true
	return k
}

// KeyslotOptions are systemd-cryptenroll's options for a TPM2 keyslot
// (its minimal PBKDF: the passphrase is 256 random bits): PBKDF2-SHA512
// with 1000 iterations.
func KeyslotOptions() *keyring.KeyslotOptions {
	return &keyring.KeyslotOptions{KDF: keyring.KDFParams{Type: "pbkdf2", Hash: "sha512", Iterations: 1000}}
}

// Wrap implements keyring.Recipient as systemd-cryptenroll 252 does: 32
// random bytes sealed in a KEYEDHASH object under the primary key, its
// policy the current values of the PCRs (bank sha256, sha1 if only its
// PCRs are set) and PolicyAuthValue with the SHA-256 of the PIN if there
// is one; the keyslot's passphrase is their base64. The object is unsealed
// once before it is used, and a systemd-tpm2 token describes it.
func (k *KEK) Wrap(ctx context.Context) (*keyring.Secret, []json.RawMessage, error) {
	if !k.sealing {
		return nil, nil, errors.New("tpm2: this KEK opens keyslots; it was not given PCRs to make one")
	}
	var auth []byte
	if k.newPIN != nil {
		pin, err := k.newPIN()
		if err != nil {
			return nil, nil, fmt.Errorf("tpm2: PIN: %w", err)
		}
		if pin.Len() == 0 {
			pin.Destroy()
			return nil, nil, errors.New("tpm2: the PIN is empty")
		}
		sum := sha256.Sum256(pin.Bytes())
		pin.Destroy()
		auth = sum[:]
		defer clear(auth)
	}
	t, err := open(ctx, k.device)
	if err != nil {
		return nil, nil, err
	}
	defer t.Close()
	raw, err := keyring.NewSecret(secretLen)
	if err != nil {
		return nil, nil, err
	}
	defer raw.Destroy()
	if _, err := rand.Read(raw.Bytes()); err != nil {
		return nil, nil, err
	}
	tok, err := seal(t, k.pcrs, auth, raw.Bytes())
	if err != nil {
		return nil, nil, tpmError(err)
	}
	// Before a keyslot depends on it, check the TPM gives it back.
	back, err := unseal(t, tok, auth)
	if err != nil {
		return nil, nil, fmt.Errorf("tpm2: unsealing the new object to check it: %w", err)
	}
	same := string(back) == string(raw.Bytes())
	clear(back)
	if !same {
		return nil, nil, errors.New("tpm2: the new sealed object does not give back its secret")
	}
	js, err := tok.marshal()
	if err != nil {
		return nil, nil, err
	}
	out, err := keyring.NewSecret(base64.StdEncoding.EncodedLen(secretLen))
	if err != nil {
		return nil, nil, err
	}
	base64.StdEncoding.Encode(out.Bytes(), raw.Bytes())
	return out, []json.RawMessage{js}, nil
}

// marshal is the token as systemd-cryptenroll 252 writes it (its field
// order; "keyslots" is set by the keyring; no PCR: no bank).
func (t *Token) marshal() (json.RawMessage, error) {
	pcrs := t.PCRs
	if pcrs == nil {
		pcrs = []int{}
	}
	var b strings.Builder
	b.WriteString(`{"type":"systemd-tpm2","keyslots":[]`)
	for _, f := range []struct {
		name string
		v    any
		skip bool
	}{
		{"tpm2-blob", t.Blob, false},
		{"tpm2-pcrs", pcrs, false},
		{"tpm2-pcr-bank", t.PCRBank, len(t.PCRs) == 0},
		{"tpm2-primary-alg", t.PrimaryAlg, false},
		{"tpm2-policy-hash", t.PolicyHash, false},
		{"tpm2-pin", t.PIN, false},
	} {
		if f.skip {
			continue
		}
		v, err := json.Marshal(f.v)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, ",%q:%s", f.name, v)
	}
	b.WriteString("}")
	return json.RawMessage(b.String()), nil
}

// seal makes the sealed object of secret on TPM t (systemd 252's
// tpm2_seal) and returns its token (without keyslots).
func seal(t transport.TPM, pcrs []int, auth, secret []byte) (*Token, error) {
	prim, alg, err := createPrimary(t, "")
	if err != nil {
		return nil, err
	}
	defer tpm2.FlushContext{FlushHandle: prim.ObjectHandle}.Execute(t)
	tok := &Token{PCRs: slices.Clone(pcrs), PrimaryAlg: alg, PIN: auth != nil}
	if tok.PCRs == nil {
		tok.PCRs = []int{}
	}
	var bank tpm2.TPMIAlgHash
	if len(pcrs) > 0 {
		if bank, err = bestBank(t, pcrs); err != nil {
			return nil, err
		}
		tok.PCRBank = bankName(bank)
	}
	digest, err := policyDigest(t, bank, pcrs, auth != nil)
	if err != nil {
		return nil, err
	}
	tok.PolicyHash = hex.EncodeToString(digest)
	created, err := createSealed(t, prim, tpm2.TPMAObject{FixedTPM: true, FixedParent: true}, digest, auth, secret)
	if err != nil {
		return nil, err
	}
	// tpm2-blob: the TPM2B_PRIVATE then the TPM2B_PUBLIC, marshalled.
	tok.Blob = append(tpm2.Marshal(created.OutPrivate), tpm2.Marshal(created.OutPublic)...)
	return tok, nil
}

// policyDigest is the digest of the policy PolicyPCR on the current
// values of pcrs in bank (if any), then PolicyAuthValue if pin: from a
// session (not a trial one, as systemd avoids them) given those
// assertions.
func policyDigest(t transport.TPM, bank tpm2.TPMIAlgHash, pcrs []int, pin bool) ([]byte, error) {
	sess, closeSess, err := tpm2.PolicySession(t, tpm2.TPMAlgSHA256, 16)
	if err != nil {
		return nil, fmt.Errorf("tpm2: starting a policy session: %w", err)
	}
	defer closeSess()
	if len(pcrs) > 0 {
		if _, err := (tpm2.PolicyPCR{PolicySession: sess.Handle(), Pcrs: selection(bank, pcrs)}).Execute(t); err != nil {
			return nil, fmt.Errorf("tpm2: PolicyPCR: %w", err)
		}
	}
	if pin {
		if _, err := (tpm2.PolicyAuthValue{PolicySession: sess.Handle()}).Execute(t); err != nil {
			return nil, fmt.Errorf("tpm2: PolicyAuthValue: %w", err)
		}
	}
	dg, err := tpm2.PolicyGetDigest{PolicySession: sess.Handle()}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("tpm2: PolicyGetDigest: %w", err)
	}
	return dg.PolicyDigest.Buffer, nil
}

// createSealed makes a KEYEDHASH object (nameAlg sha256) holding data
// under the primary key prim, with attributes attrs, authPolicy policy
// and auth value auth. The sensitive data travels encrypted, in a session
// salted to the primary key (systemd's encryption session).
func createSealed(t transport.TPM, prim *tpm2.CreatePrimaryResponse, attrs tpm2.TPMAObject, policy, auth, data []byte) (*tpm2.CreateResponse, error) {
	primPub, err := prim.OutPublic.Contents()
	if err != nil {
		return nil, err
	}
	hs, closeHS, err := tpm2.HMACSession(t, tpm2.TPMAlgSHA256, 16,
		tpm2.Salted(prim.ObjectHandle, *primPub), tpm2.AESEncryption(128, tpm2.EncryptInOut))
	if err != nil {
		return nil, fmt.Errorf("tpm2: starting the encryption session: %w", err)
	}
	defer closeHS()
	created, err := tpm2.Create{
		ParentHandle: tpm2.AuthHandle{Handle: prim.ObjectHandle, Name: prim.Name, Auth: hs},
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
			UserAuth: tpm2.TPM2BAuth{Buffer: auth},
			Data:     tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: data}),
		}},
		InPublic: tpm2.New2B(tpm2.TPMTPublic{
			Type:             tpm2.TPMAlgKeyedHash,
			NameAlg:          tpm2.TPMAlgSHA256,
			ObjectAttributes: attrs,
			AuthPolicy:       tpm2.TPM2BDigest{Buffer: policy},
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
				Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull},
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgKeyedHash, &tpm2.TPM2BDigest{Buffer: make([]byte, 32)}),
		}),
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("tpm2: creating the sealed object: %w", err)
	}
	return created, nil
}

// bestBank is systemd 252's choice of PCR bank for pcrs: among the sha256
// and sha1 banks with all 24 PCRs, sha256 if one of pcrs has been
// extended there (is neither all zeros nor all ones), else sha1 if one
// has there, else sha256 if the TPM has it, else sha1.
func bestBank(t transport.TPM, pcrs []int) (tpm2.TPMIAlgHash, error) {
	caps, err := tpm2.GetCapability{Capability: tpm2.TPMCapPCRs, PropertyCount: 1}.Execute(t)
	if err != nil {
		return 0, fmt.Errorf("tpm2: reading the PCR banks: %w", err)
	}
	assigned, err := caps.CapabilityData.Data.AssignedPCR()
	if err != nil {
		return 0, fmt.Errorf("tpm2: reading the PCR banks: %w", err)
	}
	var supported, valid tpm2.TPMIAlgHash
	for _, s := range assigned.PCRSelections {
		if s.Hash != tpm2.TPMAlgSHA256 && s.Hash != tpm2.TPMAlgSHA1 {
			continue
		}
		if len(s.PCRSelect) < 3 || s.PCRSelect[0] != 0xff || s.PCRSelect[1] != 0xff || s.PCRSelect[2] != 0xff {
			continue // fewer than 24 PCRs in this bank
		}
		good, err := pcrsSet(t, s.Hash, pcrs)
		if err != nil {
			return 0, err
		}
		if s.Hash == tpm2.TPMAlgSHA256 {
			supported = tpm2.TPMAlgSHA256
			if good {
				return tpm2.TPMAlgSHA256, nil
			}
			continue
		}
		if supported == 0 {
			supported = tpm2.TPMAlgSHA1
		}
		if good && valid == 0 {
			valid = tpm2.TPMAlgSHA1
		}
	}
	switch {
	case valid != 0:
		return valid, nil
	case supported != 0:
		return supported, nil
	}
	return 0, errors.New("tpm2: the TPM has neither a sha256 nor a sha1 PCR bank")
}

// pcrsSet reports whether one of pcrs in bank has been extended.
func pcrsSet(t transport.TPM, bank tpm2.TPMIAlgHash, pcrs []int) (bool, error) {
	// PCR_Read answers at most 8 digests at a time: ask one PCR at a time.
	for _, p := range pcrs {
		rsp, err := tpm2.PCRRead{PCRSelectionIn: selection(bank, []int{p})}.Execute(t)
		if err != nil {
			return false, fmt.Errorf("tpm2: reading PCR %d: %w", p, err)
		}
		for _, d := range rsp.PCRValues.Digests {
			if !allBytes(d.Buffer, 0) && !allBytes(d.Buffer, 0xff) {
				return true, nil
			}
		}
	}
	return false, nil
}

func allBytes(b []byte, v byte) bool {
	for _, c := range b {
		if c != v {
			return false
		}
	}
	return true
}

// selection is the PCR selection of pcrs in bank (three bytes: 24 PCRs).
func selection(bank tpm2.TPMIAlgHash, pcrs []int) tpm2.TPMLPCRSelection {
	sel := make([]byte, 3)
	for _, p := range pcrs {
		sel[p/8] |= 1 << (p % 8)
	}
	return tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{Hash: bank, PCRSelect: sel}}}
}

func bankName(h tpm2.TPMIAlgHash) string {
	switch h {
	case tpm2.TPMAlgSHA1:
		return "sha1"
	case tpm2.TPMAlgSHA384:
		return "sha384"
	case tpm2.TPMAlgSHA512:
		return "sha512"
	}
	return "sha256"
}

// ErrLockout means the TPM refuses authorizations for now: too many wrong
// PINs (its dictionary-attack lockout). Nothing is tried again.
var ErrLockout = errors.New("tpm2: the TPM is in dictionary-attack lockout (too many wrong PINs); wait for its recovery time, or clear it with the lockout authorization")

// tpmError is err, or ErrLockout if the TPM answered that at any step
// (loading an object under the primary key is already refused).
func tpmError(err error) error {
	if errors.Is(err, tpm2.TPMRCLockout) {
		return ErrLockout
	}
	return err
}
