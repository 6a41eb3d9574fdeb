package nbd_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/encblk/encblk/internal/testutil"
	"github.com/encblk/encblk/pkg/nbd"
)

// testPKI is a CA with a server and a client certificate, written as PEM
// files in the layout libnbd's tls-certificates directory expects.
type testPKI struct {
	dir                   string // ca-cert.pem, client-cert.pem, client-key.pem
	caOnlyDir             string // ca-cert.pem only: a client without a certificate
	serverCert, serverKey string
	caFile                string
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	root := t.TempDir()
	p := &testPKI{dir: filepath.Join(root, "client"), caOnlyDir: filepath.Join(root, "anon")}
	for _, d := range []string{p.dir, p.caOnlyDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	serial := int64(1)
	issue := func(tmpl *x509.Certificate, parent *x509.Certificate, pub, signer any) *x509.Certificate {
		serial++
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore = time.Now().Add(-time.Hour)
		tmpl.NotAfter = time.Now().Add(24 * time.Hour)
		if parent == nil {
			parent = tmpl
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	write := func(path, typ string, der []byte) {
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeKey := func(path string, k *ecdsa.PrivateKey) {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		write(path, "PRIVATE KEY", der)
	}

	caKey := newKey()
	ca := issue(&x509.Certificate{
		Subject: pkix.Name{CommonName: "encblk test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, &caKey.PublicKey, caKey)
	srvKey := newKey()
	srv := issue(&x509.Certificate{
		Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, &srvKey.PublicKey, caKey)
	cliKey := newKey()
	cli := issue(&x509.Certificate{
		Subject:  pkix.Name{CommonName: "encblk test client"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca, &cliKey.PublicKey, caKey)

	p.caFile = filepath.Join(root, "ca.pem")
	write(p.caFile, "CERTIFICATE", ca.Raw)
	write(filepath.Join(p.dir, "ca-cert.pem"), "CERTIFICATE", ca.Raw)
	write(filepath.Join(p.caOnlyDir, "ca-cert.pem"), "CERTIFICATE", ca.Raw)
	write(filepath.Join(p.dir, "client-cert.pem"), "CERTIFICATE", cli.Raw)
	writeKey(filepath.Join(p.dir, "client-key.pem"), cliKey)
	p.serverCert, p.serverKey = filepath.Join(root, "server.pem"), filepath.Join(root, "server-key.pem")
	write(p.serverCert, "CERTIFICATE", srv.Raw)
	writeKey(p.serverKey, srvKey)
	return p
}

func TestTLSNbdinfo(t *testing.T) {
	t.Parallel()
	bin := testutil.RequireTool(t, "nbdinfo", "libnbd-bin")
	pki := newTestPKI(t)
	b, _ := newFileExport(t, 1<<20, allCaps())

	for _, tc := range []struct {
		name     string
		clientCA bool // server requires a client certificate
		require  bool // FORCEDTLS
		uriTLS   bool // client uses nbds:// (TLS required by the client)
		certs    string
		wantOK   bool
	}{
		{"mutual TLS", true, true, true, pki.dir, true},
		{"no client cert refused", true, true, true, pki.caOnlyDir, false},
		{"plaintext refused when TLS required", true, true, false, "", false},
		{"server-only TLS", false, true, true, pki.caOnlyDir, true},
		{"TLS optional, plaintext client", false, false, false, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := nbd.TLSConfig(pki.serverCert, pki.serverKey, map[bool]string{true: pki.caFile}[tc.clientCA])
			if err != nil {
				t.Fatal(err)
			}
			s := startServer(t, nbd.StaticExports{"": fullExport(b)}, func(srv *nbd.Server) {
				srv.TLS = cfg
				srv.RequireTLS = tc.require
			})
			uri := "nbd+unix:///?socket=" + s.sock
			if tc.uriTLS {
				uri = "nbds+unix:///?socket=" + s.sock + "&tls-certificates=" + tc.certs + "&tls-hostname=localhost"
			}
			out, err := exec.Command(bin, "--json", uri).CombinedOutput()
			if tc.wantOK != (err == nil) {
				t.Fatalf("nbdinfo %s: err=%v, want ok=%v\n%s", uri, err, tc.wantOK, out)
			}
			if tc.wantOK && tc.uriTLS {
				v := nbdinfo(t, uri)
				if !v.TLS {
					t.Errorf("nbdinfo reports no TLS")
				}
			}
		})
	}
}
