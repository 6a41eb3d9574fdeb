package keyring

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
)

// SetUnboundToken makes token (a JSON object whose "type" is tokenType,
// bound to no keyslot) the volume's only unbound token of that type: in
// one metadata commit the others of the type are removed and it is added
// at the lowest free id (nil token: they are only removed). It is for
// tokens that hold per-volume settings (encblk's rotation policy), which
// cryptsetup keeps as they are because they name no keyslot.
func (k *Keyring) SetUnboundToken(tokenType string, token json.RawMessage) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginAdditiveUpdate(); err != nil {
		return err
	}
	e := k.meta.clone()
	for _, id := range slices.Sorted(maps.Keys(k.meta.Tokens)) {
		if t := k.meta.Tokens[id]; t.Type == tokenType && len(t.Keyslots) == 0 {
			delete(e.tokens, strconv.Itoa(id))
		}
	}
	if token != nil {
		var head struct {
			Type     string   `json:"type"`
			Keyslots []string `json:"keyslots"`
		}
		if err := json.Unmarshal(token, &head); err != nil || head.Type != tokenType || len(head.Keyslots) != 0 {
			return fmt.Errorf("invalid token: want an unbound %q token", tokenType)
		}
		if _, err := e.addToken(token, nil); err != nil {
			return err
		}
	}
	n, err := parseMetadataEdit(e, k.bin.HdrSize)
	if err != nil {
		return err
	}
	return k.commit(n)
}
