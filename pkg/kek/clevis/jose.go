package clevis

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"

	"github.com/encblk/encblk/pkg/keyring"
)

// The parts of JOSE (RFC 7515-7518, 7638) that clevis uses, on the
// standard library: compact and flattened JWE with "dir" and "ECDH-ES"
// key management and A256GCM content encryption, EC JWKs (P-521, as tang
// makes them) with their thumbprints, and ES512 JWS verification (a Tang
// advertisement). Everything parsed here may come from a disk anyone can
// write or from a network peer: sizes are bounded and nothing panics.

// MaxJWE bounds a JWE (compact or flattened), and anything parsed from one.
const MaxJWE = 64 << 10

// ErrMalformed is wrapped when a JWE, JWK, JWS or token cannot be parsed.
var ErrMalformed = errors.New("clevis: malformed JOSE object")

var b64 = base64.RawURLEncoding

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// b64Decode decodes base64url without padding (some encoders add '='; it
// is tolerated).
func b64Decode(s string) ([]byte, error) { return B64DecodeSecret([]byte(s)) }

// JWE is a JWE in its five parts (RFC 7516 §7.1), the protected header
// both as sent (its base64url text is the additional authenticated data)
// and decoded.
type JWE struct {
	Protected    string
	Header       Header
	EncryptedKey []byte
	IV           []byte
	Ciphertext   []byte
	Tag          []byte
}

// Header is the protected header of a clevis JWE. Clevis holds the pin's
// name and its own data ("tang": url and advertisement, "sss": threshold,
// prime and the shares' JWEs).
type Header struct {
	Alg    string          `json:"alg"`
	Enc    string          `json:"enc"`
	Kid    string          `json:"kid,omitempty"`
	EPK    *JWK            `json:"epk,omitempty"`
	Clevis json.RawMessage `json:"clevis,omitempty"`
}

// Pin is the "pin" member of the header's clevis object.
func (h *Header) Pin() (string, error) {
	var c struct {
		Pin string `json:"pin"`
	}
	if err := json.Unmarshal(h.Clevis, &c); err != nil || c.Pin == "" {
		return "", malformed("the protected header names no clevis pin")
	}
	return c.Pin, nil
}

// PinData decodes the header's clevis.<pin> object into v.
func (h *Header) PinData(pin string, v any) error {
	var c map[string]json.RawMessage
	if err := json.Unmarshal(h.Clevis, &c); err != nil {
		return malformed("clevis header: %v", err)
	}
	raw, ok := c[pin]
	if !ok {
		return malformed("the clevis header has no %q object", pin)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return malformed("clevis.%s: %v", pin, err)
	}
	return nil
}

// ParseCompact parses a compact JWE (five base64url parts joined by dots).
func ParseCompact(s string) (*JWE, error) {
	if len(s) > MaxJWE {
		return nil, malformed("JWE of %d bytes", len(s))
	}
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) != 5 {
		return nil, malformed("a compact JWE has 5 parts, not %d", len(parts))
	}
	return parseParts(parts[0], parts[1], parts[2], parts[3], parts[4])
}

// flatJWE is the flattened JSON serialization (RFC 7516 §7.2.2) that the
// clevis LUKS2 token holds (jose jwe fmt).
type flatJWE struct {
	Protected    string `json:"protected"`
	EncryptedKey string `json:"encrypted_key,omitempty"`
	IV           string `json:"iv"`
	Ciphertext   string `json:"ciphertext"`
	Tag          string `json:"tag"`
}

// ParseFlattened parses a flattened JSON JWE.
func ParseFlattened(raw []byte) (*JWE, error) {
	if len(raw) > MaxJWE {
		return nil, malformed("JWE of %d bytes", len(raw))
	}
	var f flatJWE
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, malformed("JWE: %v", err)
	}
	return parseParts(f.Protected, f.EncryptedKey, f.IV, f.Ciphertext, f.Tag)
}

func parseParts(prot, ek, iv, ct, tag string) (*JWE, error) {
	j := &JWE{Protected: prot}
	hdr, err := b64Decode(prot)
	if err != nil || len(hdr) == 0 {
		return nil, malformed("protected header is not base64url")
	}
	if err := json.Unmarshal(hdr, &j.Header); err != nil {
		return nil, malformed("protected header: %v", err)
	}
	for _, p := range []struct {
		s   string
		out *[]byte
		why string
	}{{ek, &j.EncryptedKey, "encrypted key"}, {iv, &j.IV, "IV"}, {ct, &j.Ciphertext, "ciphertext"}, {tag, &j.Tag, "tag"}} {
		if *p.out, err = b64Decode(p.s); err != nil {
			return nil, malformed("%s is not base64url", p.why)
		}
	}
	if j.Header.Enc != "A256GCM" {
		return nil, malformed("content encryption %q (clevis uses A256GCM)", j.Header.Enc)
	}
	if len(j.IV) != 12 || len(j.Tag) != 16 {
		return nil, malformed("A256GCM wants a 12-byte IV and a 16-byte tag, not %d and %d", len(j.IV), len(j.Tag))
	}
	return j, nil
}

// Compact is the compact serialization.
func (j *JWE) Compact() string {
	return strings.Join([]string{j.Protected, b64.EncodeToString(j.EncryptedKey), b64.EncodeToString(j.IV),
		b64.EncodeToString(j.Ciphertext), b64.EncodeToString(j.Tag)}, ".")
}

// Flattened is the flattened JSON serialization.
func (j *JWE) Flattened() json.RawMessage {
	raw, _ := json.Marshal(flatJWE{Protected: j.Protected, EncryptedKey: b64.EncodeToString(j.EncryptedKey),
		IV: b64.EncodeToString(j.IV), Ciphertext: b64.EncodeToString(j.Ciphertext), Tag: b64.EncodeToString(j.Tag)})
	return raw
}

// Seal encrypts plaintext with the 32-byte content key cek under header h
// (A256GCM, a random IV) and returns the JWE.
func Seal(h *Header, cek, plaintext []byte) (*JWE, error) {
	h.Enc = "A256GCM"
	hdr, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	j := &JWE{Protected: b64.EncodeToString(hdr), Header: *h, IV: make([]byte, 12)}
	if _, err := rand.Read(j.IV); err != nil {
		return nil, err
	}
	gcm, err := newGCM(cek)
	if err != nil {
		return nil, err
	}
	out := gcm.Seal(nil, j.IV, plaintext, []byte(j.Protected))
	j.Ciphertext, j.Tag = out[:len(out)-16], out[len(out)-16:]
	return j, nil
}

// Open decrypts j with the content key cek, into protected memory.
func (j *JWE) Open(cek []byte) (*keyring.Secret, error) {
	gcm, err := newGCM(cek)
	if err != nil {
		return nil, err
	}
	if len(j.Ciphertext) == 0 {
		return nil, malformed("empty ciphertext")
	}
	buf, err := keyring.NewSecret(len(j.Ciphertext) + 16)
	if err != nil {
		return nil, err
	}
	defer buf.Destroy()
	sealed := buf.Bytes()
	copy(sealed, j.Ciphertext)
	copy(sealed[len(j.Ciphertext):], j.Tag)
	// In place: the plaintext lands in protected memory.
	pt, err := gcm.Open(sealed[:0], j.IV, sealed, []byte(j.Protected))
	if err != nil {
		return nil, errors.New("clevis: the JWE does not decrypt (wrong key, or the token was altered)")
	}
	out, err := keyring.NewSecret(len(pt))
	if err != nil {
		return nil, err
	}
	copy(out.Bytes(), pt)
	return out, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("clevis: A256GCM key of %d bytes", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// ConcatKDF derives the content key of "ECDH-ES" direct key agreement from
// the shared secret z (RFC 7518 §4.6.2: Concat KDF, SHA-256, AlgorithmID the
// "enc" value, no PartyUInfo/PartyVInfo, as jose writes them).
func ConcatKDF(z []byte, enc string, keyLen int) []byte {
	var info []byte
	info = binary.BigEndian.AppendUint32(info, uint32(len(enc)))
	info = append(info, enc...)
	info = binary.BigEndian.AppendUint32(info, 0) // apu
	info = binary.BigEndian.AppendUint32(info, 0) // apv
	info = binary.BigEndian.AppendUint32(info, uint32(keyLen*8))
	var out []byte
	for counter := uint32(1); len(out) < keyLen; counter++ {
		h := sha256.New()
		h.Write(binary.BigEndian.AppendUint32(nil, counter))
		h.Write(z)
		h.Write(info)
		out = h.Sum(out)
	}
	return out[:keyLen]
}

// JWK is an EC JSON Web Key (RFC 7517/7518 §6.2), the only kind tang uses.
// Members encblk does not use are kept in Raw.
type JWK struct {
	Kty    string   `json:"kty"`
	Crv    string   `json:"crv,omitempty"`
	X      string   `json:"x,omitempty"`
	Y      string   `json:"y,omitempty"`
	Alg    string   `json:"alg,omitempty"`
	KeyOps []string `json:"key_ops,omitempty"`
}

// P521Len is the length of a P-521 coordinate and scalar.
const P521Len = 66

// Point returns the key's point in uncompressed form (0x04 || X || Y).
// Only P-521 is accepted: tang makes no other keys.
func (k *JWK) Point() ([]byte, error) {
	if k.Kty != "EC" || k.Crv != "P-521" {
		return nil, malformed("key type %q curve %q (tang uses EC P-521)", k.Kty, k.Crv)
	}
	x, err1 := b64Decode(k.X)
	y, err2 := b64Decode(k.Y)
	if err1 != nil || err2 != nil || len(x) == 0 || len(y) == 0 || len(x) > P521Len || len(y) > P521Len {
		return nil, malformed("EC key coordinates")
	}
	p := make([]byte, 1+2*P521Len)
	p[0] = 4
	copy(p[1+P521Len-len(x):], x)
	copy(p[1+2*P521Len-len(y):], y)
	return p, nil
}

// ECJWK is the public JWK of an uncompressed P-521 point.
func ECJWK(point []byte) *JWK {
	return &JWK{Kty: "EC", Crv: "P-521", X: b64.EncodeToString(point[1 : 1+P521Len]), Y: b64.EncodeToString(point[1+P521Len:])}
}

// Thumbprint is the key's RFC 7638 thumbprint with hash "S256" (SHA-256)
// or "S1" (SHA-1), base64url, as jose jwk thp prints it.
func (k *JWK) Thumbprint(hash string) (string, error) {
	canon, err := json.Marshal(struct {
		Crv string `json:"crv"`
		Kty string `json:"kty"`
		X   string `json:"x"`
		Y   string `json:"y"`
	}{k.Crv, k.Kty, k.X, k.Y})
	if err != nil {
		return "", err
	}
	switch hash {
	case "S256":
		s := sha256.Sum256(canon)
		return b64.EncodeToString(s[:]), nil
	case "S1":
		s := sha1.Sum(canon)
		return b64.EncodeToString(s[:]), nil
	}
	return "", fmt.Errorf("clevis: thumbprint hash %q", hash)
}

// MatchesThumbprint reports whether thp is k's S256 or S1 thumbprint
// (clevis accepts both).
func (k *JWK) MatchesThumbprint(thp string) bool {
	for _, h := range []string{"S256", "S1"} {
		if t, err := k.Thumbprint(h); err == nil && t == thp {
			return true
		}
	}
	return false
}

// Can reports whether the key's key_ops allow op.
func (k *JWK) Can(op string) bool { return slices.Contains(k.KeyOps, op) }

// ECDHES is the sender's side of ECDH-ES with recipient key pub: a fresh
// ephemeral key, whose public JWK goes in the header as "epk", and the
// A256GCM content key.
func ECDHES(pub *JWK) (epk *JWK, cek []byte, err error) {
	point, err := pub.Point()
	if err != nil {
		return nil, nil, err
	}
	rk, err := ecdh.P521().NewPublicKey(point)
	if err != nil {
		return nil, nil, malformed("recipient key: %v", err)
	}
	eph, err := ecdh.P521().GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	z, err := eph.ECDH(rk)
	if err != nil {
		return nil, nil, err
	}
	defer clear(z)
	return ECJWK(eph.PublicKey().Bytes()), ConcatKDF(z, "A256GCM", 32), nil
}

// VerifyJWS checks a JWS in JSON serialization (general or flattened)
// whose payload is a JWK set, as a Tang advertisement is: every key in the
// set that may verify must have signed it with ES512 (clevis: jose jws ver
// -a). It returns the set's keys, and the set as signed (JSON).
func VerifyJWS(raw []byte) ([]JWK, json.RawMessage, error) {
	if len(raw) > MaxJWE {
		return nil, nil, malformed("advertisement of %d bytes", len(raw))
	}
	var jws struct {
		Payload    string `json:"payload"`
		Protected  string `json:"protected"`
		Signature  string `json:"signature"`
		Signatures []struct {
			Protected string `json:"protected"`
			Signature string `json:"signature"`
		} `json:"signatures"`
	}
	if err := json.Unmarshal(raw, &jws); err != nil {
		return nil, nil, malformed("advertisement: %v", err)
	}
	if jws.Signature != "" {
		jws.Signatures = append(jws.Signatures, struct {
			Protected string `json:"protected"`
			Signature string `json:"signature"`
		}{jws.Protected, jws.Signature})
	}
	payload, err := b64Decode(jws.Payload)
	if err != nil {
		return nil, nil, malformed("advertisement payload is not base64url")
	}
	var set struct {
		Keys []JWK `json:"keys"`
	}
	if err := json.Unmarshal(payload, &set); err != nil || len(set.Keys) == 0 || len(set.Keys) > 64 {
		return nil, nil, malformed("advertisement payload is no JWK set")
	}
	verifiers := 0
	for i := range set.Keys {
		k := &set.Keys[i]
		if !k.Can("verify") {
			continue
		}
		verifiers++
		if !signedBy(k, jws.Payload, jws.Signatures) {
			return nil, nil, errors.New("clevis: the advertisement is not signed by its verify key " + thumb(k))
		}
	}
	if verifiers == 0 {
		return nil, nil, errors.New("clevis: the advertisement has no signing key")
	}
	return set.Keys, payload, nil
}

func thumb(k *JWK) string {
	t, _ := k.Thumbprint("S256")
	return t
}

// signedBy reports whether one of sigs is k's ES512 signature of payload.
func signedBy(k *JWK, payload string, sigs []struct {
	Protected string `json:"protected"`
	Signature string `json:"signature"`
}) bool {
	point, err := k.Point()
	if err != nil {
		return false
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P521(), point)
	if err != nil {
		return false
	}
	for _, s := range sigs {
		hdr, err := b64Decode(s.Protected)
		if err != nil {
			continue
		}
		var h struct {
			Alg string `json:"alg"`
		}
		if json.Unmarshal(hdr, &h) != nil || h.Alg != "ES512" {
			continue
		}
		sig, err := b64Decode(s.Signature)
		if err != nil || len(sig) != 2*P521Len {
			continue
		}
		digest := sha512.Sum512([]byte(s.Protected + "." + payload))
		r := new(big.Int).SetBytes(sig[:P521Len])
		ss := new(big.Int).SetBytes(sig[P521Len:])
		if ecdsa.Verify(pub, digest[:], r, ss) {
			return true
		}
	}
	return false
}

// B64 is base64url without padding, as JOSE writes it.
func B64(b []byte) string { return b64.EncodeToString(b) }

// B64DecodeSecret is B64Decode from bytes into a new slice, for a secret
// that must never become a Go string (which could not be wiped): the
// caller clears src and the result; nothing is left behind on error.
func B64DecodeSecret(src []byte) ([]byte, error) {
	src = bytes.TrimRight(src, "=")
	dst := make([]byte, b64.DecodedLen(len(src)))
	n, err := b64.Decode(dst, src)
	if err != nil {
		clear(dst)
		return nil, err
	}
	return dst[:n], nil
}

// B64Decode decodes base64url (padding tolerated).
func B64Decode(s string) ([]byte, error) { return b64Decode(s) }
