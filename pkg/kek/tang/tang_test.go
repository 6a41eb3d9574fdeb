package tang_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/encblk/encblk/internal/testutil"
	"github.com/encblk/encblk/pkg/kek/clevis"
	"github.com/encblk/encblk/pkg/kek/tang"
	"github.com/encblk/encblk/pkg/kek/tang/tangtest"
)

func cfg(url string, extra ...string) json.RawMessage {
	m := map[string]string{"url": url}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i]] = extra[i+1]
	}
	b, _ := json.Marshal(m)
	return b
}

// A JWE made here decrypts here and with clevis; one clevis made decrypts
// here; both through the McCallum-Relyea exchange with a real tangd.
func TestTangInterop(t *testing.T) {
	srv := tangtest.Start(t)
	clevisBin := testutil.RequireTool(t, "clevis", "clevis")
	ctx := context.Background()
	c := &tang.Client{}
	plain := []byte("a keyslot passphrase, 54 characters long in real life")

	jwe, err := c.Encrypt(ctx, cfg(srv.URL), plain)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Decrypt(ctx, jwe)
	if err != nil || !bytes.Equal(got.Bytes(), plain) {
		t.Fatalf("Decrypt = %q, %v", got.Bytes(), err)
	}
	got.Destroy()
	if d := c.Describe(jwe); d != "tang "+srv.URL {
		t.Errorf("Describe = %q", d)
	}
	if thp := tang.Thumbprints(jwe); len(thp) != 1 || thp[0] != srv.SigningThumbprint(t) {
		t.Errorf("Thumbprints = %v", thp)
	}

	cmd := exec.Command(clevisBin, "decrypt")
	cmd.Stdin = strings.NewReader(jwe.Compact())
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Equal(out, plain) {
		t.Fatalf("clevis decrypt of our JWE: %v\n%s", err, out)
	}

	cmd = exec.Command(clevisBin, "encrypt", "tang", string(cfg(srv.URL)), "-y")
	cmd.Stdin = bytes.NewReader(plain)
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("clevis encrypt tang: %v", err)
	}
	theirs, err := clevis.ParseCompact(string(out))
	if err != nil {
		t.Fatal(err)
	}
	got, err = c.Decrypt(ctx, theirs)
	if err != nil || !bytes.Equal(got.Bytes(), plain) {
		t.Fatalf("Decrypt of clevis's JWE = %q, %v", got.Bytes(), err)
	}
	got.Destroy()
}

// The advertisement's signature is checked against a pinned thumbprint.
func TestTangPinnedThumbprint(t *testing.T) {
	srv := tangtest.Start(t)
	ctx := context.Background()
	c := &tang.Client{}
	if _, err := c.Encrypt(ctx, cfg(srv.URL, "thp", srv.SigningThumbprint(t)), []byte("x")); err != nil {
		t.Fatalf("right thumbprint: %v", err)
	}
	other := tangtest.Start(t)
	if _, err := c.Encrypt(ctx, cfg(srv.URL, "thp", other.SigningThumbprint(t)), []byte("x")); err == nil {
		t.Fatal("an advertisement not signed by the pinned key was accepted")
	}
}

// A server that is down, answers garbage or too slowly costs a bounded
// time and gives an error naming it.
func TestTangBadServers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := tangtest.Start(t)
	c := &tang.Client{Timeout: 2 * time.Second}
	jwe, err := c.Encrypt(ctx, cfg(srv.URL), []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if _, err := c.Decrypt(ctx, jwe); !errors.Is(err, tang.ErrServer) || !strings.Contains(err.Error(), srv.URL) {
		t.Fatalf("server down: %v", err)
	}

	stop := make(chan struct{}) // ends the slow handler before its server closes
	hostile := map[string]http.HandlerFunc{
		"garbage": func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("{\"kty\":\"EC\",\"crv\":\"P-521\",\"x\":\"AA\",\"y\":\"AA\"}"))
		},
		"status": func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusForbidden) },
		"huge":   func(w http.ResponseWriter, r *http.Request) { w.Write(bytes.Repeat([]byte("{"), 1<<20)) },
		"slow":   func(w http.ResponseWriter, r *http.Request) { <-stop },
	}
	for name, h := range hostile {
		hs := httptest.NewServer(h)
		// The JWE names the hostile server; the advertisement in it is
		// the real one, so only the server's answers are bad.
		bad := retarget(t, jwe, hs.URL)
		if _, err := c.Decrypt(ctx, bad); !errors.Is(err, tang.ErrServer) || !strings.Contains(err.Error(), hs.URL) {
			t.Errorf("%s: %v", name, err)
		}
		if _, err := c.Encrypt(ctx, cfg(hs.URL), []byte("x")); err == nil {
			t.Errorf("%s: Encrypt succeeded", name)
		}
		if name == "slow" {
			close(stop)
		}
		hs.Close()
	}
}

// retarget re-encodes jwe with another server URL in its header (the
// ciphertext no longer authenticates; only the exchange is exercised).
func retarget(t *testing.T, jwe *clevis.JWE, url string) *clevis.JWE {
	t.Helper()
	var pin map[string]json.RawMessage
	json.Unmarshal(jwe.Header.Clevis, &pin)
	var th map[string]json.RawMessage
	json.Unmarshal(pin["tang"], &th)
	th["url"], _ = json.Marshal(url)
	pin["tang"], _ = json.Marshal(th)
	h := jwe.Header
	h.Clevis, _ = json.Marshal(pin)
	out := *jwe
	out.Header = h
	return &out
}

// FuzzDecrypt: a hostile JWE header never panics or reaches the network
// in unexpected ways (the transport refuses every request).
func FuzzDecrypt(f *testing.F) {
	f.Add([]byte(`{"alg":"ECDH-ES","enc":"A256GCM","kid":"k","epk":{"kty":"EC","crv":"P-521","x":"AA","y":"AA"},"clevis":{"pin":"tang","tang":{"url":"http://127.0.0.1:1","adv":{"keys":[]}}}}`))
	f.Add([]byte(`{"alg":"ECDH-ES","enc":"A256GCM","clevis":{"pin":"tang","tang":{}}}`))
	c := &tang.Client{HTTP: &http.Client{Transport: refuse{}}, Timeout: time.Second}
	f.Fuzz(func(t *testing.T, hdr []byte) {
		jwe := clevis.B64(hdr) + ".." + clevis.B64(make([]byte, 12)) + "." + clevis.B64([]byte("ct")) + "." + clevis.B64(make([]byte, 16))
		j, err := clevis.ParseCompact(jwe)
		if err != nil {
			return
		}
		if s, err := c.Decrypt(context.Background(), j); err == nil {
			s.Destroy()
			t.Fatal("decrypted without a server")
		}
		c.Describe(j)
		tang.Thumbprints(j)
	})
}

type refuse struct{}

func (refuse) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("no network in fuzzing")
}
