package rotation

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/encblk/encblk/internal/kektest"
	"github.com/encblk/encblk/internal/testutil"
	"github.com/encblk/encblk/pkg/kek/keyfile"
	"github.com/encblk/encblk/pkg/keyring"
)

func TestParsePeriod(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
		str  string
	}{
		{"7d", 7 * day, "7d"}, {"30d", 30 * day, "30d"}, {"90d", 90 * day, "90d"}, {"1y", year, "1y"},
		{"2w", 14 * day, "14d"}, {"168h", 7 * day, "7d"}, {"170h", 170 * time.Hour, "170h"},
		{"70y", 70 * year, "70y"}, {"25550d", 70 * year, "70y"}, {"off", 0, "off"}, {"0", 0, "off"},
	} {
		p, err := ParsePeriod(c.in)
		if err != nil || time.Duration(p) != c.want || p.String() != c.str {
			t.Errorf("ParsePeriod(%q) = %v (%s), %v; want %v (%s)", c.in, time.Duration(p), p, err, c.want, c.str)
		}
	}
	for _, in := range []string{"", "6d", "167h", "71y", "25551d", "1m", "30", "d", "-7d", "+7d", "7.5d", "1e3d", "7 d", "99999999999999d"} {
		if p, err := ParsePeriod(in); err == nil {
			t.Errorf("ParsePeriod(%q) = %v, want an error", in, p)
		}
	}
}

func FuzzParsePeriod(f *testing.F) {
	for _, s := range []string{"7d", "1y", "off", "0", "170h", "6d", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePeriod(s)
		if err != nil {
			return
		}
		if p != 0 && (p < MinPeriod || p > MaxPeriod) {
			t.Fatalf("%q -> %v out of bounds", s, p)
		}
		if q, err := ParsePeriod(p.String()); err != nil || q != p {
			t.Fatalf("%q -> %v -> %q -> %v, %v", s, p, p.String(), q, err)
		}
	})
}

func FuzzParseToken(f *testing.F) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Add([]byte(Record{Policy: Policy{KEKEvery: Period(30 * day), KeyDir: "/k"}, LastKEK: now, KEKSince: now}.Token()))
	f.Add([]byte(`{"type":"encblk-rotation","keyslots":[],"time":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"type":"encblk-rotation","keyslots":[],"reencrypt_every":"1h"}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := ParseToken(raw)
		if err != nil {
			return
		}
		if err := r.Policy.Check(); err != nil {
			t.Fatalf("ParseToken accepted a policy Check refuses: %v", err)
		}
		r2, err := ParseToken(r.Token())
		if err != nil || !r2.LastKEK.Equal(r.LastKEK) || r2.Policy != r.Policy {
			t.Fatalf("round trip: %+v -> %+v, %v", r, r2, err)
		}
	})
}

func TestSchedule(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	r := Record{Policy: Policy{KEKEvery: Period(30 * day), ReencryptEvery: Period(year), KeyDir: "/k"}, KEKSince: t0, ReencryptSince: t0}
	if got := r.NextKEK(); !got.Equal(t0.Add(30 * day)) {
		t.Fatalf("NextKEK %v", got)
	}
	if Due(r.NextKEK(), t0.Add(29*day)) || !Due(r.NextKEK(), t0.Add(30*day)) {
		t.Fatal("Due")
	}
	// A rotation before the policy was set does not count; one after does.
	r.LastKEK = t0.Add(-day)
	if got := r.NextKEK(); !got.Equal(t0.Add(30 * day)) {
		t.Fatalf("NextKEK with an older rotation: %v", got)
	}
	r.LastKEK = t0.Add(10 * day)
	if got := r.NextKEK(); !got.Equal(t0.Add(40 * day)) {
		t.Fatalf("NextKEK after a rotation: %v", got)
	}
	r.LastReencrypt = t0.Add(5 * day)
	if got := r.NextReencrypt(); !got.Equal(t0.Add(5*day + year)) {
		t.Fatalf("NextReencrypt %v", got)
	}
	if off := (Record{LastKEK: t0}); !off.NextKEK().IsZero() || Due(off.NextKEK(), t0.Add(100*year)) {
		t.Fatal("no period is never due")
	}
}

func TestPolicyCheck(t *testing.T) {
	for _, p := range []Policy{
		{KEKEvery: Period(30 * day)},
		{KEKEvery: Period(day), KeyDir: "/k"},
		{ReencryptEvery: Period(71 * year)},
		{KeyDir: "/k", KMIPConfig: "/c"},
		{KeyDir: "k"},
		{KMIPConfig: "c"},
	} {
		if err := p.Check(); err == nil {
			t.Errorf("%+v: no error", p)
		}
	}
	for _, p := range []Policy{{}, {ReencryptEvery: Period(year)}, {KEKEvery: Period(7 * day), KMIPConfig: "/etc/kmip.conf"}} {
		if err := p.Check(); err != nil {
			t.Errorf("%+v: %v", p, err)
		}
	}
}

func cryptsetup(t *testing.T, args ...string) string {
	t.Helper()
	bin := testutil.RequireTool(t, "cryptsetup", "cryptsetup-bin")
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("cryptsetup %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// The policy token is one token (SetPolicy replaces it in one commit),
// bound to no keyslot, and cryptsetup keeps it through luksAddKey,
// luksKillSlot and a whole reencrypt; token export shows it as written.
// The volume key's ID it records tells cryptsetup's reencrypt (Observe
// records it) from its keyslot changes (nothing to record).
func TestTokenSurvivesCryptsetup(t *testing.T) {
	testutil.RequireTool(t, "cryptsetup", "cryptsetup-bin")
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	key2 := filepath.Join(dir, "key2")
	os.WriteFile(key, []byte("first key file"), 0o600)
	os.WriteFile(key2, []byte("second key file"), 0o600)
	path := filepath.Join(dir, "vol.img")
	os.WriteFile(path, nil, 0o600)
	os.Truncate(path, 24<<20)
	cryptsetup(t, "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", key, path)

	kr, err := keyring.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	p := Policy{KEKEvery: Period(90 * day), ReencryptEvery: Period(year), KeyDir: "/etc/encblk/keys"}
	if _, err := SetPolicy(kr, p, All, now); err != nil {
		t.Fatal(err)
	}
	// Set twice (the second only the reencryption period): still one token.
	p.ReencryptEvery = Period(2 * year)
	want, err := SetPolicy(kr, p, Fields{ReencryptEvery: true}, now.Add(day))
	if err != nil {
		t.Fatal(err)
	}
	if want.KEKSince != now || want.ReencryptSince != now.Add(day) || want.Policy != p {
		t.Fatalf("record %+v", want)
	}
	n := 0
	for _, tk := range kr.Tokens() {
		if tk.Type == TokenType {
			n++
		}
	}
	kr.Close()
	if n != 1 {
		t.Fatalf("%d rotation tokens", n)
	}
	exported := cryptsetup(t, "token", "export", "--token-id", "0", path)
	if want.VolumeKey == "" {
		t.Fatal("the record names no volume key")
	}
	later := now.Add(30 * day)
	check := func(when string) {
		t.Helper()
		kr, err := keyring.Open(path, &keyring.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer kr.Close()
		got, err := Load(kr)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("after %s: %+v, %v; want %+v", when, got, err, want)
		}
		seen, changed, err := LoadAt(kr, later)
		rekeyed := when == "reencrypt"
		if err != nil || changed != rekeyed || seen.ReencryptObserved != rekeyed ||
			rekeyed && (!seen.LastReencrypt.Equal(later) || seen.VolumeKey == want.VolumeKey || seen.NextReencrypt() != later.Add(2*year)) {
			t.Fatalf("after %s, observed: %+v, changed %v, %v", when, seen, changed, err)
		}
		if out := cryptsetup(t, "token", "export", "--token-id", "0", path); out != exported {
			t.Fatalf("after %s, token export: %s, was %s", when, out, exported)
		}
	}
	check("SetPolicy")
	cryptsetup(t, "luksAddKey", "--batch-mode", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", key, path, key2)
	check("luksAddKey")
	cryptsetup(t, "luksKillSlot", "--batch-mode", "--key-file", key2, path, "0")
	check("luksKillSlot")
	cryptsetup(t, "reencrypt", "--batch-mode", "--force-offline-reencrypt", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", key2, path)
	check("reencrypt")
	if !bytes.Contains([]byte(cryptsetup(t, "luksDump", path)), []byte("encblk-rotation")) {
		t.Fatal("luksDump does not list the token")
	}
	// Clearing the policy keeps the times; a zero record removes the token.
	kr, err = keyring.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer kr.Close()
	r, err := SetPolicy(kr, Policy{}, All, now)
	if err != nil || r.Policy != (Policy{}) || !r.NextKEK().IsZero() {
		t.Fatalf("clear: %+v %v", r, err)
	}
	if err := Save(kr, Record{}); err != nil {
		t.Fatal(err)
	}
	if len(kr.Tokens()) != 0 {
		t.Fatalf("tokens left: %+v", kr.Tokens())
	}
}

// A key directory's files: generated ones are 0600, named for the time,
// listed newest first; Retire moves the link and removes the old file.
func TestKeyDir(t *testing.T) {
	dir := t.TempDir()
	d := KeyDir{Dir: dir, UUID: "u"}
	if _, err := d.KEKs(); err == nil {
		t.Fatal("an empty directory gave KEKs")
	}
	os.WriteFile(filepath.Join(dir, "u-initial.key"), []byte("seed"), 0o600)
	os.WriteFile(filepath.Join(dir, "other-x.key"), []byte("not ours"), 0o600)
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	k1, err := d.Generate(t0)
	if err != nil {
		t.Fatal(err)
	}
	defer k1.Destroy()
	if fi, err := os.Stat(k1.Path); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != keyfile.GeneratedLen || filepath.Base(k1.Path) != "u-20300101T000000Z.key" {
		t.Fatalf("generated %s: %v %v", k1.Path, fi, err)
	}
	if _, err := d.Generate(t0); err == nil {
		t.Fatal("Generate overwrote a key file")
	}
	files, _ := d.Files()
	if len(files) != 2 || files[0] != filepath.Join(dir, "u-initial.key") || files[1] != k1.Path {
		t.Fatalf("files %v", files)
	}
	if err := d.Retire(filepath.Join(dir, "u-initial.key"), k1.Path); err != nil {
		t.Fatal(err)
	}
	ks, err := d.KEKs()
	if err != nil || len(ks) != 1 || ks[0].Path != k1.Path {
		t.Fatalf("KEKs after Retire: %v %v", ks, err)
	}
	Destroy(ks)
	if target, _ := os.Readlink(d.Link()); target != filepath.Base(k1.Path) {
		t.Fatalf("link -> %q", target)
	}
}

// A rotation's commit can fail after the header's primary copy reached
// the disk: the new key file is then the only KEK of a keyslot, and
// Discard keeps it (with the reason). One that opens nothing is removed.
func TestKeyDirDiscard(t *testing.T) {
	v := kektest.NewLUKSImage(t)
	ctx := context.Background()
	kr, err := keyring.Open(v.Path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer kr.Close()
	d := KeyDir{Dir: t.TempDir(), UUID: kr.UUID()}
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	unused, err := d.Generate(t0)
	if err != nil {
		t.Fatal(err)
	}
	defer unused.Destroy()
	if err := d.Discard(ctx, kr, unused); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(unused.Path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a key file that opens nothing was kept: %v", err)
	}

	used, err := d.Generate(t0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer used.Destroy()
	// The commit reached the disk behind kr's back.
	other, err := keyring.Open(v.Path, nil)
	if err != nil {
		t.Fatal(err)
	}
	old, err := keyfile.Open(v.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Destroy()
	_, slot, err := other.RotateKEK(ctx, old, used.Secret, &keyring.KeyslotOptions{KDF: keyring.KDFParams{Type: "pbkdf2", Hash: "sha256", Iterations: 1000}})
	other.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Discard(ctx, kr, used); err == nil || !strings.Contains(err.Error(), "kept") {
		t.Fatalf("Discard of the key file of keyslot %d: %v", slot, err)
	}
	if _, err := os.Stat(used.Path); err != nil {
		t.Fatalf("the only KEK of keyslot %d was removed: %v", slot, err)
	}
}

// The UUID comes from the header: one that is not a plain file name
// (a forged header) writes and reads no file outside the directory.
func TestKeyDirForgedUUID(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "keys")
	os.Mkdir(dir, 0o700)
	os.WriteFile(filepath.Join(base, "x-initial.key"), []byte("seed"), 0o600)
	for _, uuid := range []string{"../x", "..", ".", "a/b", "a\x00b"} {
		d := KeyDir{Dir: dir, UUID: uuid}
		if _, err := d.KEKs(); err == nil || !strings.Contains(err.Error(), "not a plain file name") {
			t.Errorf("KEKs with UUID %q: %v", uuid, err)
		}
		if k, err := d.Generate(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)); err == nil {
			k.Destroy()
			t.Errorf("Generate with UUID %q wrote %s", uuid, k.Path)
		}
	}
	if ents, _ := os.ReadDir(base); len(ents) != 2 {
		t.Fatalf("files beside the key directory: %v", ents)
	}
}
