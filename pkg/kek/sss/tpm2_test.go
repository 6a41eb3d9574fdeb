package sss_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/encblk/encblk/internal/kektest"
	"github.com/encblk/encblk/pkg/kek/clevis"
	"github.com/encblk/encblk/pkg/kek/sss"
	"github.com/encblk/encblk/pkg/kek/tang"
	"github.com/encblk/encblk/pkg/kek/tang/tangtest"
	"github.com/encblk/encblk/pkg/kek/tpm2"
	"github.com/encblk/encblk/pkg/kek/tpm2/tpm2test"
	"github.com/encblk/encblk/pkg/keyring"
)

// 2 of {tang, tpm2}, both directions with clevis luks: clevis luks bind sss
// → encblk opens it; encblk binds → clevis luks pass recovers the
// passphrase and cryptsetup accepts it. With the Tang server down, the TPM
// alone is too few shares for either.
func TestSSSTangAndTPM2(t *testing.T) {
	ctx := context.Background()
	srv := tangtest.Start(t)
	dev := tpm2test.Start(t)
	t.Setenv("TPM2TOOLS_TCTI", dev) // clevis's tpm2 pin (tpm2-tools)
	ps := clevis.Pins{tang.Name: &tang.Client{}, tpm2.ClevisPinName: tpm2.NewClevisPin(dev)}
	ps[sss.Name] = sss.New(ps)
	cfg := fmt.Sprintf(`{"t":2,"pins":{"tang":[{"url":%q}],"tpm2":{}}}`, srv.URL)

	enc := kektest.NewLUKSImage(t)
	kr, dek := enc.Unlocked(t)
	encSlot, err := kr.AddKeyslot(ctx, dek, clevis.NewRecipient(ps, sss.Name, json.RawMessage(cfg)), clevis.KeyslotOptions())
	if err != nil {
		t.Fatal(err)
	}
	pass, err := enc.ClevisPass(t, encSlot)
	if err != nil {
		t.Fatalf("clevis luks pass on encblk's keyslot: %v", err)
	}
	if err := enc.CryptsetupAccepts(t, encSlot, pass); err != nil {
		t.Fatal(err)
	}
	cl := kektest.NewLUKSImage(t)
	clSlot := cl.ClevisBind(t, "sss", cfg)
	for _, v := range []struct {
		img  *kektest.LUKSImage
		slot int
	}{{enc, encSlot}, {cl, clSlot}} {
		kr := kektest.OpenKeyring(t, v.img.Path)
		for _, tok := range kr.Tokens() {
			if d, _ := ps.DescribeToken(tok.Raw); tok.Type == clevis.TokenType && d != "sss 2 of 2: tang "+srv.URL+", tpm2 (no PCR)" {
				t.Errorf("Describe = %q", d)
			}
		}
		slot, d, err := kr.Match(ctx, clevis.NewIdentity(ps))
		if err != nil || slot != v.slot {
			t.Fatalf("%s: Match = %d, %v", v.img.Path, slot, err)
		}
		d.Destroy()
	}
	srv.Stop()
	for _, img := range []*kektest.LUKSImage{enc, cl} {
		if _, _, err := kektest.OpenKeyring(t, img.Path).Match(ctx, clevis.NewIdentity(ps)); !errors.Is(err, keyring.ErrUnavailable) || !errors.Is(err, sss.ErrTooFewShares) {
			t.Fatalf("Tang down: %v", err)
		}
	}
	if _, err := enc.ClevisPass(t, encSlot); err == nil {
		t.Fatal("clevis luks pass opened it with Tang down")
	}
}
