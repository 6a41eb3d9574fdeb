// Package tpm2 is the KEK source for keyslots sealed to a TPM 2.0 by
// systemd-cryptenroll (systemd 252, Debian 12): the "systemd-tpm2" LUKS2
// token. The keyslot's passphrase is the base64 of 32 random bytes sealed
// in a TPM object (a KEYEDHASH under the owner hierarchy's ECC P-256
// primary key, made from systemd's template) whose policy asserts the
// values of the token's PCRs; the token holds the sealed object (tpm2-blob:
// TPM2B_PRIVATE then TPM2B_PUBLIC), the PCRs and bank and the policy's
// digest.
//
// Unsealing recreates the primary key, loads the object, replays the
// policy in a session salted to the primary key with the response
// encrypted (AES-128 CFB), compares the digest with the token's (a PCR
// that changed is reported before the TPM is asked, so its dictionary-
// attack counter is not touched) and unseals. A PIN-protected keyslot
// (tpm2-pin) adds PolicyAuthValue with the SHA-256 of the PIN as the
// object's auth value; a PIN is tried once per token and command (a wrong
// one counts against the TPM's dictionary-attack lockout).
//
// Sealing (NewRecipient, Wrap) does what systemd-cryptenroll 252 does, so
// that systemd-cryptsetup opens the keyslots encblk makes: ECC primary (RSA
// if the TPM has no ECC), PCR bank sha256 unless only sha1's PCRs are set,
// keyslot PBKDF2-SHA512 with 1000 iterations.
//
// ClevisPin is clevis's tpm2 pin (a clevis.Pin, alone or inside sss) on the
// same primary keys and sealed objects.
package tpm2

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/encblk/encblk/pkg/keyring"
)

// TokenType is the LUKS2 token type systemd-cryptenroll writes.
const TokenType = "systemd-tpm2"

// DefaultDevice is the TPM used when none is named (the kernel's resource
// manager, as systemd's "auto").
const DefaultDevice = "/dev/tpmrm0"

// maxToken bounds a token's size.
const maxToken = 16 << 10

// ErrBadToken is wrapped when a systemd-tpm2 token cannot be read.
var ErrBadToken = errors.New("tpm2: invalid systemd-tpm2 token")

// ErrPolicyMismatch means the TPM's PCRs no longer have the values the
// keyslot was sealed to (firmware, boot loader or kernel changed): the
// key is the wrong one for this machine state, so it wraps
// keyring.ErrNoMatchingKeyslot.
var ErrPolicyMismatch = fmt.Errorf("tpm2: the PCRs do not match the keyslot's policy: %w", keyring.ErrNoMatchingKeyslot)

// ErrWrongPIN means the TPM refused the PIN (and counted the failure
// against its dictionary-attack lockout): a wrong key.
var ErrWrongPIN = fmt.Errorf("tpm2: wrong PIN: %w", keyring.ErrNoMatchingKeyslot)

// Token is a systemd-tpm2 token (systemd 252's fields).
type Token struct {
	Keyslots   []string `json:"keyslots"`
	Blob       []byte   `json:"tpm2-blob"`
	PCRs       []int    `json:"tpm2-pcrs"`
	PCRBank    string   `json:"tpm2-pcr-bank"`
	PrimaryAlg string   `json:"tpm2-primary-alg"`
	PolicyHash string   `json:"tpm2-policy-hash"`
	PIN        bool     `json:"tpm2-pin"`
	// A signed PCR policy (systemd-cryptenroll --tpm2-public-key): not
	// supported, refused by ParseToken.
	PubkeyPCRs []int  `json:"tpm2_pubkey_pcrs,omitempty"`
	Pubkey     []byte `json:"tpm2_pubkey,omitempty"`
}

// ParseToken parses and checks a systemd-tpm2 token.
func ParseToken(raw []byte) (*Token, error) {
	if len(raw) > maxToken {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadToken, len(raw))
	}
	var t struct {
		Type string `json:"type"`
		Token
	}
	if err := json.Unmarshal(raw, &t); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	tok := &t.Token
	switch {
	case t.Type != TokenType:
		return nil, fmt.Errorf("%w: type %q", ErrBadToken, t.Type)
	case len(tok.PubkeyPCRs) > 0 || len(tok.Pubkey) > 0:
		return nil, fmt.Errorf("%w: a signed PCR policy (tpm2_pubkey, systemd-cryptenroll --tpm2-public-key) is not supported", ErrBadToken)
	case tok.PCRBank == "":
		tok.PCRBank = "sha256"
	}
	if tok.PrimaryAlg == "" {
		tok.PrimaryAlg = "ecc"
	}
	if _, err := tok.bank(); err != nil {
		return nil, err
	}
	for _, p := range tok.PCRs {
		if p < 0 || p > 23 {
			return nil, fmt.Errorf("%w: PCR %d", ErrBadToken, p)
		}
	}
	_, pub, err := splitBlob(tok.Blob)
	if err != nil {
		return nil, err
	}
	if _, err := parsePublic(pub); err != nil {
		return nil, err
	}
	if _, err := hex.DecodeString(tok.PolicyHash); err != nil {
		return nil, fmt.Errorf("%w: tpm2-policy-hash", ErrBadToken)
	}
	return tok, nil
}

func (t *Token) bank() (tpm2.TPMIAlgHash, error) { return bankByName(t.PCRBank) }

// bankByName is the PCR bank (hash algorithm) a name gives.
func bankByName(name string) (tpm2.TPMIAlgHash, error) {
	switch name {
	case "sha256":
		return tpm2.TPMAlgSHA256, nil
	case "sha1":
		return tpm2.TPMAlgSHA1, nil
	case "sha384":
		return tpm2.TPMAlgSHA384, nil
	case "sha512":
		return tpm2.TPMAlgSHA512, nil
	}
	return 0, fmt.Errorf("%w: PCR bank %q", ErrBadToken, name)
}

// splitBlob splits tpm2-blob into the TPM2B_PRIVATE and TPM2B_PUBLIC
// contents.
func splitBlob(b []byte) (priv, pub []byte, err error) {
	next := func() ([]byte, error) {
		if len(b) < 2 {
			return nil, fmt.Errorf("%w: tpm2-blob too short", ErrBadToken)
		}
		n := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+n || n == 0 {
			return nil, fmt.Errorf("%w: tpm2-blob too short", ErrBadToken)
		}
		out := b[2 : 2+n]
		b = b[2+n:]
		return out, nil
	}
	if priv, err = next(); err != nil {
		return nil, nil, err
	}
	if pub, err = next(); err != nil {
		return nil, nil, err
	}
	if len(b) != 0 {
		return nil, nil, fmt.Errorf("%w: %d bytes after tpm2-blob's objects", ErrBadToken, len(b))
	}
	return priv, pub, nil
}

// KEK opens systemd-tpm2 keyslots with a TPM.
type KEK struct {
	device string
	pin    func() (*keyring.Secret, error)
	// for a new keyslot (NewRecipient)
	sealing bool
	pcrs    []int
	newPIN  func() (*keyring.Secret, error)
}

// WithPIN has k ask pin for the PIN of PIN-protected keyslots (when one
// is met; the caller destroys what it returns after use). Without it such
// keyslots are unavailable.
func (k *KEK) WithPIN(pin func() (*keyring.Secret, error)) *KEK {
	k.pin = pin
	return k
}

// NewIdentity is the KEK of the TPM device: a character device
// ("/dev/tpmrm0") or, as systemd names it, "swtpm:path=SOCKET" (a software
// TPM's socket). "" is DefaultDevice.
func NewIdentity(device string) *KEK {
	if device == "" {
		device = DefaultDevice
	}
	return &KEK{device: device}
}

// Destroy implements the command line's KEK: a TPM KEK holds no secret.
func (k *KEK) Destroy() {}

// Unwrap implements keyring.Identity: the passphrase of keyslot ks,
// unsealed by the TPM from its systemd-tpm2 token. A keyslot without one is
// not this KEK's; a TPM that is absent or refuses, or PCRs that changed
// (ErrPolicyMismatch), make it unavailable with the reason.
func (k *KEK) Unwrap(ctx context.Context, ks *keyring.Keyslot) (*keyring.Secret, error) {
	return keyring.UnwrapTokens(ctx, ks, TokenType, "tpm2", func(ctx context.Context, t keyring.Token) (*keyring.Secret, error) {
		return k.unwrapToken(ctx, t.Raw)
	})
}

func (k *KEK) unwrapToken(ctx context.Context, raw json.RawMessage) (*keyring.Secret, error) {
	tok, err := ParseToken(raw)
	if err != nil {
		return nil, err
	}
	var auth []byte
	if tok.PIN {
		if k.pin == nil {
			return nil, errors.New("tpm2: the keyslot needs its TPM2 PIN (--tpm2-pin-file)")
		}
		pin, err := k.pin()
		if err != nil {
			return nil, fmt.Errorf("tpm2: PIN: %w", err)
		}
		sum := sha256.Sum256(pin.Bytes()) // systemd's auth value: SHA-256 of the PIN
		pin.Destroy()
		auth = sum[:]
		defer clear(auth)
	}
	t, err := open(ctx, k.device)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	secret, err := unseal(t, tok, auth)
	if err != nil {
		return nil, tpmError(err)
	}
	defer clear(secret)
	out, err := keyring.NewSecret(base64.StdEncoding.EncodedLen(len(secret)))
	if err != nil {
		return nil, err
	}
	// systemd-cryptenroll's keyslot passphrase is the secret in base64.
	base64.StdEncoding.Encode(out.Bytes(), secret)
	return out, nil
}

// primaryTemplates are systemd 252's primary keys under the owner
// hierarchy (restricted decryption keys, AES-128 CFB, empty unique): ECC
// NIST P-256, or RSA 2048 on a TPM without ECC.
var primaryTemplates = map[string]tpm2.TPMTPublic{
	"ecc": {
		Type:             tpm2.TPMAlgECC,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: primaryAttributes,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: primarySymmetric,
			CurveID:   tpm2.TPMECCNistP256,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
	},
	"rsa": {
		Type:             tpm2.TPMAlgRSA,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: primaryAttributes,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Symmetric: primarySymmetric,
			KeyBits:   2048,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{}),
	},
}

var (
	primaryAttributes = tpm2.TPMAObject{
		FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true, UserWithAuth: true,
		Restricted: true, Decrypt: true,
	}
	primarySymmetric = tpm2.TPMTSymDefObject{
		Algorithm: tpm2.TPMAlgAES,
		KeyBits:   tpm2.NewTPMUSymKeyBits(tpm2.TPMAlgAES, tpm2.TPMKeyBits(128)),
		Mode:      tpm2.NewTPMUSymMode(tpm2.TPMAlgAES, tpm2.TPMAlgCFB),
	}
)

// createPrimary makes systemd's primary key of algorithm alg ("ecc",
// "rsa"), or, with "", ECC and, if the TPM refuses, RSA (as systemd when
// sealing); it returns the algorithm used.
func createPrimary(t transport.TPM, alg string) (*tpm2.CreatePrimaryResponse, string, error) {
	algs := []string{alg}
	if alg == "" {
		algs = []string{"ecc", "rsa"}
	}
	var err error
	for _, a := range algs {
		tmpl, ok := primaryTemplates[a]
		if !ok {
			return nil, "", fmt.Errorf("tpm2: primary key algorithm %q is not supported (ecc and rsa are)", a)
		}
		var prim *tpm2.CreatePrimaryResponse
		prim, err = tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tmpl)}.Execute(t)
		if err == nil {
			return prim, a, nil
		}
	}
	return nil, "", fmt.Errorf("tpm2: creating the primary key: %w", err)
}

// unseal runs systemd's unseal against TPM t; auth is the object's auth
// value for a PIN-protected one.
func unseal(t transport.TPM, tok *Token, auth []byte) ([]byte, error) {
	priv, pub, err := splitBlob(tok.Blob)
	if err != nil {
		return nil, err
	}
	o := sealedObject{primaryAlg: tok.PrimaryAlg, priv: priv, pub: pub, pcrs: tok.PCRs, pin: tok.PIN, auth: auth,
		what: fmt.Sprintf("PCRs %v, bank %s", tok.PCRs, tok.PCRBank)}
	if len(tok.PCRs) > 0 {
		if o.bank, err = tok.bank(); err != nil {
			return nil, err
		}
	}
	o.policy, _ = hex.DecodeString(tok.PolicyHash)
	return o.unseal(t)
}

// parsePublic parses a sealed object's public area (TPMT_PUBLIC): a
// KEYEDHASH object named with sha256, as systemd and clevis make them.
func parsePublic(pub []byte) (*tpm2.TPMTPublic, error) {
	p, err := tpm2.Unmarshal[tpm2.TPMTPublic](pub)
	if err != nil {
		return nil, fmt.Errorf("%w: the sealed object's public area: %v", ErrBadToken, err)
	}
	if p.Type != tpm2.TPMAlgKeyedHash || p.NameAlg != tpm2.TPMAlgSHA256 {
		return nil, fmt.Errorf("%w: the sealed object is of type %#x named with %#x (a sha256 KEYEDHASH is wanted)", ErrBadToken, p.Type, p.NameAlg)
	}
	return p, nil
}

// sealedObject is a sealed KEYEDHASH object (systemd's or clevis's) and
// how to satisfy its policy.
type sealedObject struct {
	primaryAlg string // its parent: "ecc" or "rsa" (primaryTemplates)
	priv, pub  []byte // TPM2B_PRIVATE and TPM2B_PUBLIC contents
	pcrs       []int  // PolicyPCR on these PCRs of bank
	bank       tpm2.TPMIAlgHash
	pin        bool   // PolicyAuthValue
	auth       []byte // the object's auth value
	policy     []byte // the policy digest expected (nil: the object's authPolicy)
	what       string // the policy, for errors
}

// unseal loads o under its primary key, replays its policy in a session
// salted to the primary key with the response encrypted (AES-128 CFB),
// compares the digest with the expected one (a PCR that changed is
// reported before the TPM is asked), and unseals. An object with no
// policy but user auth (clevis's without PCRs) is unsealed with an HMAC
// session instead.
func (o sealedObject) unseal(t transport.TPM) ([]byte, error) {
	pubArea, err := parsePublic(o.pub)
	if err != nil {
		return nil, err
	}
	prim, _, err := createPrimary(t, o.primaryAlg)
	if err != nil {
		return nil, err
	}
	defer tpm2.FlushContext{FlushHandle: prim.ObjectHandle}.Execute(t)
	loaded, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: prim.ObjectHandle, Name: prim.Name, Auth: tpm2.PasswordAuth(nil)},
		InPrivate:    tpm2.TPM2BPrivate{Buffer: o.priv},
		InPublic:     tpm2.BytesAs2B[tpm2.TPMTPublic](o.pub),
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("tpm2: loading the sealed object (another TPM, or it was cleared?): %w", err)
	}
	defer tpm2.FlushContext{FlushHandle: loaded.ObjectHandle}.Execute(t)
	primPub, err := prim.OutPublic.Contents()
	if err != nil {
		return nil, err
	}
	opts := []tpm2.AuthOption{tpm2.Salted(prim.ObjectHandle, *primPub), tpm2.AESEncryption(128, tpm2.EncryptOut), tpm2.Auth(o.auth)}
	if len(o.pcrs) == 0 && !o.pin && len(pubArea.AuthPolicy.Buffer) == 0 && pubArea.ObjectAttributes.UserWithAuth {
		sess, closeSess, err := tpm2.HMACSession(t, tpm2.TPMAlgSHA256, 16, opts...)
		if err != nil {
			return nil, fmt.Errorf("tpm2: starting the session: %w", err)
		}
		defer closeSess()
		return o.unsealIn(t, loaded, sess)
	}
	sess, closeSess, err := tpm2.PolicySession(t, tpm2.TPMAlgSHA256, 16, opts...)
	if err != nil {
		return nil, fmt.Errorf("tpm2: starting the policy session: %w", err)
	}
	defer closeSess()
	if len(o.pcrs) > 0 {
		if _, err := (tpm2.PolicyPCR{PolicySession: sess.Handle(), Pcrs: selection(o.bank, o.pcrs)}).Execute(t); err != nil {
			return nil, fmt.Errorf("tpm2: PolicyPCR: %w", err)
		}
	}
	if o.pin {
		if _, err := (tpm2.PolicyAuthValue{PolicySession: sess.Handle()}).Execute(t); err != nil {
			return nil, fmt.Errorf("tpm2: PolicyAuthValue: %w", err)
		}
	}
	dg, err := tpm2.PolicyGetDigest{PolicySession: sess.Handle()}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("tpm2: PolicyGetDigest: %w", err)
	}
	want := o.policy
	if len(want) == 0 {
		want = pubArea.AuthPolicy.Buffer
	}
	if !bytes.Equal(dg.PolicyDigest.Buffer, want) {
		// Do not ask the TPM to unseal what it will refuse.
		return nil, fmt.Errorf("%w (%s)", ErrPolicyMismatch, o.what)
	}
	return o.unsealIn(t, loaded, sess)
}

func (o sealedObject) unsealIn(t transport.TPM, loaded *tpm2.LoadResponse, sess tpm2.Session) ([]byte, error) {
	un, err := tpm2.Unseal{ItemHandle: tpm2.AuthHandle{Handle: loaded.ObjectHandle, Name: loaded.Name, Auth: sess}}.Execute(t)
	if err != nil {
		switch {
		case errors.Is(err, tpm2.TPMRCPolicyFail):
			return nil, fmt.Errorf("%w (%s)", ErrPolicyMismatch, o.what)
		case errors.Is(err, tpm2.TPMRCAuthFail), errors.Is(err, tpm2.TPMRCBadAuth):
			return nil, ErrWrongPIN
		}
		return nil, fmt.Errorf("tpm2: unsealing: %w", err)
	}
	return un.OutData.Buffer, nil
}

// Describe summarises a token for listings and gives its parameters.
func Describe(raw json.RawMessage) (string, map[string]any) {
	tok, err := ParseToken(raw)
	if err != nil {
		return "unreadable: " + err.Error(), map[string]any{"error": err.Error()}
	}
	pcrs := tok.PCRs
	if pcrs == nil {
		pcrs = []int{}
	}
	text := fmt.Sprintf("PCRs %v (%s)", pcrs, tok.PCRBank)
	if tok.PIN {
		text += " + PIN"
	}
	return text, map[string]any{"pcrs": pcrs, "bank": tok.PCRBank, "pin": tok.PIN, "primary_alg": tok.PrimaryAlg}
}
