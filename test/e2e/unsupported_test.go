package e2e

import (
	"os"
	"strings"
	"testing"
)

// TestUnsupportedKeyslotCipherExit4: a LUKS2 volume whose only keyslot
// uses a cipher encblk does not open (cryptsetup --keyslot-cipher
// aes-cbc-essiv:sha256) is unsupported (exit 4) with the right key, in
// dump --dump-volume-key and serve alike, as its LUKS1 twin is; it used to
// be a wrong key (exit 2).
func TestUnsupportedKeyslotCipherExit4(t *testing.T) {
	require(t, cryptsetupT)
	e := newEnv(t)
	pass := e.path("pass")
	if err := os.WriteFile(pass, []byte("the right key"), 0o600); err != nil {
		t.Fatal(err)
	}
	luks2, luks1 := e.path("luks2.img"), e.path("luks1.img")
	tool(t, "truncate", "-s", "20M", luks2, luks1)
	tool(t, "cryptsetup", "luksFormat", "--type", "luks2", "--batch-mode", "--keyslot-cipher", "aes-cbc-essiv:sha256",
		"--keyslot-key-size", "256", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", pass, luks2)
	tool(t, "cryptsetup", "luksFormat", "--type", "luks1", "--batch-mode", "--cipher", "aes-cbc-essiv:sha256",
		"--pbkdf-force-iterations", "1000", "--key-file", pass, luks1)
	for _, disk := range []string{luks2, luks1} {
		for _, args := range [][]string{
			{"dump", "--dump-volume-key", "--batch-mode", "--key-file", pass, disk},
			{"serve", "--listen", "unix:" + e.path("nbd.sock"), "--key-file", pass, disk},
		} {
			_, errs, code := e.encblk(args...)
			if code != 4 || strings.Count(errs, disk) != 1 || !strings.Contains(errs, "aes-cbc-essiv:sha256") {
				t.Errorf("encblk %s: exit %d, stderr %q; want 4 naming the path once and the cipher", strings.Join(args, " "), code, errs)
			}
		}
	}
}
