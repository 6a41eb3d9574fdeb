package sedsim

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBackingSize: both simulators refuse a backing that is not a whole
// number of 512-byte sectors, and accept one that is.
func TestBackingSize(t *testing.T) {
	for _, c := range []struct {
		size int64
		ok   bool
	}{{0, false}, {1000, false}, {4096, true}} {
		path := filepath.Join(t.TempDir(), "disk")
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, c.size); err != nil {
			t.Fatal(err)
		}
		opal, err := New(path, Options{})
		if err == nil {
			opal.Close()
		}
		if (err == nil) != c.ok || (err != nil && !strings.Contains(err.Error(), "multiple of 512")) {
			t.Errorf("New, size %d: %v", c.size, err)
		}
		ata, err := NewATA(path, []byte("master"))
		if err == nil {
			ata.Close()
		}
		if (err == nil) != c.ok || (err != nil && !strings.Contains(err.Error(), "multiple of 512")) {
			t.Errorf("NewATA, size %d: %v", c.size, err)
		}
	}
}
