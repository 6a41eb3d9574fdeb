package testutil

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// CValues compiles the C program src with gcc, runs it and returns the
// "name number" lines it prints, for tests that check Go mirrors of kernel
// structs (sizes, offsets, ioctl numbers) against the uapi headers. The
// headers must come from Debian packages: requireHeaders maps each header
// path to its package, and a missing one skips (or fails under
// ENCBLK_REQUIRE_TOOLS=1).
func CValues(tb testing.TB, src string, requireHeaders map[string]string) map[string]uint64 {
	tb.Helper()
	gcc := RequireTool(tb, "gcc", "gcc")
	if gcc == "" {
		return nil
	}
	for h, pkg := range requireHeaders {
		if RequireFile(tb, h, pkg) == "" {
			return nil
		}
	}
	dir := tb.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "prog.c"), []byte(src), 0o600); err != nil {
		tb.Fatal(err)
	}
	bin := filepath.Join(dir, "prog")
	if out, err := exec.Command(gcc, "-o", bin, filepath.Join(dir, "prog.c")).CombinedOutput(); err != nil {
		tb.Fatalf("gcc: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		tb.Fatal(err)
	}
	vals := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			tb.Fatalf("C program printed %q, want \"name number\"", sc.Text())
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			tb.Fatal(err)
		}
		vals[f[0]] = v
	}
	return vals
}

// CompareValues fails tb for each name whose C value differs from want's
// or that the C program did not print, and if it printed names want lacks.
func CompareValues(tb testing.TB, c map[string]uint64, want map[string]uint64) {
	tb.Helper()
	for k, v := range want {
		got, ok := c[k]
		if !ok {
			tb.Errorf("%s: not printed by the C program", k)
			continue
		}
		if got != v {
			tb.Errorf("%s: C says %d, Go has %d", k, got, v)
		}
	}
	if len(c) != len(want) {
		tb.Errorf("C printed %d values, checked %d", len(c), len(want))
	}
}
