package keyring

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
)

// Tokens lists the tokens in id order (copies).
func (k *Keyring) Tokens() []Token {
	k.mu.Lock()
	m := k.meta
	k.mu.Unlock()
	out := make([]Token, 0, len(m.Tokens))
	for _, id := range slices.Sorted(maps.Keys(m.Tokens)) {
		out = append(out, m.Tokens[id].clone())
	}
	return out
}

// AddToken stores a token (a JSON object with a "type" string; a
// "keyslots" array of id strings binds it, else it starts unbound) at the
// lowest free id and commits. Fields encblk does not know are kept.
func (k *Keyring) AddToken(token json.RawMessage) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginAdditiveUpdate(); err != nil {
		return -1, err
	}
	e := k.meta.clone()
	id, err := e.addToken(token, nil)
	if err != nil {
		return -1, err
	}
	n, err := parseMetadataEdit(e, k.bin.HdrSize)
	if err != nil {
		return -1, err
	}
	return id, k.commit(n)
}

// RemoveToken deletes token id and commits.
func (k *Keyring) RemoveToken(id int) error {
	return k.editToken(id, func(e *metadata, key string) error {
		delete(e.tokens, key)
		return nil
	})
}

// AssignToken binds token id to keyslot slot and commits.
func (k *Keyring) AssignToken(id, slot int) error {
	return k.editToken(id, func(e *metadata, key string) error {
		t := k.meta.Tokens[id]
		if slices.Contains(t.Keyslots, slot) {
			return nil
		}
		var err error
		e.tokens[key], err = setField(e.tokens[key], "keyslots", idStrings(append(slices.Clone(t.Keyslots), slot)))
		return err
	})
}

func (k *Keyring) editToken(id int, edit func(*metadata, string) error) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginUpdate(); err != nil {
		return err
	}
	if k.meta.Tokens[id] == nil {
		return fmt.Errorf("token %d does not exist", id)
	}
	e := k.meta.clone()
	if err := edit(e, strconv.Itoa(id)); err != nil {
		return err
	}
	n, err := parseMetadataEdit(e, k.bin.HdrSize)
	if err != nil {
		return err
	}
	return k.commit(n)
}

// parseMetadataEdit validates an edit made from caller-supplied data: a
// failure is the caller's (a bad token), not an internal error.
func parseMetadataEdit(e *metadata, hdrSize uint64) (*metadata, error) {
	text, err := e.marshal()
	if err != nil {
		return nil, err
	}
	n, err := decodeMetadata(text, hdrSize)
	if err != nil {
		return nil, fmt.Errorf("invalid token: %w", err)
	}
	if uint64(len(text)) >= hdrSize-binHeaderSize {
		return nil, fmt.Errorf("%w: metadata would be %d bytes, the JSON area holds %d", ErrNoSpace, len(text), hdrSize-binHeaderSize-1)
	}
	return n, nil
}
