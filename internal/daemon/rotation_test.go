package daemon

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/encblk/encblk/internal/testutil"
	"github.com/encblk/encblk/pkg/keyring"
	"github.com/encblk/encblk/pkg/rotation"
)

func newFakeClock() *testutil.ManualClock {
	return testutil.NewManualClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
}

// rotationVolume formats a volume opened by the key file UUID-initial.key
// in keyDir, fills it with random data and returns its path and the data.
func rotationVolume(t *testing.T, dir, keyDir string) (string, []byte, string) {
	t.Helper()
	secret := make([]byte, 32)
	rand.Read(secret)
	path := newBacking(t, dir, "vol.img", secret, 16<<20+8<<20)
	kr, err := keyring.Open(path, &keyring.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	uuid := kr.UUID()
	kr.Close()
	if err := os.MkdirAll(keyDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(keyDir, uuid+"-initial.key"), secret, 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := OpenVolume(context.Background(), VolumeSpec{Backing: path}, keyFile(t, secret))
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 8<<20)
	rand.Read(data)
	if err := v.Device().WriteAt(context.Background(), bytes.Clone(data), 0, false); err != nil {
		t.Fatal(err)
	}
	v.Close()
	return path, data, uuid
}

func cryptsetupTool(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := testutil.RequireTool(t, "cryptsetup", "cryptsetup-bin")
	out, err := exec.Command(bin, args...).CombinedOutput()
	return string(out), err
}

// A served volume's policy rotates the KEK (a new key file in the
// policy's directory replaces the old one, which stops working) and then
// reencrypts the data (a new DEK) when the injected clock says they are
// due; cryptsetup agrees with the result and keeps the policy token.
func TestRotationPolicyCarriedOut(t *testing.T) {
	testutil.RequireTool(t, "cryptsetup", "cryptsetup-bin")
	ctx := context.Background()
	dir := t.TempDir()
	keyDir := filepath.Join(dir, "keys")
	path, data, uuid := rotationVolume(t, dir, keyDir)
	initial := filepath.Join(keyDir, uuid+"-initial.key")
	dump := func(keyFile string) []byte {
		out, err := cryptsetupTool(t, "luksDump", "--dump-volume-key", "--batch-mode", "--key-file", keyFile, path)
		if err != nil {
			ls, _ := exec.Command("ls", "-la", filepath.Dir(keyFile)).CombinedOutput()
			t.Fatalf("cryptsetup luksDump --dump-volume-key %s: %v\n%s\n%s", keyFile, err, out, ls)
		}
		return testutil.VolumeKey(t, out)
	}
	oldDEK := dump(initial)

	var logs testutil.SyncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	secret, _ := os.ReadFile(initial)
	v, err := OpenVolume(ctx, VolumeSpec{Backing: path, Logger: log, ReencryptRate: -1}, keyFile(t, secret))
	if err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock()
	r := startConfig(t, dir, Config{Volumes: []*Volume{v}, Clock: clock, Logger: log})
	pol := rotation.Policy{KEKEvery: rotation.Period(30 * 24 * time.Hour), ReencryptEvery: rotation.Period(45 * 24 * time.Hour), KeyDir: keyDir}
	if _, err := r.ctl.SetRotationPolicy(ctx, "", pol, rotation.All); err != nil {
		t.Fatal(err)
	}
	status := func() VolumeStatus {
		st, err := r.ctl.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st.Volumes[0]
	}
	st := status().Rotation
	if st == nil || st.KEK.Every != "30d" || st.Reencrypt.Every != "45d" || st.KEK.Overdue || st.KEK.Last != nil ||
		!st.KEK.Next.Equal(clock.Now().Add(30*24*time.Hour)) || !st.Reencrypt.Next.Equal(clock.Now().Add(45*24*time.Hour)) {
		t.Fatalf("status after policy set: %+v", st)
	}

	// Day 31: the KEK rotation is due.
	clock.Advance(t, 31*24*time.Hour)
	testutil.WaitFor(t, "the KEK rotation", func() bool { return status().Rotation.KEK.Last != nil })
	st = status().Rotation
	if !st.KEK.Last.Equal(clock.Now()) || st.KEK.Overdue || st.KEK.Blocked != "" || st.Reencrypt.Last != nil {
		t.Fatalf("status after the KEK rotation: %+v", st)
	}
	files, _ := filepath.Glob(filepath.Join(keyDir, uuid+"-*.key"))
	want := filepath.Join(keyDir, uuid+"-"+clock.Now().Format("20060102T150405Z")+".key")
	if len(files) != 1 || files[0] != want {
		t.Fatalf("key files after the rotation: %v, want [%s]", files, want)
	}
	if fi, err := os.Stat(want); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("new key file: %v %v", fi, err)
	}
	if link, err := os.Readlink(filepath.Join(keyDir, uuid+".key")); err != nil || link != filepath.Base(want) {
		t.Fatalf("link: %q %v", link, err)
	}
	for _, ev := range []string{`"event":"rotate-kek-due","result":"ok"`, `"event":"rotate-kek","result":"ok"`} {
		if !strings.Contains(logs.String(), ev) {
			t.Fatalf("no audit record %s in\n%s", ev, logs.String())
		}
	}

	// Day 46 (45 days after the policy was set): the reencryption; the
	// next KEK rotation is on day 61.
	clock.Advance(t, 15*24*time.Hour)
	testutil.WaitFor(t, "the reencryption", func() bool { return status().Rotation.Reencrypt.Last != nil })
	if err := v.WaitReencryption(ctx); err != nil {
		t.Fatal(err)
	}
	st = status().Rotation
	if !st.Reencrypt.Last.Equal(clock.Now()) || st.Reencrypt.Overdue || !st.Reencrypt.Next.Equal(clock.Now().Add(45*24*time.Hour)) ||
		st.KEK.Last.Equal(clock.Now()) || st.Reencrypt.Observed {
		t.Fatalf("status after the reencryption: %+v", st)
	}
	got := make([]byte, len(data))
	if err := v.Device().ReadAt(ctx, got, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("data after the reencryption differs (%v)", err)
	}
	for _, ev := range []string{`"event":"reencrypt-due","result":"ok"`, `"event":"reencrypt-finish","result":"ok"`} {
		if !strings.Contains(logs.String(), ev) {
			t.Fatalf("no audit record %s in\n%s", ev, logs.String())
		}
	}
	r.stop(t)

	// cryptsetup: the new key file opens the volume, with a new DEK; the
	// old one opens nothing.
	if newDEK := dump(want); bytes.Equal(newDEK, oldDEK) {
		t.Fatal("the volume key did not change")
	}
	if out, err := cryptsetupTool(t, "open", "--test-passphrase", "--key-file", initial, path); err == nil {
		t.Fatalf("the retired key file still opens the volume\n%s", out)
	}
	os.WriteFile(initial, secret, 0o600)
	if out, err := cryptsetupTool(t, "open", "--test-passphrase", "--key-file", initial, path); err == nil {
		t.Fatalf("the old KEK still opens the volume\n%s", out)
	}
	out, err := cryptsetupTool(t, "luksDump", path)
	if err != nil || !strings.Contains(out, "encblk-rotation") {
		t.Fatalf("cryptsetup luksDump shows no encblk-rotation token: %v\n%s", err, out)
	}
}

// A due rotation the server cannot carry out by itself (a keyslot whose
// KEK it cannot obtain; no key file in the directory) is not started:
// status shows it overdue with the reason, an audit record says it needs
// an operator, and the header is unchanged.
func TestRotationPolicyNeedsOperator(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	keyDir := filepath.Join(dir, "keys")
	path, _, uuid := rotationVolume(t, dir, keyDir)
	secret, _ := os.ReadFile(filepath.Join(keyDir, uuid+"-initial.key"))

	var logs testutil.SyncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	v, err := OpenVolume(ctx, VolumeSpec{Backing: path, Logger: log}, keyFile(t, secret))
	if err != nil {
		t.Fatal(err)
	}
	// A second keyslot, for a passphrase the server never sees.
	if _, err := v.AddKeyslot(ctx, keyFile(t, secret), keyFile(t, []byte("operator passphrase")), &keyring.KeyslotOptions{KDF: fastKDF}); err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock()
	r := startConfig(t, dir, Config{Volumes: []*Volume{v}, Clock: clock, Logger: log})
	emptyDir := filepath.Join(dir, "empty")
	os.Mkdir(emptyDir, 0o700)
	pol := rotation.Policy{KEKEvery: rotation.Period(7 * 24 * time.Hour), ReencryptEvery: rotation.Period(7 * 24 * time.Hour), KeyDir: emptyDir}
	if _, err := r.ctl.SetRotationPolicy(ctx, "", pol, rotation.All); err != nil {
		t.Fatal(err)
	}
	seq := seqID(t, v)
	clock.Advance(t, 8*24*time.Hour)
	status := func() *RotationStatus { return r.rotation(t) }
	testutil.WaitFor(t, "the rotations to be reported blocked", func() bool {
		st := status()
		return st.KEK.Blocked != "" && st.Reencrypt.Blocked != ""
	})
	st := status()
	if !st.KEK.Overdue || !strings.Contains(st.KEK.Blocked, "needs operator") || !strings.Contains(st.KEK.Blocked, "holds no key file") {
		t.Fatalf("KEK: %+v", st.KEK)
	}
	if !st.Reencrypt.Overdue || !strings.Contains(st.Reencrypt.Blocked, "needs operator") || !strings.Contains(st.Reencrypt.Blocked, "keyslot 0, 1") &&
		!strings.Contains(st.Reencrypt.Blocked, "no keyslot has a KEK") {
		t.Fatalf("reencryption: %+v", st.Reencrypt)
	}
	for _, ev := range []string{`"event":"rotate-kek-due","result":"failed"`, `"event":"reencrypt-due","result":"failed"`, "needs operator"} {
		if !strings.Contains(logs.String(), ev) {
			t.Fatalf("no audit record %s in\n%s", ev, logs.String())
		}
	}
	if got := seqID(t, v); got != seq {
		t.Fatalf("the header changed (seqid %d -> %d) though nothing could be rotated", seq, got)
	}

	// With the key file in the directory the KEK rotation can be done,
	// but the reencryption still cannot: keyslot 1 is the operator's.
	os.WriteFile(filepath.Join(emptyDir, uuid+"-initial.key"), secret, 0o600)
	clock.Advance(t, maxRotationWait)
	testutil.WaitFor(t, "the KEK rotation", func() bool { return status().KEK.Last != nil })
	testutil.WaitFor(t, "the reencryption to be reported blocked", func() bool { return status().Reencrypt.Blocked != "" })
	st = status()
	if st.KEK.Overdue || st.KEK.Blocked != "" || !strings.Contains(st.Reencrypt.Blocked, "keyslot 1") || !st.Reencrypt.Overdue {
		t.Fatalf("after the key file came: %+v", st)
	}
	if r, err := v.kr.Reencryption(); r != nil || err != nil {
		t.Fatalf("a reencryption was recorded: %+v %v", r, err)
	}
	if n := strings.Count(logs.String(), `"event":"reencrypt-due","result":"failed"`); n != 2 {
		t.Fatalf("%d reencrypt-due audit records, want 2 (one per reason)\n%s", n, logs.String())
	}
}

// A reencryption that cryptsetup did while no server ran is seen by the
// volume key's ID the rotation token records: offline status shows it as
// observed (not yet recorded, the header untouched); a server records it
// at its first check as a reencryption observed at its clock's now, with
// an audit record, and counts the next one from there instead of finding
// one overdue (40 days after the policy set a 30-day period).
func TestRotationObservesCryptsetupReencrypt(t *testing.T) {
	testutil.RequireTool(t, "cryptsetup", "cryptsetup-bin")
	ctx := context.Background()
	dir := t.TempDir()
	keyDir := filepath.Join(dir, "keys")
	path, data, uuid := rotationVolume(t, dir, keyDir)
	initial := filepath.Join(keyDir, uuid+"-initial.key")
	t0 := newFakeClock().Now()
	kr, err := keyring.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rotation.SetPolicy(kr, rotation.Policy{ReencryptEvery: rotation.Period(30 * 24 * time.Hour)}, rotation.All, t0); err != nil {
		t.Fatal(err)
	}
	oldID := kr.VolumeKeyID()
	kr.Close()
	if out, err := cryptsetupTool(t, "reencrypt", "--force-offline-reencrypt", "--batch-mode", "--key-file", initial,
		"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", path); err != nil {
		t.Fatalf("cryptsetup reencrypt: %v\n%s", err, out)
	}
	header := func() (rotation.Record, string) {
		kr, err := keyring.Open(path, &keyring.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer kr.Close()
		rec, err := rotation.Load(kr)
		if err != nil {
			t.Fatal(err)
		}
		return rec, kr.VolumeKeyID()
	}
	rec, newID := header()
	if rec.VolumeKey != oldID || newID == oldID || newID == "" {
		t.Fatalf("volume key IDs: recorded %q, before %q, after cryptsetup reencrypt %q", rec.VolumeKey, oldID, newID)
	}

	off, err := OfflineStatus(path)
	if err != nil {
		t.Fatal(err)
	}
	if re := off.Rotation.Reencrypt; !re.Observed || !re.Unrecorded || re.Last == nil || re.Overdue {
		t.Fatalf("offline status after cryptsetup reencrypt: %+v", re)
	}
	if rec2, _ := header(); !reflect.DeepEqual(rec2, rec) {
		t.Fatalf("offline status changed the header: %+v -> %+v", rec, rec2)
	}

	var logs testutil.SyncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	secret, _ := os.ReadFile(initial)
	v, err := OpenVolume(ctx, VolumeSpec{Backing: path, Logger: log}, keyFile(t, secret))
	if err != nil {
		t.Fatal(err)
	}
	clock := testutil.NewManualClock(t0.Add(40 * 24 * time.Hour))
	r := startConfig(t, dir, Config{Volumes: []*Volume{v}, Clock: clock, Logger: log})
	status := func() *RotationStatus { return r.rotation(t) }
	testutil.WaitFor(t, "the server to record the observed reencryption", func() bool {
		re := status().Reencrypt
		return re.Blocked != "" || re.Observed && !re.Unrecorded
	})
	re := status().Reencrypt
	if !re.Observed || re.Overdue || re.Blocked != "" || !re.Last.Equal(clock.Now()) || !re.Next.Equal(clock.Now().Add(30*24*time.Hour)) {
		t.Fatalf("served status: %+v (a blocked or overdue reencryption means the server did not see cryptsetup's)\n%s", re, logs.String())
	}
	if r, err := v.kr.Reencryption(); r != nil || err != nil {
		t.Fatalf("a reencryption was recorded: %+v %v", r, err)
	}
	got := make([]byte, len(data))
	if err := v.Device().ReadAt(ctx, got, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("data after cryptsetup's reencryption differ (%v)", err)
	}
	r.stop(t)
	if !strings.Contains(logs.String(), `"event":"reencrypt-observed","result":"ok"`) || strings.Contains(logs.String(), `"event":"reencrypt-due"`) {
		t.Fatalf("audit records:\n%s", logs.String())
	}
	rec, _ = header()
	if !rec.ReencryptObserved || !rec.LastReencrypt.Equal(clock.Now()) || rec.VolumeKey != newID {
		t.Fatalf("rotation token after the server's check: %+v", rec)
	}
}

// rotation is the served volume's rotation status.
func (r *running) rotation(t *testing.T) *RotationStatus {
	t.Helper()
	st, err := r.ctl.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.Volumes[0].Rotation
}

func seqID(t *testing.T, v *Volume) uint64 {
	t.Helper()
	if err := v.kr.Reload(); err != nil {
		t.Fatal(err)
	}
	return v.kr.SeqID()
}

// A policy that names no KEK source for a KEK period, or a period out of
// bounds, is refused by the server with one line.
func TestRotationPolicyRefused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path, _, _ := rotationVolume(t, dir, filepath.Join(dir, "keys"))
	v, err := OpenVolume(ctx, VolumeSpec{Backing: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := startConfig(t, dir, Config{Volumes: []*Volume{v}, Clock: newFakeClock()})
	for _, p := range []rotation.Policy{
		{KEKEvery: rotation.Period(30 * 24 * time.Hour)},
		{ReencryptEvery: rotation.Period(time.Hour)},
		{KeyDir: "relative/dir"},
	} {
		_, err := r.ctl.SetRotationPolicy(ctx, "", p, rotation.All)
		if !errors.Is(err, rotation.ErrPolicy) {
			t.Errorf("%+v: %v, want ErrPolicy", p, err)
		}
	}
	if toks := tokenSlots(t, path, rotation.TokenType); !slices.Equal(toks, nil) {
		t.Fatalf("tokens: %v", toks)
	}
}

// The online reencryption rate: the volume's default (serve
// --reencrypt-rate; 0 there is DefaultReencryptRate, negative no cap),
// replaced for one reencryption by the unlock request's (encblk reencrypt
// --throttle; 0 there is no cap).
func TestReencryptRate(t *testing.T) {
	for _, c := range []struct {
		spec     int64
		override *int64
		want     uint64
	}{
		{0, nil, DefaultReencryptRate}, {-1, nil, 0}, {10 << 20, nil, 10 << 20},
		{0, new(int64(0)), 0}, {-1, new(int64(5 << 20)), 5 << 20}, {10 << 20, new(int64(1 << 20)), 1 << 20},
	} {
		v := &Volume{spec: VolumeSpec{ReencryptRate: c.spec}}
		if got := v.reencryptRate(c.override); got != c.want {
			t.Errorf("spec %d, override %v: %d, want %d", c.spec, c.override, got, c.want)
		}
	}

	// Through the control API: the rate an unlock carries is the cap of
	// the reencryption it starts.
	ctx := context.Background()
	dir := t.TempDir()
	path, _, uuid := rotationVolume(t, dir, filepath.Join(dir, "keys"))
	secret, _ := os.ReadFile(filepath.Join(dir, "keys", uuid+"-initial.key"))
	recordReencryption(t, path, secret)
	v, err := OpenVolume(ctx, VolumeSpec{Backing: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := startConfig(t, dir, Config{Volumes: []*Volume{v}, Clock: newFakeClock()})
	if err := r.ctl.UnlockRate(ctx, "", secret, 64<<20); err != nil {
		t.Fatal(err)
	}
	if err := v.WaitReencryption(ctx); err != nil {
		t.Fatal(err)
	}
	v.keyMu.Lock()
	got := v.reenc.cap
	v.keyMu.Unlock()
	if got != 64<<20 {
		t.Fatalf("cap %d, want %d", got, 64<<20)
	}
}

// A KEK rotation whose time cannot be recorded in the token (the keyslot
// is committed, the token write fails) is not done again at every check:
// the server counts the next one from the rotation it did, and status
// shows that time.
func TestRotationKEKUnrecorded(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	keyDir := filepath.Join(dir, "keys")
	path, _, uuid := rotationVolume(t, dir, keyDir)
	var logs testutil.SyncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	secret, _ := os.ReadFile(filepath.Join(keyDir, uuid+"-initial.key"))
	v, err := OpenVolume(ctx, VolumeSpec{Backing: path, Logger: log, ReencryptRate: -1}, keyFile(t, secret))
	if err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock()
	r := startConfig(t, dir, Config{Volumes: []*Volume{v}, Clock: clock, Logger: log})
	pol := rotation.Policy{KEKEvery: rotation.Period(30 * 24 * time.Hour), KeyDir: keyDir}
	if _, err := r.ctl.SetRotationPolicy(ctx, "", pol, rotation.All); err != nil {
		t.Fatal(err)
	}
	recordKEK = func(*keyring.Keyring, time.Time) (time.Time, error) {
		return clock.Now().UTC().Truncate(time.Second), errors.New("injected: the token could not be written")
	}
	t.Cleanup(func() { recordKEK = rotation.RecordKEK })

	clock.Advance(t, 31*24*time.Hour)
	rotated := clock.Now()
	keyFiles := func() []string {
		files, _ := filepath.Glob(filepath.Join(keyDir, uuid+"-*.key"))
		return files
	}
	want := filepath.Join(keyDir, uuid+"-"+rotated.Format("20060102T150405Z")+".key")
	testutil.WaitFor(t, "the KEK rotation", func() bool { return slices.Equal(keyFiles(), []string{want}) })

	// Two more hours: the scheduler checks at least twice more.
	for range 2 {
		clock.Advance(t, time.Hour)
	}
	clock.Advance(t, 0)
	if n := strings.Count(logs.String(), `"event":"rotate-kek","result":"ok"`); n != 1 {
		t.Fatalf("%d KEK rotations, want 1; key files %v\n%s", n, keyFiles(), logs.String())
	}
	if !strings.Contains(logs.String(), "could not be recorded") {
		t.Fatalf("the failed record is not logged:\n%s", logs.String())
	}
	st, err := r.ctl.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if k := st.Volumes[0].Rotation.KEK; k.Last == nil || !k.Last.Equal(rotated) || k.Overdue {
		t.Fatalf("status: %+v, want last %v and not overdue", k, rotated)
	}
}
