package nbd

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// TLSConfig builds the server side of NBD's STARTTLS: TLS 1.3 only, the
// certificate and key from PEM files, and, when clientCAFile is not empty,
// mutual TLS: a client must present a certificate signed by a CA in that
// PEM file or the handshake fails. NBD has no other authentication, so on
// TCP a client CA is how only clients that belong get in.
func TLSConfig(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("nbd: TLS certificate: %w", err)
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
	}
	if clientCAFile != "" {
		pem, err := os.ReadFile(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("nbd: TLS client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("nbd: TLS client CA %s: %w", clientCAFile, errNoCertificates)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

var errNoCertificates = errors.New("no PEM certificate found")
