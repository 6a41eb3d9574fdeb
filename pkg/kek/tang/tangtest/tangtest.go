// Package tangtest runs a real Tang server (Debian's tang: tangd with keys
// from tangd-keygen) on 127.0.0.1 for tests. tangd answers one HTTP
// connection on its stdin and stdout (as under socat or systemd socket
// activation); the test's listener starts one tangd per connection.
package tangtest

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/encblk/encblk/internal/testutil"
)

// Server is a Tang server on a loopback port.
type Server struct {
	URL string
	DB  string // the key directory

	tangd string
	l     net.Listener
	wg    sync.WaitGroup
	once  sync.Once
	mu    sync.Mutex
	procs map[*exec.Cmd]bool // tangd processes answering a connection
}

// Start generates a key directory and serves it until the test ends (or
// Stop).
func Start(t testing.TB) *Server {
	t.Helper()
	keygen := testutil.RequireFile(t, "/usr/libexec/tangd-keygen", "tang")
	tangd := testutil.RequireFile(t, "/usr/libexec/tangd", "tang")
	db := t.TempDir()
	if out, err := exec.Command(keygen, db).CombinedOutput(); err != nil {
		t.Fatalf("tangd-keygen: %v\n%s", err, out)
	}
	s := &Server{DB: db, tangd: tangd}
	s.listen(t, "127.0.0.1:0")
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) listen(t testing.TB, addr string) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s.l = l
	s.URL = "http://" + l.Addr().String()
	s.once = sync.Once{}
	s.wg.Add(1)
	go s.serve(l)
}

func (s *Server) serve(l net.Listener) {
	defer s.wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		f, err := c.(*net.TCPConn).File()
		c.Close()
		if err != nil {
			continue
		}
		cmd := exec.Command(s.tangd, s.DB)
		cmd.Stdin, cmd.Stdout = f, f
		if err := cmd.Start(); err != nil {
			f.Close()
			continue
		}
		s.mu.Lock()
		if s.procs == nil {
			s.procs = map[*exec.Cmd]bool{}
		}
		s.procs[cmd] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			cmd.Wait()
			f.Close()
			s.mu.Lock()
			delete(s.procs, cmd)
			s.mu.Unlock()
		}()
	}
}

// Stop closes the port (connections are then refused) and ends the tangd
// processes still holding a connection (a client may keep one open).
func (s *Server) Stop() {
	s.once.Do(func() {
		s.l.Close()
		s.mu.Lock()
		for cmd := range s.procs {
			cmd.Process.Kill()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
}

// Restart serves again on the same port after Stop.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.listen(t, strings.TrimPrefix(s.URL, "http://"))
}

// SigningThumbprint is the S256 thumbprint of the server's signing key
// (tangd-keygen names key files by it), for pinning.
func (s *Server) SigningThumbprint(t testing.TB) string {
	t.Helper()
	jose := testutil.RequireTool(t, "jose", "jose")
	files, _ := filepath.Glob(filepath.Join(s.DB, "*.jwk"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), `"ES512"`) {
			cmd := exec.Command(jose, "jwk", "thp", "-i", f, "-a", "S256")
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("jose jwk thp: %v", err)
			}
			return strings.TrimSpace(string(out))
		}
	}
	t.Fatal(errors.New("no signing key in the tang database"))
	return ""
}
