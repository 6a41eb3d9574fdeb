package e2e

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestServeDetachedHeader: a volume formatted with its header in another
// file (--header) is served with serve --header: data written through NBD
// lands encrypted at the start of the data file, the header file keeps
// the keyslots, and a second server reads the data back.
func TestServeDetachedHeader(t *testing.T) {
	require(t, qemuIOTool)
	e := newEnv(t)
	key := e.keyFile("key")
	data, hdr := e.path("data.img"), e.path("hdr.img")
	tool(t, "truncate", "-s", "8M", data)
	e.must("format", "--batch-mode", "--header", hdr, "--key-file", key, "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", data)
	if _, errs, code := e.encblk("serve", "--header", hdr, "--key-file", key, data, data); code != 1 || !strings.Contains(errs, "--header serves one") {
		t.Fatalf("serve --header with two backings: exit %d: %s", code, errs)
	}

	s := e.serve("nbd.sock", "--header", hdr, "--key-file", key, data)
	if out := e.must("status", data); !strings.Contains(out, "unlocked") {
		t.Fatalf("status of the served data file:\n%s", out)
	}
	tool(t, "qemu-io", "-f", "raw", s.uri(), "-c", "write -P 0x5a 0 1M", "-c", "flush")
	s.stop()

	img, err := os.ReadFile(data)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(img[:4096], bytes.Repeat([]byte{0x5a}, 4096)) || bytes.Equal(img[:4096], make([]byte, 4096)) {
		t.Fatal("the data file's first block is plaintext or untouched: not encrypted data at offset 0")
	}
	s = e.serve("nbd2.sock", "--header", hdr, "--key-file", key, data)
	tool(t, "qemu-io", "-f", "raw", s.uri(), "-c", "read -P 0x5a 0 1M")
	s.stop()
}
