package daemon

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/encblk/encblk/pkg/keyring"
)

// wrapped is a keyring.Recipient whose secret a client already made and
// whose tokens it already wrote, e.g. a KMIP KEK (the key server
// encrypted the secret; the encblk-kmip token holds the ciphertext). The
// keyring commits the keyslot and its bound tokens together.
type wrapped struct {
	secret []byte
	tokens []json.RawMessage
}

var _ keyring.Recipient = (*wrapped)(nil)

// Wrap implements keyring.Recipient: it returns a copy of the secret (the
// caller destroys it) and the tokens as given.
func (w *wrapped) Wrap(context.Context) (*keyring.Secret, []json.RawMessage, error) {
	if len(w.secret) == 0 {
		return nil, nil, errors.New("the new KEK's secret is empty")
	}
	buf, err := keyring.NewSecret(len(w.secret))
	if err != nil {
		return nil, nil, err
	}
	copy(buf.Bytes(), w.secret)
	return buf, w.tokens, nil
}
