package daemon

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

func TestDecodeKeyRequest(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		body string
		ok   bool
	}{
		{`{"volume":"a"}`, true},
		{`{"Volume":"a"}`, true}, // as encoding/json matches names
		{`{"volume":"a","slot":2,"kdf":{"Type":"pbkdf2"},"new_tokens":[{}]}`, true},
		{`null`, true},
		{`{"volume":"a","secret":"c2VjcmV0"}`, false}, // secrets never come in the body
		{`{"volume":"a","new_secret":"c2VjcmV0"}`, false},
		{`{"volume":"a","unknown":1}`, false},
		{`{"volume":"a"} {}`, false},
		{`[]`, false},
		{``, false},
	} {
		req, err := decodeKeyRequest([]byte(tc.body))
		if req == nil || (err == nil) != tc.ok {
			t.Errorf("%s: %+v, %v; want ok=%v", tc.body, req, err, tc.ok)
		}
	}
}

// readThrough sends raw over a pipe into a secretConn and returns the
// connection and what an HTTP reader then reads of it.
func readThrough(t *testing.T, raw []byte) (*secretConn, []byte, error) {
	t.Helper()
	a, b := net.Pipe()
	go func() { a.Write(raw); a.Close() }()
	c := &secretConn{Conn: b}
	rest, err := io.ReadAll(c)
	return c, rest, err
}

// TestPreamble: secrets sent in the preamble arrive in the connection's
// protected buffer, the HTTP request after it arrives intact, and a
// connection without a preamble is plain HTTP.
func TestPreamble(t *testing.T) {
	t.Parallel()
	const httpReq = "POST /v1/unlock HTTP/1.1\r\nHost: encblk\r\nContent-Length: 2\r\n\r\n{}"
	for _, secrets := range [][][]byte{
		{[]byte("old secret\n"), []byte("new")},
		{[]byte("only one")},
		{bytes.Repeat([]byte{0, 0xff}, 4096), nil},
		{},
	} {
		pre, err := encodePreamble(secrets...)
		if err != nil {
			t.Fatal(err)
		}
		c, rest, err := readThrough(t, append(bytes.Clone(pre.Bytes()), httpReq...))
		pre.Destroy()
		if err != nil || string(rest) != httpReq {
			t.Fatalf("HTTP after the preamble: %q, %v", rest, err)
		}
		for i, s := range secrets {
			if got := c.secret(i); !bytes.Equal(got, s) {
				t.Fatalf("secret %d: %q, want %q", i, got, s)
			}
		}
		if c.secret(len(secrets)) != nil {
			t.Fatal("a secret that was not sent")
		}
		c.Close()
		if c.secret(0) != nil {
			t.Fatal("secrets outlive Close")
		}
	}
	c, rest, err := readThrough(t, []byte(httpReq))
	if err != nil || string(rest) != httpReq || c.secret(0) != nil {
		t.Fatalf("plain HTTP: %q, %v", rest, err)
	}
	if _, err := http.ReadRequest(bufio.NewReader(strings.NewReader(string(rest)))); err != nil {
		t.Fatal(err)
	}
}

func TestPreambleMalformed(t *testing.T) {
	t.Parallel()
	be := func(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
	for name, raw := range map[string][]byte{
		"truncated length": []byte(preambleMagic + "\x00\x00"),
		"too large":        append([]byte(preambleMagic), be(maxPreamble+1)...),
		"short payload":    append(append([]byte(preambleMagic), be(10)...), "abc"...),
		"bad inner length": append(append(append([]byte(preambleMagic), be(6)...), be(3)...), "ab"...),
		"inner overflow":   append(append(append([]byte(preambleMagic), be(8)...), be(0xffffffff)...), "abcd"...),
	} {
		if c, _, err := readThrough(t, raw); err == nil || c.secret(0) != nil {
			t.Errorf("%s: read without error (%v)", name, err)
		}
	}
}

func FuzzPreamble(f *testing.F) {
	pre, _ := encodePreamble([]byte("a"), []byte("bc"))
	f.Add(bytes.Clone(pre.Bytes()))
	pre.Destroy()
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte(preambleMagic + "\x00\x00\x00\x04\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, _, _ := readThrough(t, raw)
		for i := range 3 {
			if s := c.secret(i); s != nil && len(s) > len(raw) {
				t.Fatalf("secret %d longer than the input", i)
			}
		}
		c.Close()
	})
}
