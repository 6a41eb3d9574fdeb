package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestServeTCPWithTLS serves over TCP with --tls-require: nbdinfo gets in
// over TLS (nbds://) with the server's certificate as its CA, and is
// refused without TLS.
func TestServeTCPWithTLS(t *testing.T) {
	require(t, nbdinfoTool, [2]string{"openssl", "openssl"})
	e := newEnv(t)
	key := e.keyFile("key")
	disk := e.format("disk.img", 20<<20, key)
	certs := e.path("certs")
	os.MkdirAll(certs, 0o700)
	tool(t, "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", certs+"/key.pem", "-out", certs+"/ca-cert.pem", "-days", "1", "-subj", "/CN=localhost",
		"-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()

	s := &server{e: e, log: &syncBuffer{}, done: make(chan error, 1)}
	s.cmd = e.cmd("serve", "--listen", fmt.Sprintf("tcp:127.0.0.1:%d", port), "--tls-cert", certs+"/ca-cert.pem",
		"--tls-key", certs+"/key.pem", "--tls-require", "--key-file", key, disk)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() { s.cmd.Process.Kill() })
	e.waitUp(s)

	out := tool(t, "nbdinfo", "--size", fmt.Sprintf("nbds://localhost:%d/?tls-certificates=%s", port, certs))
	if strings.TrimSpace(out) != "4194304" {
		t.Fatalf("nbdinfo over TLS: %s", out)
	}
	plain, err := exec.Command("nbdinfo", "--size", fmt.Sprintf("nbd://localhost:%d/", port)).CombinedOutput()
	if err == nil || !strings.Contains(string(plain), "TLS") {
		t.Fatalf("nbdinfo without TLS: %v: %s", err, plain)
	}
	s.stop()
}
