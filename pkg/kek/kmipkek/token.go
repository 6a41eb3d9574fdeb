package kmipkek

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
)

// TokenType is the LUKS2 token type that holds a KMIP-wrapped keyslot
// secret. cryptsetup keeps tokens of types it does not know.
const TokenType = "encblk-kmip"

// tokenVersion is the version of the token's layout.
const tokenVersion = 1

// CipherAES256GCM names the only wrapping encblk uses: the key server's
// AES-256 key in GCM mode, 16-byte tag, additional data binding the
// ciphertext to the volume and the key (see tokenAAD).
const CipherAES256GCM = "aes-256-gcm"

// Limits on token fields: a token comes from a header anyone who can
// write the disk can edit.
const (
	maxTokenServers = 16
	maxTokenString  = 256
	secretLen       = 32 // bytes of the keyslot secret
)

// Token is the JSON object stored in an encblk-kmip LUKS2 token, bound to
// the keyslot whose secret it wraps:
//
//	{
//	  "type": "encblk-kmip",
//	  "keyslots": ["1"],
//	  "encblk_kmip_version": 1,
//	  "servers": ["kms1.example.com:5696", "kms2.example.com:5696"],
//	  "key_uid": "3f6c…",
//	  "cipher": "aes-256-gcm",
//	  "nonce": "<base64, 12 bytes>",
//	  "tag": "<base64, 16 bytes>",
//	  "ciphertext": "<base64, 32 bytes>",
//	  "config": "/etc/encblk/kmip.json"
//	}
//
// Nothing in it is secret: the ciphertext opens only with the server's
// cooperation. config is where the client configuration (certificate,
// key, CA) was when the slot was made; unlocking uses it unless told
// otherwise.
type Token struct {
	Type       string   `json:"type"`
	Keyslots   []string `json:"keyslots"`
	Version    int      `json:"encblk_kmip_version"`
	Servers    []string `json:"servers"`
	KeyUID     string   `json:"key_uid"`
	Cipher     string   `json:"cipher"`
	Nonce      []byte   `json:"nonce"`
	Tag        []byte   `json:"tag"`
	Ciphertext []byte   `json:"ciphertext"`
	Config     string   `json:"config,omitempty"`
}

// ErrBadToken is wrapped when an encblk-kmip token cannot be used.
var ErrBadToken = errors.New("kmip: invalid encblk-kmip token")

// ParseToken parses and checks an encblk-kmip token.
func ParseToken(raw []byte) (*Token, error) {
	if len(raw) > 16<<10 {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadToken, len(raw))
	}
	var t Token
	if err := json.Unmarshal(raw, &t); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	if err := t.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	return &t, nil
}

func (t *Token) check() error {
	switch {
	case t.Type != TokenType:
		return fmt.Errorf("type %q, want %q", t.Type, TokenType)
	case t.Version != tokenVersion:
		return fmt.Errorf("version %d, want %d", t.Version, tokenVersion)
	case t.Cipher != CipherAES256GCM:
		return fmt.Errorf("cipher %q, want %q", t.Cipher, CipherAES256GCM)
	case len(t.Servers) == 0 || len(t.Servers) > maxTokenServers:
		return fmt.Errorf("%d servers, want 1 to %d", len(t.Servers), maxTokenServers)
	case t.KeyUID == "" || len(t.KeyUID) > maxTokenString:
		return errors.New("key_uid is empty or too long")
	case len(t.Nonce) < 12 || len(t.Nonce) > 16:
		return fmt.Errorf("%d-byte nonce, want 12 to 16", len(t.Nonce))
	case len(t.Tag) != 16:
		return fmt.Errorf("%d-byte tag, want 16", len(t.Tag))
	case len(t.Ciphertext) != secretLen:
		return fmt.Errorf("%d-byte ciphertext, want %d", len(t.Ciphertext), secretLen)
	case len(t.Config) > 4096:
		return errors.New("config path too long")
	}
	for _, s := range t.Servers {
		if len(s) > maxTokenString {
			return errors.New("server address too long")
		}
		if _, _, err := net.SplitHostPort(s); err != nil {
			return fmt.Errorf("server %q: %v", s, err)
		}
	}
	return nil
}

// tokenAAD is the additional data the key server authenticates with the
// secret: the format version and the key, so a ciphertext cannot be
// presented as another format's or another key's. (It is not bound to the
// volume: the secret opens only the keyslot it was made for, so a token
// moved to another header opens nothing there.)
func tokenAAD(keyUID string) []byte {
	return []byte("encblk-kmip/v1\x00" + keyUID)
}
