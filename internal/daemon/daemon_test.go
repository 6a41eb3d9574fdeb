package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/encblk/encblk/internal/backing"
	"github.com/encblk/encblk/internal/testutil"
	"github.com/encblk/encblk/pkg/kek/keyfile"
	"github.com/encblk/encblk/pkg/keyring"
	"github.com/encblk/encblk/pkg/nbd"
	"github.com/encblk/encblk/pkg/volume"
)

var fastKDF = keyring.KDFParams{Type: "pbkdf2", Hash: "sha256", Iterations: 1000}

// newBacking formats a sparse backing of size bytes for secret.
func newBacking(t testing.TB, dir, name string, secret []byte, size int64) string {
	t.Helper()
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Truncate(size)
	kf := keyFile(t, secret)
	_, dek, err := keyring.Format(context.Background(), f, kf, &keyring.FormatOptions{SectorSize: 4096, KDF: fastKDF})
	if err != nil {
		t.Fatal(err)
	}
	dek.Destroy()
	return path
}

func keyFile(t testing.TB, secret []byte) *keyring.Secret {
	t.Helper()
	kf, err := keyfile.Read(bytes.NewReader(secret))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kf.Destroy)
	return kf
}

// tokenSlots lists the keyslots that the tokens of type typ in the header
// at path are bound to, in token order.
func tokenSlots(t testing.TB, path, typ string) []int {
	t.Helper()
	kr, err := keyring.Open(path, &keyring.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer kr.Close()
	var bound []int
	for _, tk := range kr.Tokens() {
		if tk.Type == typ {
			bound = append(bound, tk.Keyslots...)
		}
	}
	return bound
}

// running is a Daemon serving in the background.
type running struct {
	nbdSock string
	ctl     *Client
	ctlPath string
	done    chan error
	cancel  context.CancelFunc
	once    sync.Once
}

func start(t *testing.T, dir string, vols ...*Volume) *running {
	t.Helper()
	return startConfig(t, dir, Config{Volumes: vols})
}

// startConfig is start with cfg's Volumes and rotation settings.
func startConfig(t *testing.T, dir string, cfg Config) *running {
	t.Helper()
	t.Setenv(RuntimeDirEnv, filepath.Join(dir, "run"))
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{nbdSock: filepath.Join(dir, "nbd.sock"), ctlPath: filepath.Join(dir, "ctl.sock"), done: make(chan error, 1), cancel: cancel}
	l, err := nbd.ListenUnix(ctx, r.nbdSock, -1)
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	cfg.Listeners, cfg.ControlPaths, cfg.Ready = []net.Listener{l}, []string{r.ctlPath}, func() { close(ready) }
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	go func() { r.done <- d.Run(ctx) }()
	select {
	case <-ready:
	case err := <-r.done:
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() { r.stop(t) })
	r.ctl = NewClient(r.ctlPath)
	return r
}

func (r *running) stop(t *testing.T) {
	r.once.Do(func() {
		r.cancel()
		if err := <-r.done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func TestControlAPI(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	k1, k2 := []byte("first key file"), []byte("second key file")
	path := newBacking(t, dir, "disk.img", k1, 20<<20)
	v, err := OpenVolume(ctx, VolumeSpec{Backing: path, LockMode: volume.LockFail}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, dir, v)

	if fi, err := os.Stat(r.ctlPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket mode: %v %v", fi, err)
	}
	// The well-known socket answers for the backing, however it is spelt.
	c, id, err := ClientFor(ctx, filepath.Join(dir, ".", "disk.img"))
	if err != nil || id != v.ID() {
		t.Fatalf("ClientFor: %v %q", err, id)
	}
	st, err := c.Status(ctx)
	if err != nil || len(st.Volumes) != 1 || st.Volumes[0].State != "locked" || st.Volumes[0].SectorSize != 4096 {
		t.Fatalf("status: %+v %v", st, err)
	}
	// An NBD client counts once the server greets it, until it hangs up.
	nc, err := net.Dial("unix", r.nbdSock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(nc, make([]byte, 18)); err != nil {
		t.Fatalf("NBD greeting: %v", err)
	}
	if st, err := c.Status(ctx); err != nil || st.Connections != 1 {
		t.Fatalf("status with one NBD client: %d connections, %v", st.Connections, err)
	}
	nc.Close()
	for {
		st, err := c.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Connections == 0 {
			break
		}
		time.Sleep(time.Millisecond) // the test's timeout catches a leak
	}
	if err := r.ctl.Unlock(ctx, id, []byte("wrong")); !errors.Is(err, keyring.ErrNoMatchingKeyslot) {
		t.Fatalf("unlock with a wrong KEK: %v", err)
	}
	if err := r.ctl.Unlock(ctx, "no-such-volume", k1); !errors.Is(err, ErrNoVolume) {
		t.Fatalf("unlock of an unknown volume: %v", err)
	}
	if err := r.ctl.Unlock(ctx, id, k1); err != nil {
		t.Fatal(err)
	}
	res, err := r.ctl.RotateKEK(ctx, "", k1, k2, &fastKDF)
	if err != nil || res.OldSlot != 0 || res.NewSlot != 1 {
		t.Fatalf("rotate: %+v %v", res, err)
	}
	slots, err := r.ctl.Keyslots(ctx, id)
	if err != nil || len(slots) != 1 || slots[0].ID != 1 {
		t.Fatalf("keyslots after rotation: %+v %v", slots, err)
	}
	slot, err := r.ctl.AddKeyslot(ctx, id, k2, k1, &fastKDF)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.ctl.RemoveKeyslot(ctx, id, slot); err != nil {
		t.Fatal(err)
	}
	if err := r.ctl.Lock(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := r.ctl.Unlock(ctx, id, k1); !errors.Is(err, keyring.ErrNoMatchingKeyslot) {
		t.Fatalf("unlock with the rotated-out KEK: %v", err)
	}
	if err := r.ctl.Unlock(ctx, id, k2); err != nil {
		t.Fatal(err)
	}
	st, _ = r.ctl.Status(ctx)
	if st.Volumes[0].State != "unlocked" || st.Volumes[0].LastRotation == nil {
		t.Fatalf("status: %+v", st.Volumes[0])
	}
	// A new KEK the client wrapped itself (a KMIP KEK): its tokens are
	// bound to the new keyslot in the same commit. A malformed token is
	// refused and changes nothing.
	k3 := []byte("kek three")
	bad := []json.RawMessage{json.RawMessage(`"not an object"`)}
	if _, err := r.ctl.RotateKEKWrapped(ctx, id, k2, k3, bad, &fastKDF); err == nil {
		t.Fatal("rotation with a malformed token succeeded")
	}
	if slots, err := r.ctl.Keyslots(ctx, id); err != nil || len(slots) != 1 || slots[0].ID != 1 {
		t.Fatalf("keyslots after a refused rotation: %+v %v", slots, err)
	}
	tok := []json.RawMessage{json.RawMessage(`{"type":"encblk-test-wrapped","keyslots":[],"blob":"x"}`)}
	res, err = r.ctl.RotateKEKWrapped(ctx, id, k2, k3, tok, &fastKDF)
	if err != nil || res.OldSlot != 1 || res.NewSlot != 0 {
		t.Fatalf("rotate with a token: %+v %v", res, err)
	}
	if bound := tokenSlots(t, path, "encblk-test-wrapped"); len(bound) != 1 || bound[0] != res.NewSlot {
		t.Fatalf("token bound to keyslots %v, want [%d]", bound, res.NewSlot)
	}
	// Adding a keyslot works the same way, in a chosen slot; a refusal is
	// the server's answer.
	if _, err := r.ctl.AddKeyslotWrapped(ctx, id, []byte("wrong"), k1, tok, &fastKDF, nil); !errors.Is(err, keyring.ErrNoMatchingKeyslot) || !Answered(err) {
		t.Fatalf("add with a wrong KEK: %v (answered %v)", err, Answered(err))
	}
	five := 5
	if slot, err := r.ctl.AddKeyslotWrapped(ctx, id, k3, k1, tok, &fastKDF, &five); err != nil || slot != five {
		t.Fatalf("add in keyslot 5 with a token: %d %v", slot, err)
	}
	// Tokens come in token-id order, and the new token may take a lower id.
	if bound := tokenSlots(t, path, "encblk-test-wrapped"); len(bound) != 2 || !slices.Contains(bound, five) || !slices.Contains(bound, res.NewSlot) {
		t.Fatalf("tokens bound to keyslots %v, want %d and 5", bound, res.NewSlot)
	}
	if err := r.ctl.RemoveKeyslot(ctx, id, five); err != nil {
		t.Fatal(err)
	}
	if err := r.ctl.Lock(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := r.ctl.Unlock(ctx, id, k2); !errors.Is(err, keyring.ErrNoMatchingKeyslot) {
		t.Fatalf("unlock with the rotated-out KEK: %v", err)
	}
	if err := r.ctl.Unlock(ctx, id, k3); err != nil {
		t.Fatal(err)
	}
	// A second server of the same backing is refused while this one runs.
	if _, err := OpenVolume(ctx, VolumeSpec{Backing: path}, nil); !errors.Is(err, backing.ErrBusy) {
		t.Fatalf("second OpenVolume: %v", err)
	}
	r.stop(t)
	if _, err := os.Stat(r.ctlPath); !os.IsNotExist(err) {
		t.Fatalf("control socket left behind: %v", err)
	}
	if _, _, err := ClientFor(ctx, path); !errors.Is(err, ErrNotServed) {
		t.Fatalf("ClientFor after shutdown: %v", err)
	}
	if _, err := r.ctl.Status(ctx); err == nil || Answered(err) {
		t.Fatalf("a request to a stopped server: %v (answered %v)", err, Answered(err))
	}
	off, err := OfflineStatus(path)
	if err != nil || off.State != "not served" || off.LastRotation == nil || len(off.Keyslots) != 1 {
		t.Fatalf("offline status: %+v %v", off, err)
	}
}

// TestExports serves two encrypted volumes and a plain file as named
// exports and moves data through each with nbdcopy.
func TestExports(t *testing.T) {
	nbdcopy := testutil.RequireTool(t, "nbdcopy", "libnbd-bin")
	nbdinfo := testutil.RequireTool(t, "nbdinfo", "libnbd-bin")
	ctx := context.Background()
	dir := t.TempDir()
	k := []byte("key")
	plain := filepath.Join(dir, "plain.img")
	os.WriteFile(plain, nil, 0o600)
	os.Truncate(plain, 4<<20)
	var vols []*Volume
	for _, spec := range []VolumeSpec{
		{Backing: newBacking(t, dir, "a.img", k, 20<<20), Export: "a"},
		{Backing: newBacking(t, dir, "b.img", k, 20<<20), Export: "b"},
		{Backing: plain, Export: "plain", Plain: true},
	} {
		v, err := OpenVolume(ctx, spec, keyFile(t, k))
		if err != nil {
			t.Fatal(err)
		}
		vols = append(vols, v)
	}
	r := start(t, dir, vols...)
	out, err := exec.Command(nbdinfo, "--list", "--json", "nbd+unix:///?socket="+r.nbdSock).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"plain"`) || !strings.Contains(string(out), `"export-name": "b"`) {
		t.Fatalf("nbdinfo --list: %v\n%s", err, out)
	}
	for i, name := range []string{"a", "b", "plain"} {
		data := bytes.Repeat([]byte{byte(i + 1), 2, 3, 4}, 1<<20)
		src := filepath.Join(dir, name+".src")
		os.WriteFile(src, data, 0o600)
		uri := "nbd+unix:///" + name + "?socket=" + r.nbdSock
		if out, err := exec.Command(nbdcopy, "--flush", src, uri).CombinedOutput(); err != nil {
			t.Fatalf("nbdcopy to %s: %v\n%s", name, err, out)
		}
		got, err := exec.Command(nbdcopy, uri, "-").Output()
		if err != nil || !bytes.Equal(got[:len(data)], data) {
			t.Fatalf("export %s: read back differs (%v)", name, err)
		}
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "a.img"))
	if bytes.Contains(raw, bytes.Repeat([]byte{1, 2, 3, 4}, 64)) {
		t.Fatal("encrypted backing holds plaintext")
	}
	st, err := r.ctl.Status(ctx)
	if err != nil || len(st.Volumes) != 3 || st.Volumes[2].State != "plain" || st.Volumes[0].BytesWritten < 4<<20 {
		t.Fatalf("status: %+v %v", st, err)
	}
}

// FuzzControlRequest posts arbitrary bodies to every endpoint: the
// server answers with JSON, never panics, and never echoes the body.
func FuzzControlRequest(f *testing.F) {
	for _, s := range []string{
		`{"volume":"","secret":"c2VjcmV0"}`, `{"volume":"x"}`, `{"secret":12}`, `{`, ``,
		`{"volume":"","secret":"c2VjcmV0","new_secret":"bmV3","kdf":{"Type":"pbkdf2","Iterations":1000}}`,
		`{"volume":"","secret":"c2VjcmV0","unknown":1}`, `[]`, `"SECRETSECRET"`,
	} {
		f.Add(s)
	}
	dir := f.TempDir()
	path := newBacking(f, dir, "disk.img", []byte("k"), 20<<20)
	v, err := OpenVolume(context.Background(), VolumeSpec{Backing: path}, nil)
	if err != nil {
		f.Fatal(err)
	}
	defer v.Close()
	d := &Daemon{cfg: Config{Volumes: []*Volume{v}}, log: slog.New(slog.DiscardHandler)}
	h := d.handler()
	f.Fuzz(func(t *testing.T, body string) {
		for _, ep := range []string{"/v1/unlock", "/v1/lock", "/v1/keyslots"} {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodPost, ep, strings.NewReader(body))
			// As if from a control socket, by root.
			req = req.WithContext(context.WithValue(ctxWithTimeout(t), connKey{}, &secretConn{}))
			h.ServeHTTP(rec, req)
			if !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
				t.Fatalf("%s: answer is not JSON: %q", ep, rec.Body.String())
			}
			if len(body) >= 8 && strings.Contains(rec.Body.String(), body) {
				t.Fatalf("%s: answer echoes the request body", ep)
			}
		}
	})
}

func ctxWithTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}
