// Package tang is clevis's "tang" pin: network-bound disk encryption with
// a Tang server (latchset/tang). Encryption needs only the server's
// advertisement (its signed JWK set): an ECDH-ES key agreement with the
// server's exchange key, whose ephemeral public key is kept in the JWE.
// Decryption asks the server to finish the agreement without telling it
// anything (the McCallum-Relyea exchange): the client blinds the ephemeral
// key with a fresh one, the server multiplies by its private key, the
// client removes the blinding. The server never sees the key, and a stolen
// disk opens only where the server can be reached.
//
// Every exchange has a deadline (Client.Timeout, default 10 s) and a bound
// on the answer's size, so a slow or hostile server costs at most that.
package tang

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"filippo.io/nistec"

	"github.com/encblk/encblk/pkg/kek/clevis"
	"github.com/encblk/encblk/pkg/keyring"
)

// Name is the pin's name in clevis JWEs.
const Name = "tang"

// DefaultTimeout bounds one exchange with a Tang server.
const DefaultTimeout = 10 * time.Second

// maxAnswer bounds what a server may send.
const maxAnswer = 64 << 10

// ErrServer is wrapped when a Tang server cannot be reached or answers
// something other than what the protocol allows.
var ErrServer = errors.New("tang server")

// Config is the pin's configuration, as clevis encrypt tang takes it.
type Config struct {
	URL string `json:"url"`
	// Thp is the thumbprint (S256 or S1) of a signing key the
	// advertisement must be signed with; empty trusts the advertisement
	// fetched (as clevis -y).
	Thp string `json:"thp,omitempty"`
	// Adv is a trusted advertisement (the JWS), instead of fetching one.
	Adv json.RawMessage `json:"adv,omitempty"`
}

// Client is the tang pin: it talks to Tang servers over HTTP.
type Client struct {
	// HTTP is the client used; nil means a plain one. Its own timeout
	// applies besides Timeout.
	HTTP *http.Client
	// Timeout bounds each exchange (0: DefaultTimeout).
	Timeout time.Duration
}

var _ clevis.Pin = (*Client)(nil)

// header is the pin's part of a JWE header (clevis.tang).
type header struct {
	URL string          `json:"url"`
	Adv json.RawMessage `json:"adv"`
}

// Encrypt implements clevis.Pin: it fetches (or takes) the advertisement,
// verifies its signatures (and the pinned thumbprint), and encrypts to the
// server's exchange key.
func (c *Client) Encrypt(ctx context.Context, config json.RawMessage, plaintext []byte) (*clevis.JWE, error) {
	var cfg Config
	if err := json.Unmarshal(config, &cfg); err != nil {
		return nil, fmt.Errorf("tang: configuration: %v", err)
	}
	if err := checkURL(cfg.URL); err != nil {
		return nil, err
	}
	adv := []byte(cfg.Adv)
	if len(adv) == 0 {
		var err error
		if adv, err = c.do(ctx, http.MethodGet, strings.TrimRight(cfg.URL, "/")+"/adv/"+url.PathEscape(cfg.Thp), nil); err != nil {
			if cfg.Thp != "" {
				// tangd answers 404 for a key it does not have.
				return nil, fmt.Errorf("tang: no advertisement signed by the trusted key %s: %w", cfg.Thp, err)
			}
			return nil, err
		}
	}
	keys, set, err := clevis.VerifyJWS(adv)
	if err != nil {
		return nil, fmt.Errorf("tang: advertisement of %s: %w", cfg.URL, err)
	}
	if cfg.Thp != "" && !signedWith(keys, cfg.Thp) {
		return nil, fmt.Errorf("tang: the advertisement of %s is not signed by the trusted key %s", cfg.URL, cfg.Thp)
	}
	var exc *clevis.JWK
	for i := range keys {
		if keys[i].Can("deriveKey") {
			exc = &clevis.JWK{Kty: keys[i].Kty, Crv: keys[i].Crv, X: keys[i].X, Y: keys[i].Y}
			break
		}
	}
	if exc == nil {
		return nil, fmt.Errorf("tang: the advertisement of %s has no exchange key", cfg.URL)
	}
	kid, err := exc.Thumbprint("S256")
	if err != nil {
		return nil, err
	}
	epk, cek, err := clevis.ECDHES(exc)
	if err != nil {
		return nil, fmt.Errorf("tang: %w", err)
	}
	defer clear(cek)
	pin, err := json.Marshal(map[string]any{"pin": Name, Name: header{URL: cfg.URL, Adv: set}})
	if err != nil {
		return nil, err
	}
	return clevis.Seal(&clevis.Header{Alg: "ECDH-ES", Kid: kid, EPK: epk, Clevis: pin}, cek, plaintext)
}

// signedWith reports whether one of the verify keys has thumbprint thp.
func signedWith(keys []clevis.JWK, thp string) bool {
	for i := range keys {
		if keys[i].Can("verify") && keys[i].MatchesThumbprint(thp) {
			return true
		}
	}
	return false
}

// Decrypt implements clevis.Pin with the McCallum-Relyea exchange.
func (c *Client) Decrypt(ctx context.Context, jwe *clevis.JWE) (*keyring.Secret, error) {
	h := jwe.Header
	var th header
	if err := h.PinData(Name, &th); err != nil {
		return nil, err
	}
	if h.Alg != "ECDH-ES" || h.EPK == nil || h.Kid == "" {
		return nil, fmt.Errorf("%w: a tang JWE wants alg ECDH-ES, epk and kid", clevis.ErrMalformed)
	}
	if err := checkURL(th.URL); err != nil {
		return nil, err
	}
	var set struct {
		Keys []clevis.JWK `json:"keys"`
	}
	if err := json.Unmarshal(th.Adv, &set); err != nil {
		return nil, fmt.Errorf("%w: clevis.tang.adv: %v", clevis.ErrMalformed, err)
	}
	var server []byte // the exchange key S
	for i := range set.Keys {
		if set.Keys[i].MatchesThumbprint(h.Kid) {
			p, err := set.Keys[i].Point()
			if err != nil {
				return nil, err
			}
			server = p
			break
		}
	}
	if server == nil {
		return nil, fmt.Errorf("%w: no key of clevis.tang.adv has the thumbprint kid %q", clevis.ErrMalformed, h.Kid)
	}
	C, err := point(h.EPK)
	if err != nil {
		return nil, fmt.Errorf("epk: %w", err)
	}
	S, err := nistec.NewP521Point().SetBytes(server)
	if err != nil {
		return nil, fmt.Errorf("%w: exchange key: %v", clevis.ErrMalformed, err)
	}
	// Blind C with a fresh key E = eG: the server sees only X = C + E.
	e, err := ecdh.P521().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	E, err := nistec.NewP521Point().SetBytes(e.PublicKey().Bytes())
	if err != nil {
		return nil, err
	}
	X := clevis.ECJWK(nistec.NewP521Point().Add(C, E).Bytes())
	X.Alg = "ECMR"
	body, err := json.Marshal(X)
	if err != nil {
		return nil, err
	}
	ans, err := c.do(ctx, http.MethodPost, strings.TrimRight(th.URL, "/")+"/rec/"+url.PathEscape(h.Kid), body)
	if err != nil {
		return nil, err
	}
	var yk clevis.JWK
	if err := json.Unmarshal(ans, &yk); err != nil {
		return nil, fmt.Errorf("%w %s: the recovery answer is no JWK", ErrServer, th.URL)
	}
	Y, err := point(&yk)
	if err != nil {
		return nil, fmt.Errorf("%w %s: the recovery answer: %v", ErrServer, th.URL, err)
	}
	// Y = s(C + E); unblind: Z = Y - eS = sC, the ECDH-ES shared point.
	eS, err := nistec.NewP521Point().ScalarMult(S, e.Bytes())
	if err != nil {
		return nil, err
	}
	Z := nistec.NewP521Point().Add(Y, nistec.NewP521Point().Negate(eS))
	z, err := Z.BytesX()
	if err != nil {
		return nil, fmt.Errorf("%w %s: the recovery answer gives no key", ErrServer, th.URL)
	}
	cek := clevis.ConcatKDF(z, "A256GCM", 32)
	defer clear(cek)
	clear(z)
	s, err := jwe.Open(cek)
	if err != nil {
		return nil, fmt.Errorf("tang %s: %w", th.URL, err)
	}
	return s, nil
}

// Describe implements clevis.Pin: "tang URL".
func (c *Client) Describe(jwe *clevis.JWE) string {
	var th header
	if err := jwe.Header.PinData(Name, &th); err != nil {
		return Name
	}
	return Name + " " + th.URL
}

// Params implements clevis.Pin: the URL and the signing keys'
// thumbprints.
func (c *Client) Params(jwe *clevis.JWE) map[string]any {
	return map[string]any{"url": URL(jwe), "thp": Thumbprints(jwe)}
}

// Thumbprints are the S256 thumbprints of the signing keys of the
// advertisement a JWE recorded (to pin them, as clevis thp).
func Thumbprints(jwe *clevis.JWE) []string {
	var th header
	var set struct {
		Keys []clevis.JWK `json:"keys"`
	}
	if jwe.Header.PinData(Name, &th) != nil || json.Unmarshal(th.Adv, &set) != nil {
		return nil
	}
	var out []string
	for i := range set.Keys {
		if set.Keys[i].Can("verify") {
			if t, err := set.Keys[i].Thumbprint("S256"); err == nil {
				out = append(out, t)
			}
		}
	}
	return out
}

// URL is the server a tang JWE names.
func URL(jwe *clevis.JWE) string {
	var th header
	if jwe.Header.PinData(Name, &th) != nil {
		return ""
	}
	return th.URL
}

func point(k *clevis.JWK) (*nistec.P521Point, error) {
	raw, err := k.Point()
	if err != nil {
		return nil, err
	}
	p, err := nistec.NewP521Point().SetBytes(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: not a point of P-521", clevis.ErrMalformed)
	}
	return p, nil
}

func checkURL(u string) error {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" || len(u) > 1024 {
		return fmt.Errorf("tang: URL %q: want http(s)://host[:port][/path]", u)
	}
	return nil
}

// do sends one request and returns the answer's body, bounded in time and
// size.
func (c *Client) do(ctx context.Context, method, u string, body []byte) ([]byte, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrServer, u, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/jwk+json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrServer, u, unwrapURLError(err))
	}
	defer resp.Body.Close()
	ans, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w %s: reading the answer: %v", ErrServer, u, unwrapURLError(err))
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%w %s: %s", ErrServer, u, resp.Status)
	case len(ans) > maxAnswer:
		return nil, fmt.Errorf("%w %s: answer larger than %d bytes", ErrServer, u, maxAnswer)
	}
	return ans, nil
}

// unwrapURLError drops net/http's restatement of method and URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
