package e2e

import (
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/encblk/encblk/internal/testutil"
)

// TestServeClaimsBlockDevice: a block device served read-write is claimed
// as dm-crypt claims it. serve refuses a device that something else holds
// (mounted, mapped, or here opened O_EXCL) with exit 3 and one line, and
// while it serves, nothing can claim the device (mount and cryptsetup open
// fail with EBUSY) until it stops. A read-only serve claims nothing.
func TestServeClaimsBlockDevice(t *testing.T) {
	testutil.RequireRoot(t)
	require(t, losetupTool)
	e := newEnv(t)
	key := e.keyFile("key")
	disk := e.format("disk.img", 32<<20, key)
	dev := strings.TrimSpace(tool(t, "losetup", "--find", "--show", disk))
	t.Cleanup(func() { tool(t, "losetup", "-d", dev) })

	claim := func() (*os.File, error) { return os.OpenFile(dev, os.O_RDWR|syscall.O_EXCL, 0) }
	holder, err := claim()
	if err != nil {
		t.Fatal(err)
	}
	// A server that does not refuse keeps serving: give it a minute.
	c := e.cmd("serve", "--listen", "unix:"+e.path("held.sock"), "--key-file", key, dev)
	var stderrBuf syncBuffer
	c.Stderr = &stderrBuf
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(time.Minute, func() { c.Process.Kill() })
	c.Wait()
	timer.Stop()
	holder.Close()
	code, stderr := c.ProcessState.ExitCode(), stderrBuf.String()
	if code != 3 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, "in use") {
		t.Fatalf("serve of a claimed device: exit %d, want 3 and one line naming it in use:\n%s", code, stderr)
	}

	s := e.serve("nbd.sock", "--key-file", key, dev)
	if f, err := claim(); !errors.Is(err, syscall.EBUSY) {
		if err == nil {
			f.Close()
		}
		t.Fatalf("claim of a served device: %v, want EBUSY", err)
	}
	s.stop()
	f, err := claim()
	if err != nil {
		t.Fatalf("claim after the server stopped: %v", err)
	}
	f.Close()

	s = e.serve("ro.sock", "--read-only", "--key-file", key, dev)
	f, err = claim()
	if err != nil {
		t.Fatalf("claim of a device served read-only: %v", err)
	}
	f.Close()
	s.stop()
}
