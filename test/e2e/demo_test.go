package e2e

import (
	"bufio"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDemo runs `encblk demo` as the README says, follows what it prints
// (nbdinfo on the NBD URI, status through the control socket), stops it
// with SIGINT and serves the same disk again.
func TestDemo(t *testing.T) {
	require(t, nbdinfoTool)
	e := newEnv(t)
	dir := e.path("state")
	for round := range 2 {
		c := e.cmd("demo", "--dir", dir, "--size", "64M")
		stdout, _ := c.StdoutPipe()
		c.Stderr = io.Discard
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 100)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		var printed strings.Builder
		uri := ""
		timeout := time.After(60 * time.Second)
		for uri == "" || !strings.Contains(printed.String(), "Stop it") {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("demo exited:\n%s", printed.String())
				}
				printed.WriteString(l + "\n")
				if m := regexp.MustCompile(`^NBD URI: (nbd\+unix:///\?socket=\S+)$`).FindStringSubmatch(l); m != nil {
					uri = m[1]
				}
			case <-timeout:
				c.Process.Kill()
				t.Fatalf("demo did not print its NBD URI:\n%s", printed.String())
			}
		}
		out := tool(t, "nbdinfo", "--size", uri)
		if strings.TrimSpace(out) != "50331648" {
			t.Fatalf("round %d: nbdinfo --size: %s", round, out)
		}
		m := regexp.MustCompile(`(\S+) status --control (\S+)`).FindStringSubmatch(printed.String())
		if m == nil {
			t.Fatalf("no status command printed:\n%s", printed.String())
		}
		if st, err := exec.Command(encblkBin, "status", "--control", m[2]).CombinedOutput(); err != nil || !strings.Contains(string(st), "unlocked") {
			t.Fatalf("status through the printed control socket: %v\n%s", err, st)
		}
		c.Process.Signal(syscall.SIGINT)
		if err := c.Wait(); err != nil {
			t.Fatalf("demo after SIGINT: %v", err)
		}
	}
}

// TestServePlain serves an unencrypted sparse file (--plain): data goes
// straight through and holes show in block status.
func TestServePlain(t *testing.T) {
	require(t, nbdinfoTool, nbdcopyTool)
	e := newEnv(t)
	plain := e.path("plain.img")
	tool(t, "truncate", "-s", "8M", plain)
	s := e.serve("nbd.sock", "--plain", plain)
	tool(t, "sh", "-c", "head -c 1048576 /dev/urandom > "+e.path("data.bin"))
	tool(t, "nbdcopy", "--flush", e.path("data.bin"), s.uri())
	mp := tool(t, "nbdinfo", "--map", s.uri())
	if !strings.Contains(mp, "data") || !strings.Contains(mp, "hole") {
		t.Fatalf("nbdinfo --map of a sparse plain file:\n%s", mp)
	}
	s.stop()
	tool(t, "cmp", "-n", "1048576", e.path("data.bin"), plain)
}
