package kmipkek

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func goodToken() Token {
	return Token{
		Type: TokenType, Keyslots: []string{"1"}, Version: 1, Servers: []string{"kms1:5696", "[::1]:5696"},
		KeyUID: "42", Cipher: CipherAES256GCM, Nonce: make([]byte, 12), Tag: make([]byte, 16),
		Ciphertext: make([]byte, 32), Config: "/etc/encblk/kmip.json",
	}
}

func TestParseToken(t *testing.T) {
	t.Parallel()
	raw, _ := json.Marshal(goodToken())
	tok, err := ParseToken(raw)
	if err != nil {
		t.Fatal(err)
	}
	if tok.KeyUID != "42" || len(tok.Servers) != 2 {
		t.Fatalf("ParseToken = %+v", tok)
	}
	bad := map[string]func(*Token){
		"type":             func(t *Token) { t.Type = "luks2-keyring" },
		"version":          func(t *Token) { t.Version = 2 },
		"cipher":           func(t *Token) { t.Cipher = "aes-128-cbc" },
		"no servers":       func(t *Token) { t.Servers = nil },
		"server sans port": func(t *Token) { t.Servers = []string{"kms1"} },
		"many servers":     func(t *Token) { t.Servers = make([]string, 17) },
		"no key":           func(t *Token) { t.KeyUID = "" },
		"long key":         func(t *Token) { t.KeyUID = strings.Repeat("x", 300) },
		"short nonce":      func(t *Token) { t.Nonce = make([]byte, 8) },
		"tag":              func(t *Token) { t.Tag = make([]byte, 12) },
		"ciphertext":       func(t *Token) { t.Ciphertext = make([]byte, 64) },
	}
	for name, mutate := range bad {
		tok := goodToken()
		mutate(&tok)
		raw, _ := json.Marshal(tok)
		if _, err := ParseToken(raw); !errors.Is(err, ErrBadToken) {
			t.Errorf("%s: err = %v, want ErrBadToken", name, err)
		}
	}
	for _, raw := range []string{"", "null", "[]", `{"type":"encblk-kmip","nonce":"!!"}`, strings.Repeat(" ", 20000)} {
		if _, err := ParseToken([]byte(raw)); !errors.Is(err, ErrBadToken) {
			t.Errorf("%q: err = %v, want ErrBadToken", raw, err)
		}
	}
}

// FuzzParseToken checks that token parsing never panics and that what it
// accepts survives a round trip.
func FuzzParseToken(f *testing.F) {
	raw, _ := json.Marshal(goodToken())
	f.Add(raw)
	f.Add([]byte(`{"type":"encblk-kmip"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := ParseToken(b)
		if err != nil {
			return
		}
		again, err := json.Marshal(tok)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseToken(again); err != nil {
			t.Fatalf("re-marshalled token does not parse: %v", err)
		}
	})
}
