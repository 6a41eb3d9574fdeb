package testutil

import (
	"testing"
)

// fakeTB records what RequireTool does instead of stopping the test.
type fakeTB struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Skipf(format string, args ...any) {
	f.skipped = true
	f.msg = format
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = true
	f.msg = format
}

func TestRequireToolFound(t *testing.T) {
	if p := RequireTool(t, "sh", "dash"); p == "" {
		t.Fatal("sh not found")
	}
}

func TestRequirePythonModuleFound(t *testing.T) {
	if p := RequirePythonModule(t, "json", "python3"); p != Python {
		t.Fatalf("RequirePythonModule(json) = %q", p)
	}
}

// TestRequireMissing: each helper skips on a missing tool, or fails under
// ENCBLK_REQUIRE_TOOLS=1, and returns no path.
func TestRequireMissing(t *testing.T) {
	helpers := map[string]func(testing.TB) string{
		"RequireTool": func(tb testing.TB) string { return RequireTool(tb, "encblk-no-such-tool", "nosuchpkg") },
		"RequirePythonModule": func(tb testing.TB) string {
			return RequirePythonModule(tb, "encblk_no_such_module", "nosuchpkg")
		},
	}
	for name, require := range helpers {
		for _, tc := range []struct {
			env            string
			skip, failWant bool
		}{
			{"", true, false},
			{"1", false, true},
		} {
			t.Setenv(RequireToolsEnv, tc.env)
			f := &fakeTB{TB: t}
			if p := require(f); p != "" {
				t.Errorf("%s env=%q: returned %q", name, tc.env, p)
			}
			if f.skipped != tc.skip || f.failed != tc.failWant {
				t.Errorf("%s env=%q: skipped=%v failed=%v, want %v %v", name, tc.env, f.skipped, f.failed, tc.skip, tc.failWant)
			}
		}
	}
}
