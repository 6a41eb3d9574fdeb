package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/encblk/encblk/internal/testutil"
)

// encblkBin is the encblk binary built once for the whole run.
var encblkBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "encblk-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	encblkBin = filepath.Join(dir, "encblk")
	out, err := exec.Command("go", "build", "-o", encblkBin, "github.com/encblk/encblk/cmd/encblk").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building encblk: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is one test's world: a directory and a runtime dir of its own, so
// tests do not see each other's control sockets.
type env struct {
	t   *testing.T
	dir string
	run string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	return &env{t: t, dir: dir, run: filepath.Join(dir, "run")}
}

func (e *env) path(name string) string { return filepath.Join(e.dir, name) }

func (e *env) cmd(args ...string) *exec.Cmd {
	c := exec.Command(encblkBin, args...)
	c.Dir = e.dir
	c.Env = append(os.Environ(), "ENCBLK_RUNTIME_DIR="+e.run)
	return c
}

// encblk runs encblk to completion and returns stdout, stderr and the exit status.
func (e *env) encblk(args ...string) (string, string, int) {
	e.t.Helper()
	c := e.cmd(args...)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return out.String(), errb.String(), ee.ExitCode()
	case err != nil:
		e.t.Fatalf("encblk %v: %v", args, err)
	}
	return out.String(), errb.String(), 0
}

// must runs encblk and fails the test unless it succeeds.
func (e *env) must(args ...string) string {
	e.t.Helper()
	out, errs, code := e.encblk(args...)
	if code != 0 {
		e.t.Fatalf("encblk %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return out
}

// keyFile writes a new random key file.
func (e *env) keyFile(name string) string {
	e.t.Helper()
	e.must("keyfile", "generate", e.path(name))
	return e.path(name)
}

// format creates a sparse backing of size bytes and formats it with a
// fast KDF.
func (e *env) format(name string, size int64, key string, extra ...string) string {
	e.t.Helper()
	p := e.path(name)
	f, err := os.Create(p)
	if err != nil {
		e.t.Fatal(err)
	}
	f.Truncate(size)
	f.Close()
	args := append([]string{"format", "--batch-mode", "--key-file", key, "--pbkdf", "pbkdf2",
		"--pbkdf-force-iterations", "1000"}, extra...)
	e.must(append(args, p)...)
	return p
}

// server is a running `encblk serve`.
type server struct {
	e    *env
	cmd  *exec.Cmd
	sock string
	log  *syncBuffer
	done chan error
}

// syncBuffer is a buffer the server's output goroutine and the test share.
type syncBuffer = testutil.SyncBuffer

// serve starts encblk serve on a unix socket and waits until it answers.
func (e *env) serve(sockName string, args ...string) *server {
	e.t.Helper()
	s := &server{e: e, sock: e.path(sockName), log: &syncBuffer{}, done: make(chan error, 1)}
	s.cmd = e.cmd(append([]string{"serve", "--listen", "unix:" + s.sock}, args...)...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	e.t.Cleanup(func() { s.cmd.Process.Kill(); <-s.done; s.done <- nil })
	e.waitUp(s)
	return s
}

// waitUp waits until the server has logged its control socket.
func (e *env) waitUp(s *server) {
	e.t.Helper()
	for range 400 {
		select {
		case err := <-s.done:
			s.done <- err
			e.t.Fatalf("encblk serve exited: %v\n%s", err, s.log)
		default:
		}
		if l := s.log.String(); strings.Contains(l, "control=") || strings.Contains(l, `"control":`) {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	e.t.Fatalf("encblk serve did not come up:\n%s", s.log)
}

func (s *server) uri() string { return "nbd+unix:///?socket=" + s.sock }

// stop sends SIGTERM and waits for a clean exit.
func (s *server) stop() {
	s.e.t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		s.done <- err
		if err != nil {
			s.e.t.Fatalf("encblk serve: %v\n%s", err, s.log)
		}
	case <-time.After(30 * time.Second):
		s.e.t.Fatalf("encblk serve did not stop on SIGTERM\n%s", s.log)
	}
}

// kill sends SIGKILL and waits.
func (s *server) kill() {
	s.cmd.Process.Kill()
	err := <-s.done
	s.done <- err
}

// tool runs an external program and fails the test unless it succeeds.
func tool(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// pattern is size bytes that never repeat within a 4 KiB window.
func pattern(size int, seed byte) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i*131+i/4093) ^ seed
	}
	return b
}

// require looks up the tools a test uses.
func require(t *testing.T, tools ...[2]string) {
	t.Helper()
	for _, tl := range tools {
		testutil.RequireTool(t, tl[0], tl[1])
	}
}

var (
	nbdcopyTool  = [2]string{"nbdcopy", "libnbd-bin"}
	nbdinfoTool  = [2]string{"nbdinfo", "libnbd-bin"}
	nbdfuseTool  = [2]string{"nbdfuse", "libnbd-bin"}
	qemuIOTool   = [2]string{"qemu-io", "qemu-utils"}
	cryptsetupT  = [2]string{"cryptsetup", "cryptsetup-bin"}
	losetupTool  = [2]string{"losetup", "mount"}
	mkfsTool     = [2]string{"mkfs.ext4", "e2fsprogs"}
	fsckTool     = [2]string{"fsck.ext4", "e2fsprogs"}
	fusermountTl = [2]string{"fusermount3", "fuse3"}
)
