// Package kmiptest runs a real KMIP server (PyKMIP, from Debian's
// python3-pykmip) for tests, with a throwaway certificate authority and
// server and client certificates generated with crypto/x509.
package kmiptest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a throwaway certificate authority. Its keys, and those of the
// certificates it issues, are ECDSA P-256 (NewCA: PyKMIP's TLS 1.2 suite
// and Go's default cipher suites meet in ECDHE-ECDSA-AES-GCM) or RSA 2048
// (NewRSACA: what most enterprise PKIs issue; with PyKMIP they meet only
// in the KMIP profile's CBC suites).
type CA struct {
	Cert *x509.Certificate
	key  crypto.Signer
	PEM  []byte
}

// NewCA makes a self-signed ECDSA CA called name, valid for a day.
func NewCA(tb testing.TB, name string) *CA {
	tb.Helper()
	return newCA(tb, name, newECDSAKey(tb))
}

// NewRSACA makes a self-signed RSA CA called name, valid for a day; it
// issues RSA certificates.
func NewRSACA(tb testing.TB, name string) *CA {
	tb.Helper()
	return newCA(tb, name, newRSAKey(tb))
}

func newECDSAKey(tb testing.TB) crypto.Signer {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return key
}

func newRSAKey(tb testing.TB) crypto.Signer {
	tb.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	return key
}

// newKey makes a key of the CA's kind.
func (ca *CA) newKey(tb testing.TB) crypto.Signer {
	tb.Helper()
	if _, ok := ca.key.(*rsa.PrivateKey); ok {
		return newRSAKey(tb)
	}
	return newECDSAKey(tb)
}

func newCA(tb testing.TB, name string, key crypto.Signer) *CA {
	tb.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(tb),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"encblk test"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return &CA{Cert: cert, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// Pool returns a pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Leaf is an issued certificate with its key, as PEM and as a
// tls.Certificate.
type Leaf struct {
	CertPEM, KeyPEM []byte
	TLS             tls.Certificate
}

// Issue signs a certificate for cn. A server certificate is valid for
// 127.0.0.1 and localhost; a client certificate carries the clientAuth
// extended key usage PyKMIP insists on.
func (ca *CA) Issue(tb testing.TB, cn string, server bool) *Leaf {
	tb.Helper()
	key := ca.newKey(tb)
	tmpl := &x509.Certificate{
		SerialNumber: serial(tb),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if _, ok := key.(*rsa.PrivateKey); ok {
		// RSA key exchange (TLS_RSA_*) encrypts to the key.
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.key)
	if err != nil {
		tb.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	l := &Leaf{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
	}
	if l.TLS, err = tls.X509KeyPair(l.CertPEM, l.KeyPEM); err != nil {
		tb.Fatal(err)
	}
	return l
}

// WriteFiles writes the leaf's certificate and key as dir/name.crt and
// dir/name.key (mode 0600) and returns their paths.
func (l *Leaf) WriteFiles(tb testing.TB, dir, name string) (certPath, keyPath string) {
	tb.Helper()
	certPath, keyPath = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certPath, l.CertPEM, 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(keyPath, l.KeyPEM, 0o600); err != nil {
		tb.Fatal(err)
	}
	return certPath, keyPath
}

// ClientTLS returns a TLS configuration that trusts only ca and presents
// leaf.
func ClientTLS(ca *CA, leaf *Leaf) *tls.Config {
	return &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{leaf.TLS}, MinVersion: tls.VersionTLS12}
}

func serial(tb testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		tb.Fatal(err)
	}
	return n
}
