package nbd_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/encblk/encblk/internal/testutil"
	"github.com/encblk/encblk/pkg/blockdev"
	"github.com/encblk/encblk/pkg/nbd"
)

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout: %s\nstderr: %s", name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// nbdinfoJSON is the part of `nbdinfo --json` we check.
type nbdinfoJSON struct {
	ProtocolVersion string `json:"protocol"`
	TLS             bool   `json:"TLS"`
	Exports         []struct {
		Name               string   `json:"export-name"`
		Description        string   `json:"description"`
		Size               int64    `json:"export-size"`
		Contexts           []string `json:"contexts"`
		ReadOnly           bool     `json:"is_read_only"`
		Rotational         bool     `json:"is_rotational"`
		CanCache           bool     `json:"can_cache"`
		CanDF              bool     `json:"can_df"`
		CanFastZero        bool     `json:"can_fast_zero"`
		CanFlush           bool     `json:"can_flush"`
		CanFUA             bool     `json:"can_fua"`
		CanMultiConn       bool     `json:"can_multi_conn"`
		CanTrim            bool     `json:"can_trim"`
		CanZero            bool     `json:"can_zero"`
		BlockSizeMinimum   uint32   `json:"block_size_minimum"`
		BlockSizePreferred uint32   `json:"block_size_preferred"`
		BlockSizeMaximum   uint32   `json:"block_size_maximum"`
	} `json:"exports"`
}

func nbdinfo(t testing.TB, args ...string) nbdinfoJSON {
	t.Helper()
	bin := testutil.RequireTool(t, "nbdinfo", "libnbd-bin")
	out := run(t, bin, append([]string{"--json"}, args...)...)
	var v nbdinfoJSON
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("nbdinfo --json output: %v\n%s", err, out)
	}
	return v
}

func TestNbdinfoCapabilities(t *testing.T) {
	t.Parallel()
	b, _ := newFileExport(t, 16<<20, allCaps())
	exp := fullExport(b)
	exp.Description = "test disk"
	exp.MinBlock, exp.PreferredBlock, exp.MaxBlock = 512, 4096, 32<<20
	ro, _ := newFileExport(t, 1<<20, blockdev.Info{ReadOnly: true, CanFlush: true})
	s := startServer(t, nbd.StaticExports{"": exp, "ro": {Device: ro}}, nil)

	v := nbdinfo(t, s.uri(""))
	if len(v.Exports) != 1 {
		t.Fatalf("exports: %+v", v.Exports)
	}
	e := v.Exports[0]
	if v.ProtocolVersion != "newstyle-fixed" {
		t.Errorf("protocol %q, want newstyle-fixed", v.ProtocolVersion)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"size", e.Size, int64(16 << 20)},
		{"description", e.Description, "test disk"},
		{"read-only", e.ReadOnly, false},
		{"rotational", e.Rotational, false},
		{"can_cache", e.CanCache, true},
		{"can_df", e.CanDF, true},
		{"can_fast_zero", e.CanFastZero, true},
		{"can_flush", e.CanFlush, true},
		{"can_fua", e.CanFUA, true},
		{"can_multi_conn", e.CanMultiConn, true},
		{"can_trim", e.CanTrim, true},
		{"can_zero", e.CanZero, true},
		{"block min", e.BlockSizeMinimum, uint32(512)},
		{"block preferred", e.BlockSizePreferred, uint32(4096)},
		{"block max", e.BlockSizeMaximum, uint32(32 << 20)},
		{"contexts", strings.Join(e.Contexts, ","), "base:allocation"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}

	v = nbdinfo(t, s.uri("ro"))
	r := v.Exports[0]
	if !r.ReadOnly || r.CanTrim || r.CanZero || r.CanFUA || r.CanCache || r.CanMultiConn || !r.CanFlush {
		t.Errorf("read-only export flags: %+v", r)
	}
}

func TestNbdinfoList(t *testing.T) {
	t.Parallel()
	a, _ := newFileExport(t, 1<<20, blockdev.Info{})
	b, _ := newFileExport(t, 2<<20, blockdev.Info{})
	s := startServer(t, nbd.StaticExports{"": {Device: a, Description: "first"}, "vol2": {Device: b, Description: "second"}}, nil)
	v := nbdinfo(t, "--list", s.uri(""))
	got := map[string]int64{}
	for _, e := range v.Exports {
		got[e.Name] = e.Size
	}
	if len(got) != 2 || got[""] != 1<<20 || got["vol2"] != 2<<20 {
		t.Errorf("--list exports: %v", got)
	}
	// An unknown export is refused cleanly.
	bin := testutil.RequireTool(t, "nbdinfo", "libnbd-bin")
	out, err := exec.Command(bin, s.uri("nope")).CombinedOutput()
	if err == nil {
		t.Errorf("nbdinfo on an unknown export succeeded: %s", out)
	}
}

func TestNbdinfoMap(t *testing.T) {
	t.Parallel()
	b, path := newFileExport(t, 4<<20, allCaps())
	// Data at 1 MiB..2 MiB, holes elsewhere.
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xaa}, 1<<20), 1<<20); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	s := startServer(t, nbd.StaticExports{"": fullExport(b)}, nil)
	bin := testutil.RequireTool(t, "nbdinfo", "libnbd-bin")
	out := run(t, bin, "--map", s.uri(""))
	// nbdinfo --map prints "offset length type description".
	want := [][3]string{
		{"0", "1048576", "3"},
		{"1048576", "1048576", "0"},
		{"2097152", "2097152", "3"},
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(want) {
		t.Fatalf("nbdinfo --map:\n%s", out)
	}
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) < 3 || f[0] != want[i][0] || f[1] != want[i][1] || f[2] != want[i][2] {
			t.Errorf("map line %d = %q, want %v", i, l, want[i])
		}
	}
}

func TestNbdcopyRoundTrip(t *testing.T) {
	t.Parallel()
	nbdcopy := testutil.RequireTool(t, "nbdcopy", "libnbd-bin")
	size := int64(nbdcopySize)
	b, _ := newFileExport(t, size, allCaps())
	s := startServer(t, nbd.StaticExports{"": fullExport(b)}, nil)

	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	// A zero run in the middle exercises zeroing/sparse paths.
	clear(data[size/2 : size/2+8<<20])
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(data)
	run(t, nbdcopy, "--connections=4", "--requests=16", src, s.uri(""))
	dst := filepath.Join(dir, "dst")
	run(t, nbdcopy, "--connections=4", "--requests=16", s.uri(""), dst)
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != want {
		t.Fatal("nbdcopy round trip: data differs")
	}
}
