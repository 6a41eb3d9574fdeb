package keyring

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestUnsupportedKeyslotCipher: a LUKS2 volume whose only keyslot uses a
// cipher encblk does not open (cryptsetup --keyslot-cipher
// aes-cbc-essiv:sha256) does not unlock with ErrNoMatchingKeyslot (a wrong
// key, as far as the caller can tell) but with ErrUnsupported, as its
// LUKS1 twin does.
func TestUnsupportedKeyslotCipher(t *testing.T) {
	t.Parallel()
	path := newBacking(t, 20<<20)
	keyFile := writeFile(t, []byte("the right key"))
	cryptsetup(t, "", "luksFormat", "--type", "luks2", "--batch-mode", "--keyslot-cipher", "aes-cbc-essiv:sha256",
		"--keyslot-key-size", "256", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", keyFile, path)
	k := openPath(t, path)
	_, err := k.Unlock(context.Background(), passphrase(t, "the right key"))
	if !errors.Is(err, ErrUnsupported) || errors.Is(err, ErrNoMatchingKeyslot) || !strings.Contains(err.Error(), "aes-cbc-essiv:sha256") {
		t.Fatalf("Unlock: %v, want ErrUnsupported naming the keyslot cipher", err)
	}
}
