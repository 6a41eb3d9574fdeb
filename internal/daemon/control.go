package daemon

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"

	"github.com/encblk/encblk/internal/audit"
	"github.com/encblk/encblk/internal/secmem"
	"github.com/encblk/encblk/pkg/keyring"
	"github.com/encblk/encblk/pkg/rotation"
)

// maxRequestBody bounds a control request's body: no secrets (they come
// in the preamble), but a KMIP token or two.
const maxRequestBody = 1 << 20

// KeyRequest is the body of the requests that name a volume and carry
// KEKs. Secrets are the KEK's bytes (a key file's contents or a
// passphrase); they never travel in the JSON body but in the connection's
// preamble (secretconn.go), and the server wipes them after use.
// NewTokens, if given, are the LUKS2 tokens the client made for NewSecret
// (a KMIP KEK's encblk-kmip token, whose ciphertext the key server
// decrypts back to NewSecret); the server binds them to the new keyslot in
// the same header commit.
type KeyRequest struct {
	Volume    string             `json:"volume"`
	Secret    []byte             `json:"-"`
	NewSecret []byte             `json:"-"`
	NewTokens []json.RawMessage  `json:"new_tokens,omitempty"`
	KDF       *keyring.KDFParams `json:"kdf,omitempty"`
	Slot      *int               `json:"slot,omitempty"`
	// ReencryptRate caps the online reencryption an unlock starts,
	// bytes/s (0: none); nil is the server's default (encblk reencrypt
	// --throttle sets it).
	ReencryptRate *int64 `json:"reencrypt_rate,omitempty"`
	// Policy is the rotation policy of POST /v1/rotation-policy.
	Policy *PolicyRequest `json:"policy,omitempty"`
}

// PolicyRequest sets the parts Set names of a volume's rotation policy.
type PolicyRequest struct {
	Policy rotation.Policy `json:"policy"`
	Set    rotation.Fields `json:"set"`
}

func (r *KeyRequest) wipe() {
	secmem.Wipe(r.Secret)
	secmem.Wipe(r.NewSecret)
}

// RotateResult is the answer of POST /v1/rotate-kek.
type RotateResult struct {
	OldSlot int `json:"old_slot"`
	NewSlot int `json:"new_slot"`
}

// KeyslotResult is the answer of POST /v1/keyslots.
type KeyslotResult struct {
	Slot int `json:"slot"`
}

func (d *Daemon) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", d.handleStatus)
	if d.met != nil {
		mux.Handle("GET /metrics", d.met.handler())
	}
	mux.HandleFunc("POST /v1/unlock", d.handleUnlock)
	mux.HandleFunc("POST /v1/lock", d.handleLock)
	mux.HandleFunc("POST /v1/rotate-kek", d.handleRotate)
	mux.HandleFunc("GET /v1/keyslots", d.handleKeyslots)
	mux.HandleFunc("POST /v1/keyslots", d.handleAddKeyslot)
	mux.HandleFunc("DELETE /v1/keyslots", d.handleRemoveKeyslot)
	mux.HandleFunc("POST /v1/rotation-policy", d.handlePolicy)
	return d.authorize(mux)
}

func (d *Daemon) handleStatus(w http.ResponseWriter, r *http.Request) {
	st := Status{PID: os.Getpid(), Connections: d.nbd.Connections(), Volumes: []VolumeStatus{}}
	ref := r.URL.Query().Get("volume")
	for _, v := range d.cfg.Volumes {
		if ref == "" || ref == v.id || ref == v.spec.Export {
			st.Volumes = append(st.Volumes, d.volumeStatus(v))
		}
	}
	reply(w, st)
}

func (d *Daemon) handleUnlock(w http.ResponseWriter, r *http.Request) {
	req, v, ok := d.keyRequest(w, r, true, false)
	if !ok {
		return
	}
	defer req.wipe()
	slot := -1
	kek, err := identity(req.Secret)
	if err == nil {
		defer kek.Destroy()
		slot, err = v.unlock(r.Context(), kek, req.ReencryptRate)
	}
	d.done(w, r, audit.Unlock, v, slot, err, struct{}{})
}

func (d *Daemon) handleLock(w http.ResponseWriter, r *http.Request) {
	_, v, ok := d.keyRequest(w, r, false, false)
	if !ok {
		return
	}
	d.done(w, r, audit.Lock, v, -1, v.Lock(r.Context()), struct{}{})
}

func (d *Daemon) handleRotate(w http.ResponseWriter, r *http.Request) {
	req, v, ok := d.keyRequest(w, r, true, true)
	if !ok {
		return
	}
	defer req.wipe()
	res := RotateResult{OldSlot: -1, NewSlot: -1}
	err := req.withKEKs(func(old *keyring.Secret, nk keyring.Recipient) error {
		o, n, err := v.RotateKEK(r.Context(), old, nk, req.keyslotOptions())
		if err == nil {
			res = RotateResult{OldSlot: o, NewSlot: n}
		}
		return err
	})
	d.done(w, r, audit.RotateKEK, v, res.NewSlot, err, res)
}

func (d *Daemon) handleKeyslots(w http.ResponseWriter, r *http.Request) {
	v, err := d.volume(r.URL.Query().Get("volume"))
	if err != nil {
		fail(w, err)
		return
	}
	reply(w, v.Status().Keyslots)
}

func (d *Daemon) handleAddKeyslot(w http.ResponseWriter, r *http.Request) {
	req, v, ok := d.keyRequest(w, r, true, true)
	if !ok {
		return
	}
	defer req.wipe()
	res := KeyslotResult{Slot: -1}
	err := req.withKEKs(func(old *keyring.Secret, nk keyring.Recipient) error {
		slot, err := v.AddKeyslot(r.Context(), old, nk, req.keyslotOptions())
		if err == nil {
			res.Slot = slot
		}
		return err
	})
	d.done(w, r, audit.AddKeyslot, v, res.Slot, err, res)
}

func (d *Daemon) handleRemoveKeyslot(w http.ResponseWriter, r *http.Request) {
	v, err := d.volume(r.URL.Query().Get("volume"))
	if err != nil {
		fail(w, err)
		return
	}
	slot, err := strconv.Atoi(r.URL.Query().Get("slot"))
	if err != nil {
		fail(w, fmt.Errorf("%w: slot must be a number", ErrBadRequest))
		return
	}
	kind := v.kekKind(slot)
	d.done(w, r, audit.RemoveKeyslot, v, slot, v.RemoveKeyslot(r.Context(), slot), struct{}{}, kind)
}

// keyRequest decodes a KeyRequest and finds its volume; on failure it has
// replied.
func (d *Daemon) keyRequest(w http.ResponseWriter, r *http.Request, secret, newSecret bool) (*KeyRequest, *Volume, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	if err != nil {
		fail(w, fmt.Errorf("%w: reading the body: %v", ErrBadRequest, err))
		return nil, nil, false
	}
	req, err := decodeKeyRequest(body)
	if err != nil {
		fail(w, fmt.Errorf("%w: malformed JSON body", ErrBadRequest))
		return nil, nil, false
	}
	if c := preambleFrom(r.Context()); c != nil {
		req.Secret, req.NewSecret = c.secret(0), c.secret(1)
	}
	if (secret && len(req.Secret) == 0) || (newSecret && len(req.NewSecret) == 0) {
		req.wipe()
		fail(w, fmt.Errorf("%w: a KEK is missing", ErrBadRequest))
		return nil, nil, false
	}
	v, err := d.volume(req.Volume)
	if err != nil {
		req.wipe()
		fail(w, err)
		return nil, nil, false
	}
	return req, v, true
}

func (r *KeyRequest) keyslotOptions() *keyring.KeyslotOptions {
	opts := &keyring.KeyslotOptions{Slot: r.Slot}
	if r.KDF != nil {
		opts.KDF = *r.KDF
	}
	return opts
}

// recipient is the new KEK of r: its secret with the tokens the client
// made for it, else the secret's bytes as a key file. The secret stays in
// r (wiped with it).
func (r *KeyRequest) recipient() (keyring.Recipient, error) {
	if len(r.NewTokens) > 0 {
		return &wrapped{secret: r.NewSecret, tokens: r.NewTokens}, nil
	}
	return identity(r.NewSecret)
}

// destroy wipes k's secret if it keeps one of its own.
// withKEKs runs fn with the request's old KEK (Secret) and new one
// (NewSecret or NewTokens), destroying both afterwards.
func (r *KeyRequest) withKEKs(fn func(old *keyring.Secret, nk keyring.Recipient) error) error {
	old, err := identity(r.Secret)
	if err != nil {
		return err
	}
	defer old.Destroy()
	nk, err := r.recipient()
	if err != nil {
		return err
	}
	defer destroy(nk)
	return fn(old, nk)
}

func destroy(k keyring.Recipient) {
	if d, ok := k.(interface{ Destroy() }); ok {
		d.Destroy()
	}
}

// identity makes a KEK of secret's bytes (a copy in protected memory): a
// key file, a passphrase and a secret a key server released are all the
// bytes fed to the keyslot's KDF.
func identity(secret []byte) (*keyring.Secret, error) {
	if len(secret) == 0 || len(secret) > keyring.MaxSecretLen {
		return nil, fmt.Errorf("%w: a KEK of %d bytes", ErrBadRequest, len(secret))
	}
	k, err := keyring.NewSecret(len(secret))
	if err != nil {
		return nil, err
	}
	copy(k.Bytes(), secret)
	return k, nil
}

// done writes the action's audit record (never a secret) and replies.
// slot is the keyslot acted on (or that opened), -1 if none; kind, if
// given, is the KEK kind when the keyslot is gone by now.
func (d *Daemon) done(w http.ResponseWriter, r *http.Request, event string, v *Volume, slot int, err error, res any, kind ...string) {
	rec := audit.Record{Event: event, Backing: v.spec.Backing, Keyslot: slot, Err: err, PeerUID: -1, PeerPID: -1}
	if v.kr != nil {
		rec.Volume = v.kr.UUID()
	}
	if len(kind) > 0 {
		rec.KEK = kind[0]
	} else if err == nil {
		rec.KEK = v.kekKind(slot)
	}
	if p, ok := PeerFrom(r.Context()); ok {
		rec.PeerUID, rec.PeerPID = int64(p.UID), int64(p.PID)
	}
	audit.Log(r.Context(), d.log, rec)
	if err != nil {
		fail(w, err)
		return
	}
	reply(w, res)
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, err error) {
	kind, status := classify(err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(apiError{Error: err.Error(), Kind: kind})
}
