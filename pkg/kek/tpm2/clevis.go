package tpm2

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/go-tpm/tpm2"

	"github.com/encblk/encblk/pkg/kek/clevis"
	"github.com/encblk/encblk/pkg/keyring"
)

// ClevisPinName is the name of clevis's TPM2 pin.
const ClevisPinName = "tpm2"

// ClevisPin is clevis's tpm2 pin as clevis 19 (Debian 12's
// clevis-encrypt-tpm2 and clevis-decrypt-tpm2) does it: a random A256GCM
// JWK sealed in a KEYEDHASH object (fixedtpm|fixedparent|noda|
// adminwithpolicy, and userwithauth when no PCR is named) under the owner
// hierarchy's primary key (tpm2-tools' default template of the "key"
// algorithm, the same as systemd's), its policy PolicyPCR on pcr_ids of
// pcr_bank; the JWE ("alg":"dir", A256GCM) is encrypted with that JWK and
// its header's clevis.tpm2 holds hash, key, pcr_bank, pcr_ids and the
// object (jwk_pub, jwk_priv: the marshalled TPM2B_PUBLIC and
// TPM2B_PRIVATE in base64url).
type ClevisPin struct {
	device string
}

// NewClevisPin is the tpm2 pin of the TPM device (as NewIdentity's).
func NewClevisPin(device string) *ClevisPin {
	if device == "" {
		device = DefaultDevice
	}
	return &ClevisPin{device: device}
}

// clevisHeader is the header's clevis.tpm2 object (fields in jose's
// order).
type clevisHeader struct {
	Hash    string `json:"hash"`
	JWKPriv string `json:"jwk_priv"`
	JWKPub  string `json:"jwk_pub"`
	Key     string `json:"key"`
	PCRBank string `json:"pcr_bank,omitempty"`
	PCRIDs  string `json:"pcr_ids,omitempty"`
}

// ClevisConfig is the configuration clevis encrypt tpm2 takes.
type ClevisConfig struct {
	Hash      string          `json:"hash,omitempty"`       // the objects' name algorithm: sha256 (the default) only
	Key       string          `json:"key,omitempty"`        // the primary key: ecc (default) or rsa
	PCRBank   string          `json:"pcr_bank,omitempty"`   // default sha1, as clevis
	PCRIDs    json.RawMessage `json:"pcr_ids,omitempty"`    // "7,11" or ["7","11"] or [7,11]
	PCRDigest string          `json:"pcr_digest,omitempty"` // the PCR values to bind instead of the current ones (pcrValues)
}

// pcrIDs parses pcr_ids as clevis takes it: a string or an array.
func (c *ClevisConfig) pcrIDs() ([]int, error) {
	if len(c.PCRIDs) == 0 || string(c.PCRIDs) == "null" {
		return nil, nil
	}
	var s string
	if json.Unmarshal(c.PCRIDs, &s) == nil {
		return ParsePCRs(strings.ReplaceAll(s, " ", ""))
	}
	var list []json.RawMessage
	if err := json.Unmarshal(c.PCRIDs, &list); err != nil {
		return nil, fmt.Errorf("tpm2 pin: pcr_ids: want a string or an array")
	}
	ids := make([]string, len(list))
	for i, e := range list {
		ids[i] = strings.Trim(string(e), `"`)
	}
	return ParsePCRs(strings.Join(ids, ","))
}

// Encrypt implements clevis.Pin.
func (p *ClevisPin) Encrypt(ctx context.Context, config json.RawMessage, plaintext []byte) (*clevis.JWE, error) {
	cfg := ClevisConfig{Hash: "sha256", Key: "ecc", PCRBank: "sha1"}
	if err := json.Unmarshal(config, &cfg); err != nil {
		return nil, fmt.Errorf("tpm2 pin: configuration: %v", err)
	}
	pcrs, err := cfg.pcrIDs()
	if err != nil {
		return nil, err
	}
	switch {
	case cfg.Hash != "sha256":
		return nil, fmt.Errorf("tpm2 pin: hash %q is not supported (sha256 is)", cfg.Hash)
	case cfg.Key != "ecc" && cfg.Key != "rsa":
		return nil, fmt.Errorf("tpm2 pin: key %q is not supported (ecc and rsa are)", cfg.Key)
	case cfg.PCRDigest != "" && len(pcrs) == 0:
		// clevis ignores it then; binding to nothing is not what was meant.
		return nil, errors.New("tpm2 pin: pcr_digest needs pcr_ids")
	}
	bank, err := bankByName(cfg.PCRBank)
	if err != nil {
		return nil, fmt.Errorf("tpm2 pin: pcr_bank %q", cfg.PCRBank)
	}
	var expected []byte // pcr_digest's PCR values; nil: the current ones
	if cfg.PCRDigest != "" {
		if expected, err = pcrValues(cfg.PCRDigest, bank, len(pcrs)); err != nil {
			return nil, err
		}
	}
	cek, err := keyring.NewSecret(32)
	if err != nil {
		return nil, err
	}
	defer cek.Destroy()
	if _, err := rand.Read(cek.Bytes()); err != nil {
		return nil, err
	}
	// The JWK, as jose jwk gen -i '{"alg":"A256GCM"}' writes it, is what
	// the TPM seals.
	jwk, err := keyring.NewSecret(len(`{"alg":"A256GCM","k":"","key_ops":["encrypt","decrypt"],"kty":"oct"}`) + base64.RawURLEncoding.EncodedLen(32))
	if err != nil {
		return nil, err
	}
	defer jwk.Destroy()
	b := append(jwk.Bytes()[:0], `{"alg":"A256GCM","k":"`...)
	b = base64.RawURLEncoding.AppendEncode(b, cek.Bytes())
	b = append(b, `","key_ops":["encrypt","decrypt"],"kty":"oct"}`...)
	if len(b) != jwk.Len() {
		return nil, errors.New("tpm2 pin: JWK length")
	}

	t, err := open(ctx, p.device)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	prim, _, err := createPrimary(t, cfg.Key)
	if err != nil {
		return nil, tpmError(err)
	}
	defer tpm2.FlushContext{FlushHandle: prim.ObjectHandle}.Execute(t)
	attrs := tpm2.TPMAObject{FixedTPM: true, FixedParent: true, NoDA: true, AdminWithPolicy: true}
	var policy []byte
	switch {
	case expected != nil:
		policy = expectedPolicy(bank, pcrs, expected)
	case len(pcrs) > 0:
		if policy, err = policyDigest(t, bank, pcrs, false); err != nil {
			return nil, tpmError(err)
		}
	default:
		attrs.UserWithAuth = true
	}
	created, err := createSealed(t, prim, attrs, policy, nil, jwk.Bytes())
	if err != nil {
		return nil, tpmError(err)
	}
	h := clevisHeader{Hash: cfg.Hash, Key: cfg.Key,
		JWKPub:  clevis.B64(tpm2.Marshal(created.OutPublic)),
		JWKPriv: clevis.B64(tpm2.Marshal(created.OutPrivate))}
	if len(pcrs) > 0 {
		h.PCRBank = cfg.PCRBank
		ids := make([]string, len(pcrs))
		for i, n := range pcrs {
			ids[i] = strconv.Itoa(n)
		}
		h.PCRIDs = strings.Join(ids, ",")
	}
	c, err := json.Marshal(struct {
		Pin  string       `json:"pin"`
		TPM2 clevisHeader `json:"tpm2"`
	}{ClevisPinName, h})
	if err != nil {
		return nil, err
	}
	return clevis.Seal(&clevis.Header{Alg: "dir", Clevis: c}, cek.Bytes(), plaintext)
}

// pcrValues decodes clevis's pcr_digest: despite its name, the PCR
// values themselves (base64url), as tpm2_pcrread -o writes them for the
// n PCRs of pcr_ids: each a hash of bank's size, in ascending PCR order.
// clevis encrypt tpm2 hands them to tpm2_createpolicy -f, which binds
// the policy to them instead of the current values (a policy for values
// the PCRs will have after a planned change), and so does Encrypt. The
// JWE does not record them: clevis decrypt, like Decrypt, needs only
// pcr_ids and pcr_bank.
func pcrValues(b64 string, bank tpm2.TPMIAlgHash, n int) ([]byte, error) {
	vals, err := clevis.B64Decode(b64)
	if err != nil {
		return nil, fmt.Errorf("tpm2 pin: pcr_digest is not base64url: %v", err)
	}
	h, err := bank.Hash()
	if err != nil {
		return nil, fmt.Errorf("tpm2 pin: pcr_bank: %v", err)
	}
	if len(vals) != n*h.Size() {
		return nil, fmt.Errorf("tpm2 pin: pcr_digest holds %d bytes; %d PCRs of %s want %d (their values, as tpm2_pcrread -o writes them)", len(vals), n, bankName(bank), n*h.Size())
	}
	return vals, nil
}

// expectedPolicy is the policy digest of PolicyPCR on pcrs of bank with
// the PCR values vals, computed without the TPM (tpm2_createpolicy's trial
// session does the same): the TPM checks at PolicyPCR, when unsealing,
// that SHA-256 of the current values is this digest.
func expectedPolicy(bank tpm2.TPMIAlgHash, pcrs []int, vals []byte) []byte {
	pc, _ := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256) // sha256 is known
	sum := sha256.Sum256(vals)
	tpm2.PolicyPCR{Pcrs: selection(bank, pcrs), PcrDigest: tpm2.TPM2BDigest{Buffer: sum[:]}}.Update(pc)
	return pc.Hash().Digest
}

// Decrypt implements clevis.Pin: the TPM unseals the JWK, which opens
// the JWE.
func (p *ClevisPin) Decrypt(ctx context.Context, jwe *clevis.JWE) (*keyring.Secret, error) {
	var h clevisHeader
	if err := jwe.Header.PinData(ClevisPinName, &h); err != nil {
		return nil, err
	}
	o, err := h.object()
	if err != nil {
		return nil, err
	}
	if jwe.Header.Alg != "dir" {
		return nil, fmt.Errorf("%w: a tpm2 JWE wants alg dir, not %q", clevis.ErrMalformed, jwe.Header.Alg)
	}
	t, err := open(ctx, p.device)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	jwk, err := o.unseal(t)
	if err != nil {
		return nil, tpmError(err)
	}
	defer clear(jwk)
	cek, err := jwkKey(jwk)
	if err != nil {
		return nil, err
	}
	defer clear(cek)
	return jwe.Open(cek)
}

// jwkKey returns the 32-byte key of the symmetric JWK jwk ({"kty":"oct",
// "k":"..."}, as clevis seals it). The key never becomes a Go string,
// which could not be wiped: "k" is taken as raw JSON bytes and decoded
// with clevis.B64DecodeSecret; the caller clears the key.
func jwkKey(jwk []byte) ([]byte, error) {
	var k struct {
		Kty string          `json:"kty"`
		K   json.RawMessage `json:"k"`
	}
	defer func() { clear(k.K) }()
	if err := json.Unmarshal(jwk, &k); err != nil || k.Kty != "oct" {
		return nil, fmt.Errorf("%w: the TPM's object holds no symmetric JWK", clevis.ErrMalformed)
	}
	bad := fmt.Errorf("%w: the sealed JWK's key is not 32 bytes of base64url", clevis.ErrMalformed)
	// A JSON string of base64url characters: no escapes to undo.
	if len(k.K) < 2 || k.K[0] != '"' || k.K[len(k.K)-1] != '"' {
		return nil, bad
	}
	key, err := clevis.B64DecodeSecret(k.K[1 : len(k.K)-1])
	if err != nil || len(key) != 32 {
		clear(key)
		return nil, bad
	}
	return key, nil
}

// object is the sealed object h describes.
func (h *clevisHeader) object() (*sealedObject, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: clevis.tpm2: %s", clevis.ErrMalformed, fmt.Sprintf(format, args...))
	}
	if h.Hash != "sha256" {
		return nil, fmt.Errorf("tpm2 pin: hash %q is not supported (sha256 is)", h.Hash)
	}
	o := &sealedObject{primaryAlg: h.Key, what: "no PCR"}
	if _, ok := primaryTemplates[h.Key]; !ok {
		return nil, bad("key %q", h.Key)
	}
	var err error
	if h.PCRIDs != "" {
		if o.pcrs, err = ParsePCRs(h.PCRIDs); err != nil {
			return nil, bad("pcr_ids %q", h.PCRIDs)
		}
		if o.bank, err = bankByName(h.PCRBank); err != nil {
			return nil, bad("pcr_bank %q", h.PCRBank)
		}
		o.what = fmt.Sprintf("PCRs %v, bank %s", o.pcrs, h.PCRBank)
	}
	for _, f := range []struct {
		s   string
		out *[]byte
		why string
	}{{h.JWKPub, &o.pub, "jwk_pub"}, {h.JWKPriv, &o.priv, "jwk_priv"}} {
		b, err := clevis.B64Decode(f.s)
		if err != nil || len(b) < 3 || int(binary.BigEndian.Uint16(b)) != len(b)-2 {
			return nil, bad("%s is not a marshalled TPM2B", f.why)
		}
		*f.out = b[2:]
	}
	if _, err := parsePublic(o.pub); err != nil {
		return nil, err
	}
	return o, nil
}

// Describe implements clevis.Pin: "tpm2 PCRs [7] (sha256)".
func (p *ClevisPin) Describe(jwe *clevis.JWE) string {
	var h clevisHeader
	if jwe.Header.PinData(ClevisPinName, &h) != nil {
		return ClevisPinName
	}
	pcrs, _ := ParsePCRs(h.PCRIDs)
	if len(pcrs) == 0 {
		return ClevisPinName + " (no PCR)"
	}
	return fmt.Sprintf("%s PCRs %v (%s)", ClevisPinName, pcrs, h.PCRBank)
}

// Params implements clevis.Pin: the PCRs, the bank and the key.
func (p *ClevisPin) Params(jwe *clevis.JWE) map[string]any {
	var h clevisHeader
	if jwe.Header.PinData(ClevisPinName, &h) != nil {
		return map[string]any{}
	}
	pcrs, _ := ParsePCRs(h.PCRIDs)
	if pcrs == nil {
		pcrs = []int{}
	}
	return map[string]any{"pcrs": pcrs, "bank": h.PCRBank, "key": h.Key}
}
