package e2e

import (
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSocketActivation starts encblk serve the way encblk@.socket does:
// systemd-socket-activate listens, passes the socket on the first
// connection (LISTEN_FDS), and encblk serves on it.
func TestSocketActivation(t *testing.T) {
	require(t, [2]string{"systemd-socket-activate", "systemd"}, nbdinfoTool)
	e := newEnv(t)
	key := e.keyFile("key")
	disk := e.format("disk.img", 20<<20, key)
	sock := e.path("act.sock")
	c := exec.Command("systemd-socket-activate", "-l", sock, "-E", "ENCBLK_RUNTIME_DIR="+e.run,
		encblkBin, "serve", "--key-file", key, disk)
	var log syncBuffer
	c.Stdout, c.Stderr = &log, &log
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	t.Cleanup(func() { c.Process.Kill() })
	for i := 0; !strings.Contains(log.String(), "Listening on"); i++ {
		if i == 200 {
			t.Fatalf("systemd-socket-activate did not listen:\n%s", log.String())
		}
		time.Sleep(25 * time.Millisecond)
	}
	out := tool(t, "nbdinfo", "--size", "nbd+unix:///?socket="+sock)
	if strings.TrimSpace(out) != "4194304" {
		t.Fatalf("nbdinfo --size: %s", out)
	}
	if st := statusJSON(t, e, disk); st.Volumes[0].State != "unlocked" {
		t.Fatalf("state %s", st.Volumes[0].State)
	}
	c.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("after SIGTERM: %v\n%s", err, log.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("did not stop on SIGTERM")
	}
}
