package kmip_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/encblk/encblk/internal/testutil"
	"github.com/encblk/encblk/pkg/kmip"
	"github.com/encblk/encblk/pkg/kmip/kmiptest"
)

// debugLogger logs everything to b.
func debugLogger(b *testutil.SyncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// roundTripKey creates and activates a key and has the server encrypt and
// decrypt with it: a full KMIP exchange over the connection's suite.
func roundTripKey(t *testing.T, c *kmip.Client) {
	t.Helper()
	ctx := context.Background()
	uid, err := c.Create(ctx, kmip.AES256EncryptDecrypt()...)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Activate(ctx, uid); err != nil {
		t.Fatal(err)
	}
	secret := []byte("32 bytes of keyslot secret .....")
	ct, err := c.Encrypt(ctx, uid, kmip.AESGCM, secret, nil, []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	pt, err := c.Decrypt(ctx, uid, kmip.AESGCM, ct, []byte("aad"))
	if err != nil || !bytes.Equal(pt, secret) {
		t.Fatalf("Decrypt = %q, %v", pt, err)
	}
}

// TestPyKMIPRSA: against PyKMIP with RSA certificates (TLS 1.2, the KMIP
// profile's suites only) Go's default suites fail the handshake, with an
// error that names the option; with tls12_profile_suites in the
// configuration file every operation works over a profile suite, and the
// client warns once that it uses one.
func TestPyKMIPRSA(t *testing.T) {
	t.Parallel()
	srv := kmiptest.StartRSA(t)
	ctx := context.Background()

	plain := newClient(t, srv.ClientTLS(), srv.Addr)
	_, err := plain.Query(ctx)
	if !errors.Is(err, kmip.ErrUnavailable) || !strings.Contains(err.Error(), "handshake failure") {
		t.Fatalf("Query with Go's default suites against an RSA server: %v, want a handshake failure", err)
	}
	if !strings.Contains(err.Error(), `"tls12_profile_suites": true`) {
		t.Errorf("the handshake failure does not say which option fixes it: %v", err)
	}

	dir := t.TempDir()
	cert, key := srv.Client.WriteFiles(t, dir, "client")
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), srv.CA.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "kmip.json")
	if err := os.WriteFile(conf, []byte(`{"servers": ["`+srv.Addr+`"], "ca": "ca.pem", "cert": "`+cert+`", "key": "`+key+`",
		"tls12_profile_suites": true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := kmip.LoadConfig(conf)
	if err != nil {
		t.Fatal(err)
	}
	logs := &testutil.SyncBuffer{}
	c, err := cfg.Client(nil, debugLogger(logs))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Query(ctx); err != nil {
		t.Fatalf("Query with the profile suites: %v", err)
	}
	roundTripKey(t, c)
	log := logs.String()
	// PyKMIP picks by its own preference: the mandatory suite, RSA key
	// exchange (the warning says it has no forward secrecy).
	if !strings.Contains(log, "version=\"TLS 1.2\" suite=TLS_RSA_WITH_AES_128_CBC_SHA256") &&
		!strings.Contains(log, "version=\"TLS 1.2\" suite=TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256") {
		t.Errorf("not TLS 1.2 with a profile suite:\n%s", log)
	}
	if n := strings.Count(log, "level=WARN"); n != 1 || !strings.Contains(log, "KMIP profile CBC suite") {
		t.Errorf("%d warnings, want one about the profile suite:\n%s", n, log)
	}
}

// TestPyKMIPECDSAProfileSuitesUnused: with the option on, a server that
// has an AEAD suite for its (ECDSA) certificate still gets that one, and
// no warning is logged.
func TestPyKMIPECDSAProfileSuitesUnused(t *testing.T) {
	t.Parallel()
	srv := kmiptest.Start(t)
	logs := &testutil.SyncBuffer{}
	c, err := kmip.New(kmip.Config{Servers: []string{srv.Addr}, TLS: srv.ClientTLS(), TLS12ProfileSuites: true, Logger: debugLogger(logs)})
	if err != nil {
		t.Fatal(err)
	}
	roundTripKey(t, c)
	log := logs.String()
	if !strings.Contains(log, "suite=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256") || strings.Contains(log, "level=WARN") {
		t.Errorf("want ECDHE-ECDSA-AES128-GCM and no warning:\n%s", log)
	}
}

// TestTLS13WithRSA: a KMIP server with an RSA certificate that offers TLS
// 1.3 (here PyKMIP behind a TLS 1.3 terminator, as in front of many
// appliances) is reached over TLS 1.3 without any option.
func TestTLS13WithRSA(t *testing.T) {
	t.Parallel()
	srv := kmiptest.StartRSA(t)
	front := startTLS13Front(t, srv)
	logs := &testutil.SyncBuffer{}
	c, err := kmip.New(kmip.Config{Servers: []string{front}, TLS: srv.ClientTLS(), Logger: debugLogger(logs)})
	if err != nil {
		t.Fatal(err)
	}
	roundTripKey(t, c)
	if log := logs.String(); !strings.Contains(log, `version="TLS 1.3"`) {
		t.Errorf("not TLS 1.3:\n%s", log)
	}
}

// startTLS13Front listens on 127.0.0.1 with an RSA certificate from srv's
// CA, TLS 1.3 only, requires the client certificates srv trusts, and
// relays each connection to srv over TLS 1.2 (with the profile's suite
// PyKMIP needs) as srv's client. It returns its address.
func startTLS13Front(t *testing.T, srv *kmiptest.Server) string {
	t.Helper()
	leaf := srv.CA.Issue(t, "127.0.0.1", true)
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{leaf.TLS},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    srv.CA.Pool(),
		MinVersion:   tls.VersionTLS13,
	})
	if err != nil {
		t.Fatal(err)
	}
	up := srv.ClientTLS()
	up.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				d := tls.Dialer{NetDialer: &net.Dialer{Timeout: time.Minute}, Config: up}
				u, err := d.Dial("tcp", srv.Addr)
				if err != nil {
					t.Logf("front: dialing PyKMIP: %v", err)
					return
				}
				defer u.Close()
				go func() { _, _ = io.Copy(u, c); u.Close() }()
				_, _ = io.Copy(c, u)
			})
		}
	})
	return l.Addr().String()
}
