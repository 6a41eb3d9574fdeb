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

func TestRequireToolMissing(t *testing.T) {
	for _, tc := range []struct {
		env            string
		skip, failWant bool
	}{
		{"", true, false},
		{"1", false, true},
	} {
		t.Setenv(RequireToolsEnv, tc.env)
		f := &fakeTB{TB: t}
		RequireTool(f, "encblk-no-such-tool", "nosuchpkg")
		if f.skipped != tc.skip || f.failed != tc.failWant {
			t.Errorf("env=%q: skipped=%v failed=%v, want %v %v", tc.env, f.skipped, f.failed, tc.skip, tc.failWant)
		}
	}
}
