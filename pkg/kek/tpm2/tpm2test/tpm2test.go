// Package tpm2test runs a software TPM (swtpm) on a unix socket for tests.
package tpm2test

import (
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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

// ToolsUnseal is an independent judge of a systemd-tpm2 token: tpm2-tools
// (not encblk's code) rebuild systemd's ECC primary key, load tpm2-blob,
// replay the PCR policy (and PolicyAuthValue with authHex, the SHA-256 of
// the PIN in hex, if not "") and unseal. It returns the keyslot passphrase
// systemd derives from the secret: its base64. dev is Start's device.
func ToolsUnseal(t testing.TB, dev string, blob []byte, pcrs []int, bank, authHex string) ([]byte, error) {
	t.Helper()
	for _, tool := range []string{"tpm2_createprimary", "tpm2_load", "tpm2_startauthsession", "tpm2_policypcr", "tpm2_policyauthvalue", "tpm2_unseal", "tpm2_flushcontext"} {
		testutil.RequireTool(t, tool, "tpm2-tools")
	}
	if len(blob) < 2 || len(blob) < 2+int(blob[0])<<8|int(blob[1]) {
		return nil, fmt.Errorf("blob too short")
	}
	n := 2 + (int(blob[0])<<8 | int(blob[1]))
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "priv"), blob[:n], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pub"), blob[n:], 0o600); err != nil {
		t.Fatal(err)
	}
	// swtpm has no resource manager: transient objects are flushed after
	// each tool, which reloads the saved contexts it needs.
	script := `set -e
flush() { tpm2_flushcontext -t; }
flush
tpm2_createprimary -Q -C o -G ecc256:null:aes128cfb -a 'restricted|decrypt|fixedtpm|fixedparent|sensitivedataorigin|userwithauth' -c prim.ctx
flush
tpm2_load -Q -C prim.ctx -u pub -r priv -c obj.ctx
flush
tpm2_startauthsession -Q --policy-session -S s.ctx
trap 'tpm2_flushcontext s.ctx; flush' EXIT
if [ -n "$PCRS" ]; then tpm2_policypcr -Q -S s.ctx -l "$BANK:$PCRS"; fi
auth=session:s.ctx
if [ -n "$AUTH" ]; then tpm2_policyauthvalue -Q -S s.ctx; auth="session:s.ctx+hex:$AUTH"; fi
tpm2_unseal -c obj.ctx -p "$auth" -o secret
`
	list := make([]string, len(pcrs))
	for i, p := range pcrs {
		list[i] = strconv.Itoa(p)
	}
	cmd := exec.Command("sh", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TPM2TOOLS_TCTI="+dev, "PCRS="+strings.Join(list, ","), "BANK="+bank, "AUTH="+authHex)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("tpm2-tools: %v\n%s", err, out)
	}
	secret, err := os.ReadFile(filepath.Join(dir, "secret"))
	if err != nil {
		t.Fatal(err)
	}
	return []byte(base64.StdEncoding.EncodeToString(secret)), nil
}
