package tpm2

import (
	"bytes"
	"encoding/base64"
	"errors"
	"testing"

	"github.com/encblk/encblk/pkg/kek/clevis"
)

// The sealed JWK's key comes out as bytes, padded or not; anything else
// is refused as malformed.
func TestJWKKey(t *testing.T) {
	key := bytes.Repeat([]byte{0xa5}, 32)
	k := base64.RawURLEncoding.EncodeToString(key)
	for _, jwk := range []string{
		`{"alg":"A256GCM","k":"` + k + `","key_ops":["encrypt","decrypt"],"kty":"oct"}`, // as clevis writes it
		`{"kty":"oct","k":"` + k + `="}`,
	} {
		got, err := jwkKey([]byte(jwk))
		if err != nil || !bytes.Equal(got, key) {
			t.Errorf("jwkKey(%s) = %x, %v; want %x", jwk, got, err, key)
		}
	}
	for _, jwk := range []string{
		`{"kty":"EC","k":"` + k + `"}`,
		`{"kty":"oct"}`,
		`{"kty":"oct","k":42}`,
		`{"kty":"oct","k":"` + k[:40] + `"}`,
		`{"kty":"oct","k":"` + k + k + `"}`,
		`{"kty":"oct","k":"\u0041` + k[1:] + `"}`,
		`{"kty":"oct","k":"` + k[:42] + `+/"}`,
		`not json`,
	} {
		if got, err := jwkKey([]byte(jwk)); !errors.Is(err, clevis.ErrMalformed) {
			t.Errorf("jwkKey(%s) = %x, %v; want ErrMalformed", jwk, got, err)
		}
	}
}

func FuzzJWKKey(f *testing.F) {
	f.Add([]byte(`{"alg":"A256GCM","k":"paWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaU","key_ops":["encrypt","decrypt"],"kty":"oct"}`))
	f.Add([]byte(`{"kty":"oct","k":"=="}`))
	f.Fuzz(func(t *testing.T, jwk []byte) {
		key, err := jwkKey(jwk)
		if err == nil && len(key) != 32 {
			t.Fatalf("a key of %d bytes", len(key))
		}
		if err != nil && !errors.Is(err, clevis.ErrMalformed) {
			t.Fatalf("error %v does not wrap ErrMalformed", err)
		}
	})
}
