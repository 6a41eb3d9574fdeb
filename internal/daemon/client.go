package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/encblk/encblk/pkg/keyring"
	"github.com/encblk/encblk/pkg/rotation"
)

// Client talks to a Daemon's control socket.
type Client struct {
	path string
	hc   *http.Client
}

// NewClient returns a client of the control socket at path. Every
// connection checks the server's credentials first (SO_PEERCRED: root or
// the same user) and fails with ErrUntrustedPeer otherwise, before any
// request, and so any KEK, is sent.
func NewClient(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialControl(ctx, path)
		},
		DisableKeepAlives: true,
	}
	return &Client{path: path, hc: &http.Client{Transport: tr}}
}

// ClientFor finds the server of the backing at path through its
// well-known control socket. It fails with an error wrapping ErrNotServed
// when no server answers there, and with one wrapping ErrUnsafeRuntimeDir
// when the runtime directory is not the user's own.
func ClientFor(ctx context.Context, path string) (*Client, string, error) {
	id, err := VolumeID(path)
	if err != nil {
		return nil, "", err
	}
	sock, err := ControlSocket(path)
	if err != nil {
		return nil, "", err
	}
	if _, err := os.Lstat(filepath.Dir(sock)); errors.Is(err, fs.ErrNotExist) {
		return nil, "", fmt.Errorf("%s: %w", path, ErrNotServed)
	}
	if err := CheckRuntimeDir(filepath.Dir(sock)); err != nil {
		return nil, "", err
	}
	if _, err := os.Stat(sock); err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, ErrNotServed)
	}
	c := NewClient(sock)
	if _, err := c.Status(ctx); err != nil {
		return nil, "", err
	}
	return c, id, nil
}

// Status returns the server's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, &st)
	return st, err
}

// Unlock unlocks volume (an ID or export name) with the KEK secret.
func (c *Client) Unlock(ctx context.Context, volume string, secret []byte) error {
	return c.do(ctx, http.MethodPost, "/v1/unlock", &KeyRequest{Volume: volume, Secret: secret}, nil)
}

// UnlockRate is Unlock for a volume whose header records a reencryption
// (encblk reencrypt on a served volume): the reencryption the server then
// runs is capped at rate bytes/s (0: no cap) instead of its default.
func (c *Client) UnlockRate(ctx context.Context, volume string, secret []byte, rate int64) error {
	return c.do(ctx, http.MethodPost, "/v1/unlock", &KeyRequest{Volume: volume, Secret: secret, ReencryptRate: &rate}, nil)
}

// SetRotationPolicy sets the parts set names of volume's rotation policy
// to p's and returns the volume's rotation record.
func (c *Client) SetRotationPolicy(ctx context.Context, volume string, p rotation.Policy, set rotation.Fields) (rotation.Record, error) {
	var rec rotation.Record
	err := c.do(ctx, http.MethodPost, "/v1/rotation-policy", &KeyRequest{Volume: volume, Policy: &PolicyRequest{Policy: p, Set: set}}, &rec)
	return rec, err
}

// Lock locks volume.
func (c *Client) Lock(ctx context.Context, volume string) error {
	return c.do(ctx, http.MethodPost, "/v1/lock", &KeyRequest{Volume: volume}, nil)
}

// RotateKEK replaces the KEK old by new on volume.
func (c *Client) RotateKEK(ctx context.Context, volume string, old, new []byte, kdf *keyring.KDFParams) (RotateResult, error) {
	return c.RotateKEKWrapped(ctx, volume, old, new, nil, kdf)
}

// RotateKEKWrapped is RotateKEK to a new KEK the caller already wrapped
// (keyring.Recipient.Wrap): new is its secret and tokens the LUKS2 tokens
// the server binds to the new keyslot in the same commit (for a KMIP KEK,
// the encblk-kmip token).
func (c *Client) RotateKEKWrapped(ctx context.Context, volume string, old, new []byte, tokens []json.RawMessage, kdf *keyring.KDFParams) (RotateResult, error) {
	var res RotateResult
	err := c.do(ctx, http.MethodPost, "/v1/rotate-kek", &KeyRequest{Volume: volume, Secret: old, NewSecret: new, NewTokens: tokens, KDF: kdf}, &res)
	return res, err
}

// Keyslots lists volume's keyslots.
func (c *Client) Keyslots(ctx context.Context, volume string) ([]KeyslotStatus, error) {
	var res []KeyslotStatus
	err := c.do(ctx, http.MethodGet, "/v1/keyslots?volume="+url.QueryEscape(volume), nil, &res)
	return res, err
}

// AddKeyslot wraps volume's DEK (opened with old) for new in a new keyslot.
func (c *Client) AddKeyslot(ctx context.Context, volume string, old, new []byte, kdf *keyring.KDFParams) (int, error) {
	return c.AddKeyslotWrapped(ctx, volume, old, new, nil, kdf, nil)
}

// AddKeyslotWrapped is AddKeyslot for a new KEK the caller already wrapped
// (see RotateKEKWrapped: the server binds tokens to the new keyslot in the
// same commit), in keyslot slot if slot is not nil.
func (c *Client) AddKeyslotWrapped(ctx context.Context, volume string, old, new []byte, tokens []json.RawMessage, kdf *keyring.KDFParams, slot *int) (int, error) {
	var res KeyslotResult
	err := c.do(ctx, http.MethodPost, "/v1/keyslots", &KeyRequest{Volume: volume, Secret: old, NewSecret: new, NewTokens: tokens, KDF: kdf, Slot: slot}, &res)
	return res.Slot, err
}

// RemoveKeyslot destroys keyslot slot of volume.
func (c *Client) RemoveKeyslot(ctx context.Context, volume string, slot int) error {
	q := url.Values{"volume": {volume}, "slot": {strconv.Itoa(slot)}}
	return c.do(ctx, http.MethodDelete, "/v1/keyslots?"+q.Encode(), nil, nil)
}

// do sends req and decodes the answer into res. req's secrets go in the
// connection's preamble (see secretconn.go), from protected memory
// destroyed when do returns; the HTTP body carries the rest.
func (c *Client) do(ctx context.Context, method, path string, req *KeyRequest, res any) error {
	var body io.Reader
	if req != nil {
		if len(req.Secret) > 0 || len(req.NewSecret) > 0 {
			pre, err := encodePreamble(req.Secret, req.NewSecret)
			if err != nil {
				return err
			}
			defer pre.Destroy()
			ctx = context.WithValue(ctx, preambleKey{}, pre)
		}
		b, err := json.Marshal(req)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	hreq, err := http.NewRequestWithContext(ctx, method, "http://encblk"+path, body)
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(hreq)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("control socket %s: %w", c.path, ErrNotServed)
		}
		return fmt.Errorf("control socket %s: %w", c.path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("control socket %s: %w", c.path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var ae apiError
		if json.Unmarshal(data, &ae) != nil || ae.Error == "" {
			return fmt.Errorf("control socket %s: %s", c.path, resp.Status)
		}
		return fromAPI(ae)
	}
	if res == nil {
		return nil
	}
	if err := json.Unmarshal(data, res); err != nil {
		return fmt.Errorf("control socket %s: malformed answer: %w", c.path, err)
	}
	return nil
}
