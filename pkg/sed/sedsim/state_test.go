package sedsim

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/encblk/encblk/pkg/sed"
)

// TestStateWrittenOnChange: commands that change nothing (discovery,
// properties, IDENTIFY) leave the state file alone; one that changes the
// state replaces it.
func TestStateWrittenOnChange(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(img, make([]byte, 64*512), 0o600); err != nil {
		t.Fatal(err)
	}
	// hold opens the state file at path and keeps it open, so that its
	// inode is not reused while the test asks whether path still names it.
	hold := func(t *testing.T, path string) (same func() bool) {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		fresh, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		return func() bool {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			return os.SameFile(fresh, fi)
		}
	}

	t.Run("opal", func(t *testing.T) {
		path := filepath.Join(dir, "opal.state")
		d, err := New(img, Options{StatePath: path})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		call := func(m sed.MethodCall) {
			b, _ := sed.NewComPacket(0x07FE, 0, 0, mustEncode(m)).MarshalBinary()
			if err := d.IFSend(ctx, sed.ProtocolTCG, 0x07FE, b); err != nil {
				t.Fatal(err)
			}
			if err := d.IFRecv(ctx, sed.ProtocolTCG, 0x07FE, make([]byte, 4096)); err != nil {
				t.Fatal(err)
			}
		}
		same := hold(t, path)
		if _, err := sed.Discover(ctx, d); err != nil {
			t.Fatal(err)
		}
		call(sed.PropertiesCall(sed.DefaultHostProperties))
		if !same() {
			t.Error("state file rewritten by discovery and properties")
		}
		call(sed.StartSessionCall(1, sed.AdminSP, false, sed.UID{}, nil)) // takes a TSN
		if same() {
			t.Error("state file not rewritten after a session took a TSN")
		}
	})

	t.Run("ata", func(t *testing.T) {
		path := filepath.Join(dir, "ata.state")
		drv, err := OpenATA(img, path, []byte("factory-master"))
		if err != nil {
			t.Fatal(err)
		}
		defer drv.Close()
		a := sed.ATASecurityDevice{C: drv}
		same := hold(t, path)
		if _, err := a.Status(ctx); err != nil {
			t.Fatal(err)
		}
		if !same() {
			t.Error("state file rewritten by IDENTIFY")
		}
		if err := a.SetPassword(ctx, sed.ATAUserPassword, []byte("user password"), false); err != nil {
			t.Fatal(err)
		}
		if same() {
			t.Error("state file not rewritten after SET PASSWORD")
		}
	})
}
