package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/encblk/encblk/internal/daemon"
	"github.com/encblk/encblk/internal/secmem"
	"github.com/encblk/encblk/internal/testutil"
	"github.com/encblk/encblk/pkg/kek/kmipkek"
	"github.com/encblk/encblk/pkg/kek/tpm2/tpm2test"
	"github.com/encblk/encblk/pkg/keyring"
	"github.com/encblk/encblk/pkg/kmip"
	"github.com/encblk/encblk/pkg/kmip/kmiptest"
	"github.com/encblk/encblk/pkg/nbd"
	"github.com/encblk/encblk/pkg/rotation"
)

// A policy with a KMIP KEK source, carried out by a server with serve's
// KEK sources (rotationSources) against a real PyKMIP server and an
// injected clock: the KMIP keyslot moves to a new key when the KEK
// rotation is due, the replaced key is revoked on the server (as encblk
// kmip rotate --revoke-old; audit kmip-revoke), and the reencryption (whose only keyslot opens
// through its KMIP token, with nobody to ask) runs when it is due; the
// data survive and cryptsetup opens the result with the new key's
// secret, with a new volume key.
func TestRotationPolicyKMIP(t *testing.T) {
	bin := testutil.RequireTool(t, "cryptsetup", "cryptsetup-bin")
	srv := kmiptest.Start(t)
	dir := t.TempDir()
	ctx := context.Background()
	path, cfg, cfgPath, _, kr, dek := kmipVolume(t, srv, dir)
	dek.Destroy()
	kr.Close()
	tokenKey := func() string {
		kr, err := keyring.Open(path, &keyring.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer kr.Close()
		for _, tk := range kr.Tokens() {
			if tk.Type == kmipkek.TokenType {
				pt, err := kmipkek.ParseToken(tk.Raw)
				if err != nil {
					t.Fatal(err)
				}
				return pt.KeyUID
			}
		}
		t.Fatal("no KMIP token")
		return ""
	}
	// dump is cryptsetup's view: the volume key, opened with the secret
	// the key server releases for the volume's KMIP keyslot.
	dump := func() []byte {
		kr, err := keyring.Open(path, &keyring.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer kr.Close()
		k, err := kmipkek.NewKEK(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, secret, err := keyring.SecretFor(ctx, kr, k)
		if err != nil {
			t.Fatal(err)
		}
		defer secret.Destroy()
		kf := filepath.Join(dir, "secret")
		os.WriteFile(kf, secret.Bytes(), 0o600)
		defer os.Remove(kf)
		out, err := exec.Command(bin, "luksDump", "--dump-volume-key", "--batch-mode", "--key-file", kf, path).CombinedOutput()
		if err != nil {
			t.Fatalf("cryptsetup: %v\n%s", err, out)
		}
		return testutil.VolumeKey(t, string(out))
	}
	firstKey, firstDEK := tokenKey(), dump()

	var logs testutil.SyncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	opener, err := kmipkek.NewKEK(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := daemon.OpenVolume(ctx, daemon.VolumeSpec{Backing: path, Logger: log, ReencryptRate: -1}, opener)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 8<<20)
	rand.Read(data)
	if err := v.Device().WriteAt(ctx, bytes.Clone(data), 0, false); err != nil {
		t.Fatal(err)
	}
	clock := testutil.NewManualClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	c, stop := serveRotating(t, dir, v, clock, log, rotationSources{log: log})
	pol := rotation.Policy{KEKEvery: rotation.Period(7 * 24 * time.Hour), ReencryptEvery: rotation.Period(10 * 24 * time.Hour), KMIPConfig: cfgPath}
	if _, err := c.SetRotationPolicy(ctx, "", pol, rotation.All); err != nil {
		t.Fatal(err)
	}

	clock.Advance(t, 8*24*time.Hour)
	testutil.WaitFor(t, "the KMIP KEK rotation", func() bool { st := rotationStatus(t, c); return st.KEK.Last != nil || st.KEK.Blocked != "" })
	if st := rotationStatus(t, c); st.KEK.Blocked != "" || st.KEK.Overdue || st.KEK.Last == nil {
		t.Fatalf("after the KEK rotation: %+v", st.KEK)
	}
	secondKey := tokenKey()
	if secondKey == firstKey {
		t.Fatal("the KMIP keyslot still uses the first key")
	}
	if st := serverKeyState(t, cfg, firstKey); st != kmip.StateDeactivated {
		t.Fatalf("the replaced KMIP key %s is %v on the server, want Deactivated (revoked, superseded)\n%s", firstKey, st, logs.String())
	}
	if st := serverKeyState(t, cfg, secondKey); st != kmip.StateActive {
		t.Fatalf("the new KMIP key %s is %v", secondKey, st)
	}

	// Day 11: the reencryption (the next KEK rotation is on day 15).
	clock.Advance(t, 3*24*time.Hour)
	testutil.WaitFor(t, "the reencryption", func() bool { st := rotationStatus(t, c); return st.Reencrypt.Last != nil || st.Reencrypt.Blocked != "" })
	if err := v.WaitReencryption(ctx); err != nil {
		t.Fatal(err)
	}
	if st := rotationStatus(t, c); st.Reencrypt.Blocked != "" || st.Reencrypt.Overdue || st.Reencrypt.Last == nil {
		t.Fatalf("after the reencryption: %+v\n%s", st.Reencrypt, logs.String())
	}
	got := make([]byte, len(data))
	if err := v.Device().ReadAt(ctx, got, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("data after the reencryption differ (%v)", err)
	}
	stop()
	for _, ev := range []string{`"event":"rotate-kek-due","result":"ok"`, `"event":"rotate-kek","result":"ok"`, `"event":"kmip-revoke","result":"ok"`, `"event":"reencrypt-due","result":"ok"`, `"event":"reencrypt-finish","result":"ok"`} {
		if !strings.Contains(logs.String(), ev) {
			t.Errorf("no audit record %s", ev)
		}
	}
	if tokenKey() != secondKey {
		t.Fatal("the reencryption changed the KMIP key")
	}
	if bytes.Equal(dump(), firstDEK) {
		t.Fatal("the volume key did not change")
	}
}

// The KEKs a server obtains by itself for a rotation (rotationSources)
// never ask for a TPM2 PIN: a keyslot systemd-cryptenroll sealed with a
// PIN (swtpm) is unavailable with a reason that says so, which is what
// status then shows after "needs operator"; the TPM is not asked, so its
// dictionary-attack counter is untouched.
func TestRotationSourcesNoTPM2PIN(t *testing.T) {
	enroll := testutil.RequireTool(t, "systemd-cryptenroll", "systemd")
	testutil.RequireTool(t, "cryptsetup", "cryptsetup-bin")
	dev := tpm2test.Start(t)
	t.Setenv(tpm2DeviceEnv, dev)
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	os.WriteFile(key, []byte("rotation test key file"), 0o600)
	path := filepath.Join(dir, "vol.img")
	os.WriteFile(path, nil, 0o600)
	os.Truncate(path, 20<<20)
	if out, err := exec.Command("cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2",
		"--pbkdf-force-iterations", "1000", "--key-file", key, path).CombinedOutput(); err != nil {
		t.Fatalf("luksFormat: %v\n%s", err, out)
	}
	cmd := exec.Command(enroll, "--unlock-key-file="+key, "--tpm2-device="+dev, "--tpm2-pcrs=", "--tpm2-with-pin=yes", path)
	cmd.Env = append(os.Environ(), "NEWPIN=1234")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("systemd-cryptenroll: %v\n%s", err, out)
	}
	kr, err := keyring.Open(path, &keyring.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer kr.Close()
	ids, release := rotationSources{log: slog.New(slog.NewTextHandler(io.Discard, nil))}.Unattended(context.Background(), kr)
	defer release()
	if len(ids) == 0 {
		t.Fatal("no token source for the systemd-tpm2 keyslot")
	}
	_, dek, err := kr.Match(context.Background(), ids...)
	if err == nil {
		dek.Destroy()
		t.Fatal("the PIN-protected TPM2 keyslot opened with no PIN")
	}
	if !errors.Is(err, keyring.ErrUnavailable) || !strings.Contains(err.Error(), "keyslot 1") || !strings.Contains(err.Error(), "needs its TPM2 PIN, which no one is there to give") {
		t.Fatalf("Match: %v", err)
	}
}

// The revocation after a policy's KMIP rotation follows kmip rotate
// --revoke-old's rule: a key another keyslot still uses is not revoked.
// Two KMIP keyslots share one key on PyKMIP; the rotation moves one of
// them to a new key, and the shared key stays Active for the other,
// which still opens the volume.
func TestRotationPolicyKMIPKeepsSharedKey(t *testing.T) {
	srv := kmiptest.Start(t)
	dir := t.TempDir()
	ctx := context.Background()
	path, cfg, cfgPath, k0, kr, dek := kmipVolume(t, srv, dir)
	shared := *cfg
	shared.KeyUID = k0.CreatedUID()
	k1, err := kmipkek.NewKEK(&shared, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kr.AddKeyslot(ctx, dek, k1, kmipkek.KeyslotOptions()); err != nil {
		t.Fatal(err)
	}
	dek.Destroy()
	kr.Close()
	if n := len(kmipkek.Slots(openRO(t, path))); n != 2 {
		t.Fatalf("%d KMIP keyslots, want 2", n)
	}

	var logs testutil.SyncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	v, err := daemon.OpenVolume(ctx, daemon.VolumeSpec{Backing: path, Logger: log}, k1)
	if err != nil {
		t.Fatal(err)
	}
	clock := testutil.NewManualClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	c, stop := serveRotating(t, dir, v, clock, log, rotationSources{log: log})
	if _, err := c.SetRotationPolicy(ctx, "", rotation.Policy{KEKEvery: rotation.Period(7 * 24 * time.Hour), KMIPConfig: cfgPath}, rotation.All); err != nil {
		t.Fatal(err)
	}
	clock.Advance(t, 8*24*time.Hour)
	testutil.WaitFor(t, "the KMIP KEK rotation", func() bool { st := rotationStatus(t, c); return st.KEK.Last != nil || st.KEK.Blocked != "" })
	stop()
	var uids []string
	for _, st := range kmipkek.Slots(openRO(t, path)) {
		uids = append(uids, st.KeyUID)
	}
	if len(uids) != 2 || uids[0] == uids[1] || !slices.Contains(uids, k0.CreatedUID()) {
		t.Fatalf("KMIP keys after the rotation: %v (the shared key %s should be left to one keyslot)\n%s", uids, k0.CreatedUID(), logs.String())
	}
	if st := serverKeyState(t, cfg, k0.CreatedUID()); st != kmip.StateActive {
		t.Fatalf("the shared key is %v, want Active: another keyslot still uses it\n%s", st, logs.String())
	}
	if strings.Contains(logs.String(), `"event":"kmip-revoke"`) || !strings.Contains(logs.String(), "still used by another keyslot") {
		t.Fatalf("logs:\n%s", logs.String())
	}
}

// rotationStatus is the rotation status the server of c reports for its
// one volume.
func rotationStatus(t *testing.T, c *daemon.Client) *daemon.RotationStatus {
	t.Helper()
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.Volumes[0].Rotation
}

// serverKeyState is the state of the key uid on the key server of cfg.
func serverKeyState(t *testing.T, cfg *kmip.FileConfig, uid string) kmip.State {
	t.Helper()
	c, err := cfg.Client(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.KeyState(context.Background(), uid)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func openRO(t *testing.T, path string) *keyring.Keyring {
	t.Helper()
	kr, err := keyring.Open(path, &keyring.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kr.Close() })
	return kr
}

// kmipVolume formats dir/vol.img (24 MiB, 4096-byte sectors) with one
// KMIP keyslot, for a new key on srv, and returns its path, the client
// configuration and its path, the keyslot's KEK, and the open header and
// volume key (the caller closes and destroys them).
func kmipVolume(t *testing.T, srv *kmiptest.Server, dir string) (string, *kmip.FileConfig, string, *kmipkek.KEK, *keyring.Keyring, *secmem.Buffer) {
	t.Helper()
	cfgPath := writeKMIPConfig(t, srv, dir, "client", srv.Client)
	cfg, err := kmip.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "vol.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	f.Truncate(16<<20 + 8<<20)
	k0, err := kmipkek.NewKEK(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	kr, dek, err := keyring.Format(context.Background(), f, k0, &keyring.FormatOptions{SectorSize: 4096, KDF: kmipkek.KeyslotOptions().KDF})
	if err != nil {
		t.Fatal(err)
	}
	return path, cfg, cfgPath, k0, kr, dek
}

// serveRotating runs a server of v with the rotation sources src (serve's:
// rotationSources) and the given clock; it returns its control client and a stop (idempotent,
// also called at the test's end).
func serveRotating(t *testing.T, dir string, v *daemon.Volume, clock daemon.Clock, log *slog.Logger, src daemon.RotationSources) (*daemon.Client, func()) {
	t.Helper()
	runCtx, cancel := context.WithCancel(context.Background())
	l, err := nbd.ListenUnix(runCtx, filepath.Join(dir, "nbd.sock"), -1)
	if err != nil {
		t.Fatal(err)
	}
	ctl := filepath.Join(dir, "ctl.sock")
	ready := make(chan struct{})
	d, err := daemon.New(daemon.Config{Volumes: []*daemon.Volume{v}, Listeners: []net.Listener{l}, ControlPaths: []string{ctl},
		NoWellKnownControl: true, Logger: log, Clock: clock, RotationSources: src, Ready: func() { close(ready) }})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(runCtx) }()
	stop := func() {
		if cancel != nil {
			cancel()
			cancel = nil
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}
	t.Cleanup(stop)
	<-ready
	return daemon.NewClient(ctl), stop
}

// revokeFailsOnce is serve's rotation sources, except that the first
// rotation's revocation of the replaced key goes to the key server with
// a client configuration that trusts another CA: the TLS handshake fails,
// as with a key server that cannot be reached then.
type revokeFailsOnce struct {
	rotationSources
	badCA string
	used  atomic.Bool
}

func (s *revokeFailsOnce) KMIP(kr *keyring.Keyring, path string) (*daemon.KMIPRotation, error) {
	cfg, err := kmip.LoadConfig(path)
	if err != nil {
		return nil, err
	}
	revokeCfg := cfg
	if !s.used.Swap(true) {
		bad := *cfg
		bad.CA = s.badCA
		revokeCfg = &bad
	}
	return s.kmipRotation(kr, cfg, revokeCfg)
}

// A replaced KMIP key whose revocation fails after the policy's rotation
// (PyKMIP, the TLS handshake refused) is kept in the rotation token and
// shown by status; the server's next check (an hour later on the
// injected clock) revokes it, drops it from the token, and audits it.
func TestRotationPolicyKMIPRevokeRetried(t *testing.T) {
	srv := kmiptest.Start(t)
	dir := t.TempDir()
	ctx := context.Background()
	path, cfg, cfgPath, k0, kr, dek := kmipVolume(t, srv, dir)
	dek.Destroy()
	kr.Close()
	first := k0.CreatedUID()
	badCA := filepath.Join(dir, "other-ca.pem")
	if err := os.WriteFile(badCA, kmiptest.NewCA(t, "not the key server's CA").PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	var logs testutil.SyncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	v, err := daemon.OpenVolume(ctx, daemon.VolumeSpec{Backing: path, Logger: log}, k0)
	if err != nil {
		t.Fatal(err)
	}
	clock := testutil.NewManualClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	c, stop := serveRotating(t, dir, v, clock, log, &revokeFailsOnce{rotationSources: rotationSources{log: log}, badCA: badCA})
	if _, err := c.SetRotationPolicy(ctx, "", rotation.Policy{KEKEvery: rotation.Period(7 * 24 * time.Hour), KMIPConfig: cfgPath}, rotation.All); err != nil {
		t.Fatal(err)
	}

	clock.Advance(t, 8*24*time.Hour)
	testutil.WaitFor(t, "the KMIP KEK rotation", func() bool { st := rotationStatus(t, c); return st.KEK.Last != nil || st.KEK.Blocked != "" })
	if st := rotationStatus(t, c); st.KEK.Last == nil || !slices.Equal(st.KMIPRevokePending, []string{first}) {
		t.Fatalf("after the rotation whose revocation failed: %+v\n%s", st, logs.String())
	}
	if st := serverKeyState(t, cfg, first); st != kmip.StateActive {
		t.Fatalf("the replaced key is %v before the retry", st)
	}
	if !strings.Contains(logs.String(), `"event":"kmip-revoke","result":"failed"`) {
		t.Fatalf("no failed kmip-revoke audit record\n%s", logs.String())
	}
	if rec, err := rotation.Load(openRO(t, path)); err != nil || len(rec.RevokePending) != 1 || rec.RevokePending[0].UID != first {
		t.Fatalf("rotation token: %+v %v", rec, err)
	}

	clock.Advance(t, time.Hour)
	testutil.WaitFor(t, "the revocation to be retried", func() bool { return len(rotationStatus(t, c).KMIPRevokePending) == 0 })
	stop()
	if st := serverKeyState(t, cfg, first); st != kmip.StateDeactivated {
		t.Fatalf("the replaced key is %v after the retry, want Deactivated\n%s", st, logs.String())
	}
	if !strings.Contains(logs.String(), `"event":"kmip-revoke","result":"ok"`) || !strings.Contains(logs.String(), "revoked now") {
		t.Fatalf("no kmip-revoke ok audit record after the retry\n%s", logs.String())
	}
	if rec, err := rotation.Load(openRO(t, path)); err != nil || len(rec.RevokePending) != 0 {
		t.Fatalf("rotation token after the retry: %+v %v", rec, err)
	}
}
