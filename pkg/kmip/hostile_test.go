package kmip_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/encblk/encblk/pkg/kmip"
	"github.com/encblk/encblk/pkg/kmip/kmiptest"
)

// hostileServer is a TLS server that reads one KMIP request per connection
// and answers with whatever respond returns; then, if hang is set, it keeps
// the connection open without a word until the test ends.
type hostileServer struct {
	addr string
	ln   net.Listener
	wg   sync.WaitGroup
	stop chan struct{}
}

func startHostile(t *testing.T, ca *kmiptest.CA, plain, hang bool, respond func(req []byte) []byte) *hostileServer {
	t.Helper()
	var ln net.Listener
	var err error
	if plain {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	} else {
		leaf := ca.Issue(t, "127.0.0.1", true)
		ln, err = tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
			Certificates: []tls.Certificate{leaf.TLS}, ClientCAs: ca.Pool(),
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	h := &hostileServer{addr: ln.Addr().String(), ln: ln, stop: make(chan struct{})}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				defer c.Close()
				var req []byte
				if !plain {
					if req, err = kmip.ReadMessage(c, kmip.DefaultMaxMessageSize); err != nil {
						return
					}
				}
				c.Write(respond(req))
				if hang {
					<-h.stop
				}
			}()
		}
	}()
	t.Cleanup(func() { close(h.stop); ln.Close(); h.wg.Wait() })
	return h
}

func enc(t *testing.T, it kmip.Item) []byte {
	t.Helper()
	b, err := kmip.Encode(it)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// response builds a Response Message with the given batch items.
func response(t *testing.T, count int32, items ...kmip.Item) []byte {
	t.Helper()
	hdr := kmip.Struct(kmip.TagResponseHeader,
		kmip.Struct(kmip.TagProtocolVersion, kmip.Int(kmip.TagProtocolVersionMajor, 1), kmip.Int(kmip.TagProtocolVersionMinor, 4)),
		kmip.Int(kmip.TagBatchCount, count))
	return enc(t, kmip.Struct(kmip.TagResponseMessage, append([]kmip.Item{hdr}, items...)...))
}

func successItem(op kmip.Operation, payload ...kmip.Item) kmip.Item {
	return kmip.Struct(kmip.TagBatchItem, kmip.Enum(kmip.TagOperation, uint32(op)),
		kmip.Enum(kmip.TagResultStatus, uint32(kmip.StatusSuccess)), kmip.Struct(kmip.TagResponsePayload, payload...))
}

// nested returns n Response Message structures nested in one another
// around an Integer, built by hand since Encode refuses such depth.
func nested(n int) []byte {
	b := []byte{0x42, 0x00, 0x0D, 0x02, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0}
	for i := 0; i < n; i++ {
		l := len(b)
		b = append([]byte{0x42, 0x00, 0x7B, 0x01, byte(l >> 24), byte(l >> 16), byte(l >> 8), byte(l)}, b...)
	}
	return b
}

func TestHostileServer(t *testing.T) {
	t.Parallel()
	ca := kmiptest.NewCA(t, "hostile CA")
	cfg := kmiptest.ClientTLS(ca, ca.Issue(t, "client", false))
	cases := []struct {
		name  string
		plain bool   // no TLS at all
		echo  bool   // answer with the request itself
		hang  bool   // after the reply, keep the connection open and silent
		reply []byte // sent after reading the request
		want  error  // wrapped besides ErrUnavailable, if not nil
	}{
		{name: "garbage", reply: []byte("HTTP/1.1 400 Bad Request\r\n\r\n"), want: kmip.ErrMalformed},
		{name: "truncated body", reply: response(t, 1, successItem(kmip.OpDiscoverVersions))[:40]},
		{name: "oversized announcement", reply: []byte{0x42, 0x00, 0x7B, 0x01, 0x7F, 0xFF, 0xFF, 0xF8}, want: kmip.ErrTooLarge},
		{name: "never answers", hang: true, want: context.DeadlineExceeded},
		{name: "header then silence", hang: true, reply: []byte{0x42, 0x00, 0x7B, 0x01, 0x00, 0x00, 0x01, 0x00}, want: context.DeadlineExceeded},
		{name: "too deep", reply: nested(kmip.MaxDepth + 1), want: kmip.ErrMalformed},
		{name: "echoes the request", echo: true, want: kmip.ErrUnexpectedResponse},
		{name: "wrong operation", reply: response(t, 1, successItem(kmip.OpDestroy)), want: kmip.ErrUnexpectedResponse},
		{name: "wrong value type", reply: response(t, 1, successItem(kmip.OpDiscoverVersions,
			kmip.Struct(kmip.TagProtocolVersion, kmip.Text(kmip.TagProtocolVersionMajor, "one")))), want: kmip.ErrUnexpectedResponse},
		{name: "batch count lies", reply: response(t, 7, successItem(kmip.OpDiscoverVersions)), want: kmip.ErrUnexpectedResponse},
		{name: "no batch items", reply: response(t, 0), want: kmip.ErrUnexpectedResponse},
		{name: "closes at once", reply: []byte{}},
		{name: "not TLS", plain: true, reply: []byte("SSH-2.0-OpenSSH_9.2\r\n")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := startHostile(t, ca, tc.plain, tc.hang, func(req []byte) []byte {
				if tc.echo {
					return req
				}
				return tc.reply
			})
			// The attempt's timeout ends the silent servers' cases; for
			// the others it is only a hang detector (500 ms was exceeded
			// by TLS handshakes on a loaded machine).
			timeout := time.Minute
			if tc.hang {
				timeout = 500 * time.Millisecond
			}
			c, err := kmip.New(kmip.Config{Servers: []string{h.addr}, TLS: cfg, Timeout: timeout})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.DiscoverVersions(context.Background())
			if !errors.Is(err, kmip.ErrUnavailable) || !strings.Contains(err.Error(), h.addr) {
				t.Fatalf("err = %v, want ErrUnavailable naming %s", err, h.addr)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestHostileThenGood checks that a malformed answer makes the client move
// on to the next server, and that a well-formed refusal does not.
func TestHostileThenGood(t *testing.T) {
	t.Parallel()
	ca := kmiptest.NewCA(t, "CA")
	cfg := kmiptest.ClientTLS(ca, ca.Issue(t, "client", false))
	bad := startHostile(t, ca, false, false, func([]byte) []byte { return []byte("\x42\x00\x7b\x01\x00\x00\x00\x08garbage!") })
	good := startHostile(t, ca, false, false, func([]byte) []byte {
		return response(t, 1, successItem(kmip.OpDiscoverVersions,
			kmip.Struct(kmip.TagProtocolVersion, kmip.Int(kmip.TagProtocolVersionMajor, 1), kmip.Int(kmip.TagProtocolVersionMinor, 4))))
	})
	refusing := startHostile(t, ca, false, false, func([]byte) []byte {
		return response(t, 1, kmip.Struct(kmip.TagBatchItem, kmip.Enum(kmip.TagOperation, uint32(kmip.OpDiscoverVersions)),
			kmip.Enum(kmip.TagResultStatus, uint32(kmip.StatusOperationFailed)),
			kmip.Enum(kmip.TagResultReason, uint32(kmip.ReasonPermissionDenied))))
	})
	c, err := kmip.New(kmip.Config{Servers: []string{bad.addr, good.addr}, TLS: cfg, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	vs, err := c.DiscoverVersions(context.Background())
	if err != nil || len(vs) != 1 || vs[0] != kmip.Version1_4 {
		t.Fatalf("DiscoverVersions = %v, %v", vs, err)
	}
	c, err = kmip.New(kmip.Config{Servers: []string{refusing.addr, good.addr}, TLS: cfg, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.DiscoverVersions(context.Background())
	var re *kmip.ResultError
	if !errors.As(err, &re) || re.Server != refusing.addr || re.Reason != kmip.ReasonPermissionDenied {
		t.Fatalf("refusal: err = %v, want the first server's Permission Denied", err)
	}
}
