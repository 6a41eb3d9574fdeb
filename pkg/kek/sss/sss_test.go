package sss_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/encblk/encblk/internal/kektest"
	"github.com/encblk/encblk/pkg/kek/clevis"
	"github.com/encblk/encblk/pkg/kek/sss"
	"github.com/encblk/encblk/pkg/kek/tang"
	"github.com/encblk/encblk/pkg/kek/tang/tangtest"
	"github.com/encblk/encblk/pkg/keyring"
)

func pins() clevis.Pins {
	ps := clevis.Pins{tang.Name: &tang.Client{}}
	ps[sss.Name] = sss.New(ps)
	return ps
}

func config(t int, servers ...*tangtest.Server) string {
	var urls []string
	for _, s := range servers {
		urls = append(urls, fmt.Sprintf(`{"url":%q}`, s.URL))
	}
	return fmt.Sprintf(`{"t":%d,"pins":{"tang":[%s]}}`, t, strings.Join(urls, ","))
}

// 2 of 3 Tang servers, both directions with clevis: any two open, one
// does not.
func TestSSS2of3(t *testing.T) {
	ctx := context.Background()
	a, b, c := tangtest.Start(t), tangtest.Start(t), tangtest.Start(t)
	enc := kektest.NewLUKSImage(t) // bound by encblk
	cl := kektest.NewLUKSImage(t)  // bound by clevis

	kr := kektest.OpenKeyring(t, enc.Path)
	kf, _ := keyring.SecretFromBytes([]byte("the first key file\n"))
	defer kf.Destroy()
	dek, err := kr.Unlock(ctx, kf)
	if err != nil {
		t.Fatal(err)
	}
	encSlot, err := kr.AddKeyslot(ctx, dek, clevis.NewRecipient(pins(), sss.Name, json.RawMessage(config(2, a, b, c))), clevis.KeyslotOptions())
	dek.Destroy()
	if err != nil {
		t.Fatal(err)
	}
	clSlot := cl.ClevisBind(t, "sss", config(2, a, b, c))
	for _, tok := range kektest.OpenKeyring(t, enc.Path).Tokens() {
		if d, _ := pins().DescribeToken(tok.Raw); tok.Type == clevis.TokenType && !strings.HasPrefix(d, "sss 2 of 3: tang "+a.URL) {
			t.Errorf("Describe = %q", d)
		}
	}

	check := func(name string, want bool) {
		t.Helper()
		for _, v := range []struct {
			vol  *kektest.LUKSImage
			slot int
		}{{enc, encSlot}, {cl, clSlot}} {
			slot, dek, err := kektest.OpenKeyring(t, v.vol.Path).Match(ctx, clevis.NewIdentity(pins()))
			if want {
				if err != nil || slot != v.slot {
					t.Fatalf("%s: Match = %d, %v", name, slot, err)
				}
				dek.Destroy()
			} else if !errors.Is(err, keyring.ErrUnavailable) || !errors.Is(err, sss.ErrTooFewShares) {
				t.Fatalf("%s: Match = %v, want too few shares", name, err)
			}
		}
		// clevis itself agrees about the encblk-made keyslot.
		pass, err := enc.ClevisPass(t, encSlot)
		if want {
			if err != nil {
				t.Fatalf("%s: clevis luks pass: %v", name, err)
			}
			if err := enc.CryptsetupAccepts(t, encSlot, pass); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		} else if err == nil {
			t.Fatalf("%s: clevis luks pass recovered the passphrase", name)
		}
	}
	check("all three up", true)
	a.Stop()
	check("b and c up", true)
	a.Restart(t)
	b.Stop()
	check("a and c up", true)
	c.Stop()
	check("only a up", false)
}

// FuzzDecrypt: a hostile sss header never panics (the children are tang
// pins with no network).
func FuzzDecrypt(f *testing.F) {
	f.Add([]byte(`{"alg":"dir","enc":"A256GCM","clevis":{"pin":"sss","sss":{"t":1,"p":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","jwe":["a.b.c.d.e"]}}}`))
	f.Add([]byte(`{"alg":"dir","enc":"A256GCM","clevis":{"pin":"sss","sss":{"t":0,"p":"","jwe":[]}}}`))
	ps := clevis.Pins{}
	ps[sss.Name] = sss.New(ps)
	f.Fuzz(func(t *testing.T, hdr []byte) {
		s := clevis.B64(hdr) + ".." + clevis.B64(make([]byte, 12)) + "." + clevis.B64([]byte("ct")) + "." + clevis.B64(make([]byte, 16))
		j, err := clevis.ParseCompact(s)
		if err != nil {
			return
		}
		if pt, err := ps.Decrypt(context.Background(), j); err == nil {
			pt.Destroy()
		}
		ps.Describe(j)
		sss.Threshold(j)
	})
}
