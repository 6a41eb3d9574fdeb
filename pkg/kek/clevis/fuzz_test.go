package clevis

import (
	"encoding/json"
	"errors"
	"testing"
)

// A clevis token as clevis luks bind writes it (tang pin; the advertisement
// shortened), to seed the fuzzers.
const sampleToken = `{"type":"clevis","keyslots":["1"],"jwe":{"ciphertext":"aGVsbG8","encrypted_key":"","iv":"AAAAAAAAAAAAAAAA","protected":"eyJhbGciOiJFQ0RILUVTIiwiY2xldmlzIjp7InBpbiI6InRhbmciLCJ0YW5nIjp7ImFkdiI6eyJrZXlzIjpbXX0sInVybCI6Imh0dHA6Ly8xMjcuMC4wLjE6MSJ9fSwiZW5jIjoiQTI1NkdDTSIsImtpZCI6ImsifQ","tag":"AAAAAAAAAAAAAAAAAAAAAA"}}`

// FuzzParseToken: a token from a header anyone can write parses or fails
// with ErrMalformed, never panics; what parses survives a round trip.
func FuzzParseToken(f *testing.F) {
	f.Add([]byte(sampleToken))
	f.Add([]byte(`{"type":"clevis","jwe":{}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := ParseToken(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		raw, err := tok.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseToken(raw)
		if err != nil || again.JWE.Compact() != tok.JWE.Compact() {
			t.Fatalf("round trip: %v", err)
		}
		tok.JWE.Header.Pin()
		var v map[string]any
		tok.JWE.Header.PinData("tang", &v)
		Pins{}.Describe(tok.JWE)
	})
}

// FuzzVerifyJWS: a hostile advertisement never panics and is never
// accepted without a valid signature by each of its verify keys.
func FuzzVerifyJWS(f *testing.F) {
	f.Add([]byte(`{"payload":"eyJrZXlzIjpbXX0","signatures":[{"protected":"eyJhbGciOiJFUzUxMiJ9","signature":"AA"}]}`))
	f.Add([]byte(`{"payload":"","protected":"","signature":""}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, set, err := VerifyJWS(b)
		if err != nil {
			return
		}
		// Only a real ES512 signature gets here: a fuzzer cannot forge one.
		if len(keys) == 0 || !json.Valid(set) {
			t.Fatalf("accepted %d keys", len(keys))
		}
	})
}
