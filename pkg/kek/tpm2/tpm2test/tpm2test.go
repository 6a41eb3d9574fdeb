// Package tpm2test runs a software TPM (swtpm) on a unix socket for tests.
package tpm2test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/encblk/encblk/internal/testutil"
)

// Start runs swtpm on a unix socket (its control socket beside it, as the
// swtpm TCTI wants) until the test ends, and returns the device in
// systemd's spelling, "swtpm:path=SOCKET" (also TPM2TOOLS_TCTI's).
func Start(t testing.TB) string {
	t.Helper()
	swtpm := testutil.RequireTool(t, "swtpm", "swtpm")
	dir := t.TempDir()
	sock := filepath.Join(dir, "tpm.sock")
	cmd := exec.Command(swtpm, "socket", "--tpm2", "--tpmstate", "dir="+dir,
		"--server", "type=unixio,path="+sock, "--ctrl", "type=unixio,path="+sock+".ctrl",
		"--flags", "not-need-init,startup-clear")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	for range 1000 {
		if _, err := os.Stat(sock); err == nil {
			return "swtpm:path=" + sock
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("swtpm did not create its socket")
	return ""
}
