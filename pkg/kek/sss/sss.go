// Package sss is clevis's "sss" pin: Shamir's secret sharing of a content
// key over t of n other pins (tang servers, TPMs, further sss), exactly as
// clevis does it. A random 256-bit prime p is drawn; the key is the
// constant term of a random polynomial of degree t-1 over GF(p); each
// child pin encrypts one point (x, y) of it, 64 bytes (x then y, 32 bytes
// each, big-endian); the JWE's protected header records t, p and the
// children's compact JWEs (clevis.sss = {"t", "p", "jwe"}); the plaintext
// is encrypted with the key ("dir", A256GCM). Any t children that
// decrypt give t points, and Lagrange interpolation at 0 gives the key.
//
// The arithmetic on secrets (the key, the polynomial, the points) is
// field.go's: fixed-size limbs that are cleared after use, constant-time
// in the values; math/big only handles the public prime.
package sss

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strings"

	"github.com/encblk/encblk/pkg/kek/clevis"
	"github.com/encblk/encblk/pkg/keyring"
)

// Name is the pin's name in clevis JWEs.
const Name = "sss"

// keyBytes is the size of the prime and of the content key, as clevis.
const keyBytes = 32

// maxShares bounds n.
const maxShares = 64

// ErrTooFewShares is wrapped when fewer than t child pins decrypt.
var ErrTooFewShares = errors.New("sss: too few shares")

// Config is the pin's configuration, as clevis encrypt sss takes it:
// {"t": 2, "pins": {"tang": [{"url": …}, {"url": …}], "tpm2": {…}}}.
type Config struct {
	T    int                        `json:"t"`
	Pins map[string]json.RawMessage `json:"pins"`
}

// Pin is the sss pin; it encrypts and decrypts shares with Children.
type Pin struct {
	Children clevis.Pins
}

var _ clevis.Pin = (*Pin)(nil)

// New returns the sss pin over children (which may include itself).
func New(children clevis.Pins) *Pin { return &Pin{Children: children} }

// header is the pin's part of a JWE header (clevis.sss).
type header struct {
	T   int      `json:"t"`
	P   string   `json:"p"`
	JWE []string `json:"jwe"`
}

// childConfig is one child pin and its configuration, in clevis's order
// (the pins object's member order, each array in order).
type childConfig struct {
	pin    string
	config json.RawMessage
}

func parseConfig(config json.RawMessage) (int, []childConfig, error) {
	var cfg struct {
		T    *int            `json:"t"`
		Pins json.RawMessage `json:"pins"`
	}
	if err := json.Unmarshal(config, &cfg); err != nil {
		return 0, nil, fmt.Errorf("sss: configuration: %v", err)
	}
	t := 1
	if cfg.T != nil {
		t = *cfg.T
	}
	// Keep the pins object's member order, as clevis (jansson) does.
	dec := json.NewDecoder(strings.NewReader(string(cfg.Pins)))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return 0, nil, errors.New(`sss: configuration: "pins" must be an object`)
	}
	var children []childConfig
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return 0, nil, fmt.Errorf("sss: configuration: %v", err)
		}
		name, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return 0, nil, fmt.Errorf("sss: configuration: %v", err)
		}
		var list []json.RawMessage
		if err := json.Unmarshal(v, &list); err != nil {
			list = []json.RawMessage{v}
		}
		for _, c := range list {
			children = append(children, childConfig{name, c})
		}
	}
	if len(children) > maxShares {
		return 0, nil, fmt.Errorf("sss: %d pins, at most %d", len(children), maxShares)
	}
	if t < 1 || t > len(children) {
		return 0, nil, fmt.Errorf("sss: invalid threshold (required: 1 <= %d <= %d)", t, len(children))
	}
	return t, children, nil
}

// Encrypt implements clevis.Pin.
func (p *Pin) Encrypt(ctx context.Context, config json.RawMessage, plaintext []byte) (*clevis.JWE, error) {
	t, children, err := parseConfig(config)
	if err != nil {
		return nil, err
	}
	prime, err := rand.Prime(rand.Reader, keyBytes*8)
	if err != nil {
		return nil, err
	}
	fd, err := newField(prime)
	if err != nil {
		return nil, err
	}
	coef := make([]elem, t) // coef[0] is the key
	defer clear(coef)
	for i := range coef {
		if coef[i], err = fd.random(rand.Reader); err != nil {
			return nil, err
		}
	}
	h := header{T: t, P: enc(prime)}
	for _, c := range children {
		pt, err := fd.sharePoint(coef)
		if err != nil {
			return nil, err
		}
		jwe, err := p.Children.Encrypt(ctx, c.pin, c.config, pt)
		clear(pt)
		if err != nil {
			return nil, fmt.Errorf("sss: %s pin: %w", c.pin, err)
		}
		h.JWE = append(h.JWE, jwe.Compact())
	}
	pin, err := json.Marshal(map[string]any{"pin": Name, Name: h})
	if err != nil {
		return nil, err
	}
	key := make([]byte, keyBytes)
	defer clear(key)
	fd.store(&coef[0], key)
	return clevis.Seal(&clevis.Header{Alg: "dir", Clevis: pin}, key, plaintext)
}

// sharePoint is a random point of the polynomial coef: x || y, each
// keyBytes big-endian; the caller clears it.
func (f *field) sharePoint(coef []elem) ([]byte, error) {
	x, err := f.random(rand.Reader)
	if err != nil {
		return nil, err
	}
	y := coef[len(coef)-1] // Horner's rule
	for i := len(coef) - 2; i >= 0; i-- {
		y = f.mul(&y, &x)
		y = f.add(&y, &coef[i])
	}
	pt := make([]byte, 2*keyBytes)
	f.store(&x, pt[:keyBytes])
	f.store(&y, pt[keyBytes:])
	clear(x[:])
	clear(y[:])
	return pt, nil
}

// Decrypt implements clevis.Pin: the children are tried together; the
// first t points recover the key.
func (p *Pin) Decrypt(ctx context.Context, jwe *clevis.JWE) (*keyring.Secret, error) {
	var h header
	if err := jwe.Header.PinData(Name, &h); err != nil {
		return nil, err
	}
	if jwe.Header.Alg != "dir" {
		return nil, fmt.Errorf("%w: an sss JWE wants alg dir", clevis.ErrMalformed)
	}
	pb, err := b64dec(h.P)
	if err != nil || len(pb) != keyBytes {
		return nil, fmt.Errorf("%w: clevis.sss.p", clevis.ErrMalformed)
	}
	fd, err := newField(new(big.Int).SetBytes(pb))
	if err != nil {
		return nil, fmt.Errorf("%w: clevis.sss.p: %v", clevis.ErrMalformed, err)
	}
	if len(h.JWE) == 0 || len(h.JWE) > maxShares || h.T < 1 || h.T > len(h.JWE) {
		return nil, fmt.Errorf("%w: clevis.sss: threshold %d of %d shares", clevis.ErrMalformed, h.T, len(h.JWE))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		i   int
		pt  *keyring.Secret
		err error
	}
	results := make(chan result, len(h.JWE))
	for i, s := range h.JWE {
		go func() {
			child, err := clevis.ParseCompact(s)
			var pt *keyring.Secret
			if err == nil {
				pt, err = p.Children.Decrypt(ctx, child)
			}
			results <- result{i, pt, err}
		}()
	}
	var points []*keyring.Secret
	defer func() {
		for _, pt := range points {
			pt.Destroy()
		}
	}()
	var errs []string
	received := 0
	defer func() {
		// Shares still coming are not needed: wipe them as they arrive.
		go func(n int) {
			for range n {
				if r := <-results; r.pt != nil {
					r.pt.Destroy()
				}
			}
		}(len(h.JWE) - received)
	}()
	for range h.JWE {
		r := <-results
		received++
		if r.err != nil {
			errs = append(errs, fmt.Sprintf("share %d: %v", r.i, r.err))
			continue
		}
		if r.pt.Len() != 2*keyBytes {
			r.pt.Destroy()
			errs = append(errs, fmt.Sprintf("share %d: a point of %d bytes", r.i, r.pt.Len()))
			continue
		}
		points = append(points, r.pt)
		if len(points) == h.T {
			cancel() // the others are not needed
			break
		}
	}
	if len(points) < h.T {
		sort.Strings(errs)
		return nil, fmt.Errorf("%w: %d of %d needed (%s)", ErrTooFewShares, len(points), h.T, strings.Join(errs, "; "))
	}
	key, err := fd.recoverKey(points)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	return jwe.Open(key)
}

// recoverKey interpolates the points at 0 (clevis's sss_recover); the
// caller clears the key.
func (f *field) recoverKey(points []*keyring.Secret) ([]byte, error) {
	xs := make([]elem, len(points))
	ys := make([]elem, len(points))
	var k, num, den, t elem
	defer func() {
		clear(xs)
		clear(ys)
		clear(k[:])
		clear(num[:])
		clear(den[:])
		clear(t[:])
	}()
	for i, pt := range points {
		xs[i] = f.load(pt.Bytes()[:keyBytes])
		ys[i] = f.load(pt.Bytes()[keyBytes:])
	}
	var zero elem
	for i := range xs {
		num, den = f.one, f.one
		for j := range xs {
			if i == j {
				continue
			}
			t = f.sub(&zero, &xs[j])
			num = f.mul(&num, &t)
			t = f.sub(&xs[i], &xs[j])
			if isZero(&t) {
				return nil, fmt.Errorf("%w: two shares with the same x", clevis.ErrMalformed)
			}
			den = f.mul(&den, &t)
		}
		t = f.inv(&den)
		t = f.mul(&num, &t)
		t = f.mul(&t, &ys[i])
		k = f.add(&k, &t)
	}
	key := make([]byte, keyBytes)
	f.store(&k, key)
	return key, nil
}

// Describe implements clevis.Pin: "sss t of n: child, child…".
func (p *Pin) Describe(jwe *clevis.JWE) string {
	var h header
	if jwe.Header.PinData(Name, &h) != nil {
		return Name
	}
	var kids []string
	for _, s := range h.JWE {
		if child, err := clevis.ParseCompact(s); err == nil {
			kids = append(kids, p.Children.Describe(child))
		} else {
			kids = append(kids, "?")
		}
	}
	return fmt.Sprintf("%s %d of %d: %s", Name, h.T, len(h.JWE), strings.Join(kids, ", "))
}

// Params implements clevis.Pin: the threshold and each child's pin and
// parameters.
func (p *Pin) Params(jwe *clevis.JWE) map[string]any {
	t, children := Threshold(jwe)
	kids := []map[string]any{}
	for _, c := range children {
		kids = append(kids, p.Children.Params(c))
	}
	return map[string]any{"t": t, "n": len(children), "pins": kids}
}

// Threshold is t and the children of an sss JWE (for listings).
func Threshold(jwe *clevis.JWE) (t int, children []*clevis.JWE) {
	var h header
	if jwe.Header.PinData(Name, &h) != nil {
		return 0, nil
	}
	for _, s := range h.JWE {
		if child, err := clevis.ParseCompact(s); err == nil {
			children = append(children, child)
		}
	}
	return h.T, children
}

// enc is x as keyBytes big-endian bytes, base64url.
func enc(x *big.Int) string { return clevis.B64(x.FillBytes(make([]byte, keyBytes))) }

func b64dec(s string) ([]byte, error) { return clevis.B64Decode(s) }
