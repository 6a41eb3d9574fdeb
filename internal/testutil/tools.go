// Package testutil holds helpers shared by encblk's tests.
package testutil

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// RequireToolsEnv is the environment variable that turns a missing external
// tool from a skip into a failure. scripts/test.sh sets it, so CI cannot pass
// by skipping the interop tests.
const RequireToolsEnv = "ENCBLK_REQUIRE_TOOLS"

// RequireTool returns the path of the executable name. If it is not on PATH
// the test is skipped with a message naming the Debian package that provides
// it, or fails when ENCBLK_REQUIRE_TOOLS=1.
func RequireTool(tb testing.TB, name, debianPackage string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	missing(tb, "%s not found on PATH (install the Debian package %s, or run scripts/deps.sh)", name, debianPackage)
	return ""
}

// RequireFile is RequireTool for a file that is not an executable on PATH,
// such as a kernel image or a Python module's entry point.
func RequireFile(tb testing.TB, path, debianPackage string) string {
	tb.Helper()
	if _, err := os.Stat(path); err == nil {
		return path
	}
	missing(tb, "%s not found (install the Debian package %s, or run scripts/deps.sh)", path, debianPackage)
	return ""
}

// Python is Debian's python3: tests run it, not whatever python3 comes first
// on PATH, because the modules they import are Debian packages.
const Python = "/usr/bin/python3"

// RequirePythonModule returns the path of Debian's python3 after checking
// that it imports module. If python3 or the module is missing the test is
// skipped with a message naming the Debian package (python3, or
// debianPackage for the module), or fails when ENCBLK_REQUIRE_TOOLS=1.
func RequirePythonModule(tb testing.TB, module, debianPackage string) string {
	tb.Helper()
	if RequireFile(tb, Python, "python3") == "" {
		return ""
	}
	if out, err := exec.Command(Python, "-c", "import "+module).CombinedOutput(); err != nil {
		missing(tb, "%s cannot import %s (install the Debian package %s, or run scripts/deps.sh): %v: %s",
			Python, module, debianPackage, err, bytes.TrimSpace(out))
		return ""
	}
	return Python
}

// RequireRoot skips (or fails under ENCBLK_REQUIRE_TOOLS=1) when the test
// does not run as root, for tests that need loop devices or FUSE mounts.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		missing(tb, "test needs root (loop devices, mounts)")
	}
}

// ToolsRequired reports whether missing tools must fail tests.
func ToolsRequired() bool { return os.Getenv(RequireToolsEnv) == "1" }

func missing(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if ToolsRequired() {
		tb.Fatalf(format+" [%s=1]", append(args, RequireToolsEnv)...)
		return
	}
	tb.Skipf(format, args...)
}

// Run runs the external tool name (found with RequireTool first) and
// returns its standard output; it fails tb with the tool's standard error
// if the tool fails.
func Run(tb testing.TB, name string, args ...string) []byte {
	tb.Helper()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}
