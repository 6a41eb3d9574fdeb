package kmiptest

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/encblk/encblk/internal/testutil"
)

// Server is a running pykmip-server.
type Server struct {
	Addr   string // 127.0.0.1:port
	Dir    string // configuration, database, certificates and log
	CA     *CA    // issued the server's certificate; the server trusts only it
	Client *Leaf  // a client certificate the server accepts

	tb       testing.TB
	conf     string
	cmd      *exec.Cmd
	done     chan struct{}
	output   bytes.Buffer
	stopOnce sync.Once
}

// startTimeout bounds how long PyKMIP may take to listen (it imports
// SQLAlchemy and starts a multiprocessing manager first).
const startTimeout = 30 * time.Second

// stopGrace is how long a SIGTERM'd server may take before SIGKILL; PyKMIP
// does not always exit on SIGTERM.
const stopGrace = time.Second

// Start runs pykmip-server with Debian's /usr/bin/python3 on a free port of
// 127.0.0.1, with a fresh CA, server certificate, SQLite database and
// policy directory under a temporary directory, requiring TLS 1.2 client
// certificates. Its certificates are ECDSA P-256. The server is stopped
// when the test ends. The test is skipped (or fails under
// ENCBLK_REQUIRE_TOOLS=1) if python3-pykmip is not installed.
func Start(tb testing.TB) *Server {
	tb.Helper()
	return start(tb, NewCA)
}

// StartRSA is Start with RSA certificates: the server then offers only the
// KMIP TLS 1.2 profile's suites that take an RSA key, all CBC ones.
func StartRSA(tb testing.TB) *Server {
	tb.Helper()
	return start(tb, NewRSACA)
}

func start(tb testing.TB, newCA func(testing.TB, string) *CA) *Server {
	tb.Helper()
	python := testutil.RequireFile(tb, testutil.Python, "python3")
	script := testutil.RequireTool(tb, "pykmip-server", "python3-pykmip")
	s := &Server{tb: tb, Dir: tb.TempDir(), CA: newCA(tb, "encblk test KMIP CA")}
	s.Client = s.CA.Issue(tb, "encblk-test-client", false)
	srvCert, srvKey := s.CA.Issue(tb, "127.0.0.1", true).WriteFiles(tb, s.Dir, "server")
	caPath := filepath.Join(s.Dir, "ca.crt")
	if err := os.WriteFile(caPath, s.CA.PEM, 0o644); err != nil {
		tb.Fatal(err)
	}
	policies := filepath.Join(s.Dir, "policies")
	if err := os.Mkdir(policies, 0o755); err != nil {
		tb.Fatal(err)
	}
	port := freePort(tb)
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.conf = filepath.Join(s.Dir, "server.conf")
	conf := fmt.Sprintf(`[server]
hostname=127.0.0.1
port=%d
certificate_path=%s
key_path=%s
ca_path=%s
auth_suite=TLS1.2
policy_path=%s
enable_tls_client_auth=True
logging_level=DEBUG
database_path=%s
`, port, srvCert, srvKey, caPath, policies, filepath.Join(s.Dir, "pykmip.db"))
	if err := os.WriteFile(s.conf, []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	s.start(python, script)
	tb.Cleanup(func() {
		s.Stop()
		if tb.Failed() {
			tb.Logf("pykmip-server output:\n%s\nserver.log (tail):\n%s", s.output.String(), s.LogTail(4000))
		}
	})
	return s
}

func (s *Server) start(python, script string) {
	s.tb.Helper()
	s.cmd = exec.Command(python, script, "-f", s.conf, "-l", filepath.Join(s.Dir, "server.log"))
	s.cmd.Dir = s.Dir
	s.cmd.Stdout, s.cmd.Stderr = &s.output, &s.output
	// Its own process group: PyKMIP forks a multiprocessing manager that
	// must die with it.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		s.tb.Fatalf("starting pykmip-server: %v", err)
	}
	s.done = make(chan struct{})
	go func() { s.cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(startTimeout)
	for {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-s.done:
			s.tb.Fatalf("pykmip-server exited before listening: %s\n%s", s.output.String(), s.LogTail(4000))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			s.tb.Fatalf("pykmip-server did not listen on %s within %v: %s", s.Addr, startTimeout, s.LogTail(4000))
		}
	}
}

// Stop stops the server: SIGTERM to its process group, then SIGKILL after
// a short grace period. It is safe to call more than once.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		pgid := s.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(stopGrace):
		}
		// Whatever is left of the group (the manager process, or the
		// server itself if it ignored SIGTERM).
		if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			s.tb.Logf("killing pykmip-server's process group: %v", err)
		}
		<-s.done
	})
}

// ClientTLS is a TLS configuration with the accepted client certificate.
func (s *Server) ClientTLS() *tls.Config { return ClientTLS(s.CA, s.Client) }

// LogTail returns the last n bytes of the server's log file.
func (s *Server) LogTail(n int) string {
	b, err := os.ReadFile(filepath.Join(s.Dir, "server.log"))
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
