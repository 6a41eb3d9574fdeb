package kmip_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/encblk/encblk/pkg/kmip"
	"github.com/encblk/encblk/pkg/kmip/kmiptest"
)

func newClient(t *testing.T, cfg *tls.Config, servers ...string) *kmip.Client {
	t.Helper()
	c, err := kmip.New(kmip.Config{Servers: servers, TLS: cfg, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// deadAddr returns an address of 127.0.0.1 that refuses connections.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestPyKMIP runs every operation against a real PyKMIP server. The
// subtests share one server (starting PyKMIP takes seconds) and run in
// order.
func TestPyKMIP(t *testing.T) {
	srv := kmiptest.Start(t)
	c := newClient(t, srv.ClientTLS(), srv.Addr)
	ctx := context.Background()

	t.Run("DiscoverVersions", func(t *testing.T) {
		vs, err := c.DiscoverVersions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(vs, kmip.Version1_4) || !slices.Contains(vs, kmip.Version1_2) {
			t.Fatalf("versions = %v, want 1.4 and 1.2 among them", vs)
		}
		vs, err = c.DiscoverVersions(ctx, kmip.ProtocolVersion{Major: 9, Minor: 9}, kmip.Version1_3)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(vs, []kmip.ProtocolVersion{kmip.Version1_3}) {
			t.Fatalf("filtered versions = %v, want [1.3]", vs)
		}
	})

	t.Run("Query", func(t *testing.T) {
		info, err := c.Query(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, op := range []kmip.Operation{kmip.OpCreate, kmip.OpEncrypt, kmip.OpDecrypt, kmip.OpRevoke, kmip.OpLocate} {
			if !info.Supports(op) {
				t.Errorf("server does not list %v: %v", op, info.Operations)
			}
		}
		if !strings.Contains(info.Vendor, "PyKMIP") {
			t.Errorf("vendor = %q", info.Vendor)
		}
	})

	var uid string
	t.Run("CreateActivateGetAttributes", func(t *testing.T) {
		var err error
		uid, err = c.Create(ctx, append(kmip.AES256EncryptDecrypt(), kmip.Name("encblk-test-kek"))...)
		if err != nil {
			t.Fatal(err)
		}
		if s, err := c.KeyState(ctx, uid); err != nil || s != kmip.StatePreActive {
			t.Fatalf("state after Create = %v, %v; want Pre-Active", s, err)
		}
		if err := c.Activate(ctx, uid); err != nil {
			t.Fatal(err)
		}
		as, err := c.GetAttributes(ctx, uid)
		if err != nil {
			t.Fatal(err)
		}
		if s, ok := as.State(); !ok || s != kmip.StateActive {
			t.Fatalf("state after Activate = %v (%v)", s, ok)
		}
		l, ok := as.Get(kmip.AttrCryptographicLength)
		if !ok || l.Value.Value != int32(256) {
			t.Fatalf("Cryptographic Length = %+v", l)
		}
	})

	t.Run("Locate", func(t *testing.T) {
		uids, err := c.Locate(ctx, 0, kmip.ObjectTypeAttr(kmip.ObjectSymmetricKey), kmip.Name("encblk-test-kek"))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(uids, []string{uid}) {
			t.Fatalf("Locate = %v, want [%s]", uids, uid)
		}
		none, err := c.Locate(ctx, 0, kmip.Name("no such key"))
		if err != nil || len(none) != 0 {
			t.Fatalf("Locate(no such key) = %v, %v", none, err)
		}
	})

	t.Run("EncryptDecryptGCM", func(t *testing.T) {
		secret := make([]byte, 32)
		rand.Read(secret)
		aad := []byte("encblk-kmip v1 volume-uuid")
		for _, nonce := range [][]byte{nil, bytes.Repeat([]byte{7}, 12)} {
			ct, err := c.Encrypt(ctx, uid, kmip.AESGCM, secret, nonce, aad)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(ct.Data, secret) || len(ct.Tag) != 16 || (nonce != nil && !bytes.Equal(ct.IV, nonce)) {
				t.Fatalf("ciphertext %+v", ct)
			}
			pt, err := c.Decrypt(ctx, uid, kmip.AESGCM, ct, aad)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(pt, secret) {
				t.Fatal("Decrypt did not return the plaintext")
			}
			// Another volume's additional data does not authenticate.
			if _, err := c.Decrypt(ctx, uid, kmip.AESGCM, ct, []byte("other volume")); !errors.Is(err, kmip.ErrOperationFailed) {
				t.Fatalf("Decrypt with wrong AAD: err = %v, want a server refusal", err)
			}
		}
	})

	t.Run("EncryptDecryptCBC", func(t *testing.T) {
		p := kmip.CryptoParams{Algorithm: kmip.AlgorithmAES, Mode: kmip.ModeCBC, Padding: kmip.PaddingPKCS5}
		ct, err := c.Encrypt(ctx, uid, p, []byte("seventeen bytes!!"), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(ct.IV) != 16 || len(ct.Data) != 32 {
			t.Fatalf("CBC ciphertext: %d-byte IV, %d bytes", len(ct.IV), len(ct.Data))
		}
		pt, err := c.Decrypt(ctx, uid, p, ct, nil)
		if err != nil || string(pt) != "seventeen bytes!!" {
			t.Fatalf("Decrypt = %q, %v", pt, err)
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		// One Client, several goroutines: each request has its own
		// connection, so they do not interfere.
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				msg := []byte{byte(i), 1, 2, 3}
				ct, err := c.Encrypt(ctx, uid, kmip.AESGCM, msg, nil, nil)
				if err == nil {
					var pt []byte
					pt, err = c.Decrypt(ctx, uid, kmip.AESGCM, ct, nil)
					if err == nil && !bytes.Equal(pt, msg) {
						err = errors.New("wrong plaintext")
					}
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("RegisterGet", func(t *testing.T) {
		key := make([]byte, 32)
		rand.Read(key)
		rid, err := c.Register(ctx, kmip.ObjectSymmetricKey, kmip.SymmetricKeyObject(kmip.AlgorithmAES, key),
			kmip.Usage(kmip.UsageEncrypt|kmip.UsageDecrypt))
		if err != nil {
			t.Fatal(err)
		}
		o, err := c.Get(ctx, rid)
		if err != nil {
			t.Fatal(err)
		}
		if o.UID != rid || o.Type != kmip.ObjectSymmetricKey || o.Algorithm != kmip.AlgorithmAES || o.Length != 256 || !bytes.Equal(o.Material, key) {
			t.Fatalf("Get = %+v", o)
		}
		if err := c.Destroy(ctx, rid); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Get(ctx, rid); err == nil {
			t.Fatal("Get of a destroyed key succeeded")
		}
	})

	t.Run("RevokeRefusesDecrypt", func(t *testing.T) {
		ct, err := c.Encrypt(ctx, uid, kmip.AESGCM, []byte("kek-wrapped secret"), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Revoke(ctx, uid, kmip.RevocationCessationOfOperation, "crypto-lock test"); err != nil {
			t.Fatal(err)
		}
		if s, err := c.KeyState(ctx, uid); err != nil || s != kmip.StateDeactivated {
			t.Fatalf("state after Revoke = %v, %v", s, err)
		}
		_, err = c.Decrypt(ctx, uid, kmip.AESGCM, ct, nil)
		var re *kmip.ResultError
		if !errors.As(err, &re) {
			t.Fatalf("Decrypt with a revoked key: err = %v, want *ResultError", err)
		}
		if re.Server != srv.Addr || re.Reason != kmip.ReasonPermissionDenied || !strings.Contains(err.Error(), srv.Addr) {
			t.Fatalf("ResultError = %+v (%v)", re, err)
		}
		if err := c.Destroy(ctx, uid); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("RevokeDestroyBatch", func(t *testing.T) {
		id, err := c.CreateActive(ctx, kmip.AES256EncryptDecrypt()...)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.RevokeDestroy(ctx, id, kmip.RevocationKeyCompromise, ""); err != nil {
			t.Fatal(err)
		}
		// The second Revoke fails (no such object), so the batch stops
		// before Destroy.
		err = c.RevokeDestroy(ctx, id, kmip.RevocationKeyCompromise, "")
		if r, ok := kmip.Reason(err); !ok || r != kmip.ReasonItemNotFound {
			t.Fatalf("RevokeDestroy of a destroyed key: err = %v, want Item Not Found", err)
		}
	})

	t.Run("Failover", func(t *testing.T) {
		dead := deadAddr(t)
		fc := newClient(t, srv.ClientTLS(), dead, srv.Addr)
		if _, err := fc.DiscoverVersions(ctx); err != nil {
			t.Fatalf("with a dead first server: %v", err)
		}
		all := newClient(t, srv.ClientTLS(), dead, deadAddr(t))
		_, err := all.DiscoverVersions(ctx)
		if !errors.Is(err, kmip.ErrUnavailable) || !strings.Contains(err.Error(), dead) {
			t.Fatalf("all servers dead: err = %v", err)
		}
	})

	t.Run("ClientFromOtherCARefused", func(t *testing.T) {
		other := kmiptest.NewCA(t, "another CA")
		cfg := kmiptest.ClientTLS(srv.CA, other.Issue(t, "intruder", false))
		_, err := newClient(t, cfg, srv.Addr).Create(ctx, kmip.AES256EncryptDecrypt()...)
		if !errors.Is(err, kmip.ErrUnavailable) || !strings.Contains(err.Error(), srv.Addr) {
			t.Fatalf("client certificate from another CA: err = %v, want refusal", err)
		}
	})

	t.Run("ServerFromOtherCARefused", func(t *testing.T) {
		other := kmiptest.NewCA(t, "another CA")
		cfg := kmiptest.ClientTLS(other, srv.Client)
		_, err := newClient(t, cfg, srv.Addr).Create(ctx, kmip.AES256EncryptDecrypt()...)
		var uae x509.UnknownAuthorityError
		if !errors.Is(err, kmip.ErrUnavailable) || !errors.As(err, &uae) {
			t.Fatalf("server certificate from another CA: err = %v, want unknown authority", err)
		}
	})

	t.Run("GCMNeedsKMIP14", func(t *testing.T) {
		old, err := kmip.New(kmip.Config{Servers: []string{srv.Addr}, TLS: srv.ClientTLS(), Version: kmip.Version1_2})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := old.Encrypt(ctx, "1", kmip.AESGCM, []byte("x"), nil, nil); err == nil || !strings.Contains(err.Error(), "1.4") {
			t.Fatalf("GCM over KMIP 1.2: err = %v", err)
		}
	})
}

func TestNewRejectsConfig(t *testing.T) {
	t.Parallel()
	ca := kmiptest.NewCA(t, "ca")
	good := kmiptest.ClientTLS(ca, ca.Issue(t, "client", false))
	for name, cfg := range map[string]kmip.Config{
		"no servers":     {TLS: good},
		"bad address":    {Servers: []string{"no-port"}, TLS: good},
		"no TLS":         {Servers: []string{"127.0.0.1:5696"}},
		"no client cert": {Servers: []string{"127.0.0.1:5696"}, TLS: &tls.Config{RootCAs: ca.Pool()}},
	} {
		if _, err := kmip.New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

// BenchmarkPyKMIPDecrypt measures one Decrypt round trip to a local
// pykmip-server, TLS handshake included (the client connects per request):
// the KMIP part of unlocking a volume.
func BenchmarkPyKMIPDecrypt(b *testing.B) {
	srv := kmiptest.Start(b)
	c, err := kmip.New(kmip.Config{Servers: []string{srv.Addr}, TLS: srv.ClientTLS()})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	uid, err := c.CreateActive(ctx, kmip.AES256EncryptDecrypt()...)
	if err != nil {
		b.Fatal(err)
	}
	ct, err := c.Encrypt(ctx, uid, kmip.AESGCM, make([]byte, 32), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := c.Decrypt(ctx, uid, kmip.AESGCM, ct, nil); err != nil {
			b.Fatal(err)
		}
	}
}
