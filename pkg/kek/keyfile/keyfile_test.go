package keyfile

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recordingReader serves n copies of a byte and keeps every small buffer
// it was asked to fill: those are the reader's caller's own copies of the
// key file, which the caller must wipe.
type recordingReader struct {
	n     int
	small [][]byte
}

func (r *recordingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	m := min(len(p), r.n)
	for i := range p[:m] {
		p[i] = 'k'
	}
	r.n -= m
	if len(p) < 64 {
		r.small = append(r.small, p)
	}
	return m, nil
}

func TestReadTooLargeWipesProbe(t *testing.T) {
	t.Parallel()
	r := &recordingReader{n: MaxLen + 1}
	if _, err := Read(r); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("Read of %d bytes: %v, want too large", MaxLen+1, err)
	}
	if len(r.small) == 0 {
		t.Fatal("Read did not probe for a byte past the limit")
	}
	for _, p := range r.small {
		if !bytes.Equal(p, make([]byte, len(p))) {
			t.Errorf("key file byte left in Read's %d-byte read buffer: %q", len(p), p)
		}
	}
}

// Generate writes 32 random bytes, mode 0600, that Open reads back; it
// never overwrites a file, and a missing directory is open's error.
func TestGenerate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "k")
	k, err := Generate(path)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Destroy()
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != GeneratedLen {
		t.Fatalf("generated %v %v", fi, err)
	}
	back, err := Open(path)
	if err != nil || !bytes.Equal(back.Bytes(), k.Bytes()) {
		t.Fatalf("read back: %v", err)
	}
	back.Destroy()
	if _, err := Generate(path); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("over an existing file: %v", err)
	}
	var pe *fs.PathError
	if err := Create(filepath.Join(dir, "none", "k"), []byte("x")); !errors.As(err, &pe) || pe.Op != "open" {
		t.Fatalf("in a missing directory: %v", err)
	}
}
