package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/encblk/encblk/pkg/keyring"
)

func TestEncodeKeyRequest(t *testing.T) {
	t.Parallel()
	slot := 3
	for _, tc := range []struct {
		name string
		req  KeyRequest
	}{
		{"no secret", KeyRequest{Volume: "v"}},
		{"empty volume", KeyRequest{Secret: []byte("k")}},
		{"secret", KeyRequest{Volume: `a"b\`, Secret: []byte("secret\n\x00\xff")}},
		{"both", KeyRequest{Volume: "v", Secret: bytes.Repeat([]byte{7}, 1000), NewSecret: []byte("new")}},
		{"new only", KeyRequest{Volume: "v", NewSecret: []byte("n")}},
		{"everything", KeyRequest{
			Volume: "v", Secret: []byte("old"), NewSecret: []byte("new"),
			NewTokens: []json.RawMessage{json.RawMessage(`{"type":"t","keyslots":[]}`)},
			KDF:       &keyring.KDFParams{Type: "pbkdf2", Hash: "sha256", Iterations: 1000}, Slot: &slot,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			buf, err := encodeKeyRequest(&tc.req)
			if err != nil {
				t.Fatal(err)
			}
			defer buf.Destroy()
			want, err := json.Marshal(&tc.req)
			if err != nil {
				t.Fatal(err)
			}
			var got, exp map[string]any
			if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
				t.Fatalf("%q: %v", buf.Bytes(), err)
			}
			json.Unmarshal(want, &exp)
			if !reflect.DeepEqual(got, exp) {
				t.Fatalf("encoded %s, json.Marshal gives %s", buf.Bytes(), want)
			}
			back, err := decodeKeyRequest(buf.Bytes())
			if err != nil || !reflect.DeepEqual(*back, tc.req) {
				t.Fatalf("decoded back to %+v, %v", back, err)
			}
		})
	}
}

func TestSecretBodyClose(t *testing.T) {
	t.Parallel()
	buf, err := encodeKeyRequest(&KeyRequest{Volume: "v", Secret: []byte("secret")})
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(buf.Bytes())
	b := &secretBody{buf: buf}
	got, err := io.ReadAll(b)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %q, %v; want %q", got, err, want)
	}
	b.Close()
	if buf.Len() != 0 {
		t.Fatal("Close left the buffer alive")
	}
	if _, err := b.Read(make([]byte, 8)); !errors.Is(err, errBodyClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	b.Close() // a second Close (the transport's, then do's) is harmless
}

func TestDecodeKeyRequest(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		body string
		ok   bool
	}{
		{`{"volume":"a","secret":"c2VjcmV0"}`, true},
		{`{"Volume":"a","SECRET":"c2VjcmV0"}`, true}, // as encoding/json matches names
		{`{"volume":"a","slot":2,"kdf":{"Type":"pbkdf2"},"new_tokens":[{}]}`, true},
		{`null`, true},
		{`{"volume":"a","unknown":1}`, false},
		{`{"volume":"a","secret":"c2VjcmV0","x":{"secret":"c2VjcmV0"}}`, false},
		{`{"volume":"a"} {}`, false},
		{`{"secret":12}`, false},
		{`[]`, false},
		{``, false},
	} {
		req, err := decodeKeyRequest([]byte(tc.body))
		if req == nil || (err == nil) != tc.ok {
			t.Errorf("%s: %+v, %v; want ok=%v", tc.body, req, err, tc.ok)
		}
	}
}

// recordingBody serves a request body and keeps every buffer it was
// asked to fill: the handler's copies of the body, which it must wipe.
type recordingBody struct {
	r    io.Reader
	bufs [][]byte
}

func (b *recordingBody) Read(p []byte) (int, error) {
	b.bufs = append(b.bufs, p)
	return b.r.Read(p)
}

func (b *recordingBody) Close() error { return nil }

// TestKeyRequestWipesBody: whatever the handler read the request (and
// its secret) into is zero once it has answered, buffers it outgrew
// while reading included.
func TestKeyRequestWipesBody(t *testing.T) {
	t.Parallel()
	secret := bytes.Repeat([]byte("S"), 4000)
	body, err := json.Marshal(&KeyRequest{Volume: "no-such-volume", Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{log: slog.New(slog.DiscardHandler)}
	for _, length := range []int64{-1, int64(len(body))} { // unknown (chunked), given
		rb := &recordingBody{r: bytes.NewReader(body)}
		req := httptest.NewRequest(http.MethodPost, "/v1/unlock", nil)
		req.Body, req.ContentLength = rb, length
		rec := httptest.NewRecorder()
		d.handler().ServeHTTP(rec, req)
		if !strings.Contains(rec.Body.String(), "no-such-volume") {
			t.Fatalf("answer: %s", rec.Body.String())
		}
		for _, p := range rb.bufs {
			if i := bytes.IndexFunc(p[:cap(p)], func(r rune) bool { return r != 0 }); i >= 0 {
				t.Fatalf("Content-Length %d: a %d-byte buffer the body was read into still holds %q...", length, cap(p), p[i:min(i+16, cap(p))])
			}
		}
	}
}
