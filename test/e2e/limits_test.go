package e2e

import (
	"context"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestServeConnectionLimits: `serve --max-connections 1` refuses a second
// client (nbdinfo) while one is connected, with a log line, and serves it
// once the first has gone; `--idle-timeout` closes a real client's idle
// connection (qemu-io sleeping between commands).
func TestServeConnectionLimits(t *testing.T) {
	require(t, nbdinfoTool, qemuIOTool)
	e := newEnv(t)
	key := e.keyFile("key")
	disk := e.format("disk.img", 20<<20, key)
	if _, errs, code := e.encblk("serve", "--max-connections", "-1", disk); code != 1 || !strings.Contains(errs, "must not be negative") {
		t.Fatalf("serve --max-connections -1: exit %d: %s", code, errs)
	}
	s := e.serve("nbd.sock", "--key-file", key, "--max-connections", "1", "--idle-timeout", "100ms", disk)

	hold, err := net.Dial("unix", s.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	_ = hold.SetReadDeadline(time.Now().Add(time.Minute)) // hang detector
	if _, err := io.ReadFull(hold, make([]byte, 18)); err != nil {
		t.Fatalf("first client's greeting: %v", err)
	}
	if out, err := exec.Command("nbdinfo", s.uri()).CombinedOutput(); err == nil {
		t.Fatalf("nbdinfo served past --max-connections 1:\n%s", out)
	}
	// The server logs before it closes the refused connection, but its
	// stderr reaches s.log through a pipe and a copying goroutine: wait
	// for the line rather than read the log at once (failed once so).
	for i := 0; !strings.Contains(s.log.String(), `too many connections" limit=1 refused=1`); i++ {
		if i == 600 {
			t.Fatalf("no log line about the refused client:\n%s", s.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	hold.Close()
	// The server sees the first client leave a moment later.
	for i := 0; ; i++ {
		if err := exec.Command("nbdinfo", s.uri()).Run(); err == nil {
			break
		}
		if i == 600 {
			t.Fatalf("nbdinfo still refused a minute after the first client left:\n%s", s.log)
		}
		time.Sleep(100 * time.Millisecond)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	qemu := exec.CommandContext(ctx, "qemu-io", "-f", "raw", "-c", "read 0 4k", "-c", "sleep 600000", s.uri())
	if err := qemu.Start(); err != nil {
		t.Fatal(err)
	}
	defer qemu.Wait()
	for i := 0; !strings.Contains(s.log.String(), "connection idle for 100ms"); i++ {
		if i == 600 {
			t.Fatalf("qemu-io's idle connection still open after a minute:\n%s", s.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	s.stop()
}
