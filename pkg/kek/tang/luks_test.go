package tang_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/encblk/encblk/internal/kektest"
	"github.com/encblk/encblk/pkg/kek/clevis"
	"github.com/encblk/encblk/pkg/kek/tang"
	"github.com/encblk/encblk/pkg/kek/tang/tangtest"
	"github.com/encblk/encblk/pkg/keyring"
)

func pins() clevis.Pins { return clevis.Pins{tang.Name: &tang.Client{}} }

// Both directions of the clevis LUKS2 token with a real tangd: clevis luks
// bind, encblk unlocks; encblk binds, clevis luks pass recovers the
// passphrase that cryptsetup accepts.
func TestClevisLUKSTang(t *testing.T) {
	srv := tangtest.Start(t)
	ctx := context.Background()

	t.Run("ClevisBindsEncblkUnlocks", func(t *testing.T) {
		v := kektest.NewLUKSImage(t)
		slot := v.ClevisBind(t, "tang", string(cfg(srv.URL)))
		got, dek, err := kektest.OpenKeyring(t, v.Path).Match(ctx, clevis.NewIdentity(pins()))
		if err != nil {
			t.Fatal(err)
		}
		defer dek.Destroy()
		if got != slot || !bytes.Equal(dek.Bytes(), v.DEK) {
			t.Fatalf("opened keyslot %d (clevis bound %d); DEK match %v", got, slot, bytes.Equal(dek.Bytes(), v.DEK))
		}
	})

	t.Run("EncblkBindsClevisOpens", func(t *testing.T) {
		v := kektest.NewLUKSImage(t)
		kr, dek := v.Unlocked(t)
		r := clevis.NewRecipient(pins(), tang.Name, cfg(srv.URL, "thp", srv.SigningThumbprint(t)))
		slot, err := kr.AddKeyslot(ctx, dek, r, clevis.KeyslotOptions())
		if err != nil {
			t.Fatal(err)
		}
		pass, err := v.ClevisPass(t, slot)
		if err != nil {
			t.Fatalf("clevis luks pass: %v", err)
		}
		if len(pass) != 54 {
			t.Errorf("passphrase of %d bytes, clevis makes 54", len(pass))
		}
		if err := v.CryptsetupAccepts(t, slot, pass); err != nil {
			t.Fatal(err)
		}
		// And encblk opens it through the token.
		got, dek2, err := kektest.OpenKeyring(t, v.Path).Match(ctx, clevis.NewIdentity(pins()))
		if err != nil || got != slot {
			t.Fatalf("Match = %d, %v", got, err)
		}
		dek2.Destroy()
	})

	t.Run("ServerDown", func(t *testing.T) {
		v := kektest.NewLUKSImage(t)
		down := tangtest.Start(t)
		v.ClevisBind(t, "tang", string(cfg(down.URL)))
		down.Stop()
		_, _, err := kektest.OpenKeyring(t, v.Path).Match(ctx, clevis.NewIdentity(pins()))
		var le *keyring.LockedError
		if !errors.As(err, &le) || !errors.Is(err, tang.ErrServer) || !strings.Contains(err.Error(), down.URL) ||
			!strings.HasPrefix(err.Error(), "clevis: volume stays locked: keyslot 1 (token 0): tang server "+down.URL) {
			t.Fatalf("server down: %v", err)
		}
		// Other keyslots still open.
		kf, _ := keyring.SecretFromBytes([]byte("the first key file\n"))
		defer kf.Destroy()
		if slot, dek, err := kektest.OpenKeyring(t, v.Path).Match(ctx, clevis.NewIdentity(pins()), kf); err != nil || slot != 0 {
			t.Fatalf("key file after the tang keyslot failed: %d, %v", slot, err)
		} else {
			dek.Destroy()
		}
	})
}
