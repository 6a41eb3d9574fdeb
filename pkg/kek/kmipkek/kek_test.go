package kmipkek_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/encblk/encblk/internal/kektest"
	"github.com/encblk/encblk/internal/testutil"
	"github.com/encblk/encblk/pkg/kek/kmipkek"
	"github.com/encblk/encblk/pkg/kek/passphrase"
	"github.com/encblk/encblk/pkg/keyring"
	"github.com/encblk/encblk/pkg/kmip"
	"github.com/encblk/encblk/pkg/kmip/kmiptest"
)

// writeConfig writes a client configuration for srv's CA with the given
// client certificate and returns it loaded.
func writeConfig(t *testing.T, srv *kmiptest.Server, client *kmiptest.Leaf, servers ...string) *kmip.FileConfig {
	t.Helper()
	dir := t.TempDir()
	client.WriteFiles(t, dir, "client")
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), srv.CA.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]any{"servers": servers, "ca": "ca.pem", "cert": "client.crt", "key": "client.key", "timeout": "5s"})
	path := filepath.Join(dir, "kmip.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := kmip.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// unlock opens the volume at path through its KMIP keyslots.
func unlock(t *testing.T, path string, cfg *kmip.FileConfig) (int, []byte, error) {
	t.Helper()
	kr := kektest.OpenKeyring(t, path)
	kek, err := kmipkek.NewKEK(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !kmipkek.HasTokens(kr) {
		t.Fatal("the volume has no KMIP keyslot")
	}
	slot, dek, err := kr.Match(context.Background(), kek)
	if err != nil {
		return slot, nil, err
	}
	defer dek.Destroy()
	return slot, bytes.Clone(dek.Bytes()), nil
}

// TestKEK is the KMIP KEK source end to end against PyKMIP: add a slot,
// unlock through it, rotate, refusals (other CA, revoked key, server down)
// leave the volume locked and the header untouched.
func TestKEK(t *testing.T) {
	srv := kmiptest.Start(t)
	cfg := writeConfig(t, srv, srv.Client, srv.Addr)
	ctx := context.Background()
	path, wantDEK := kektest.Volume(t)

	var slot int
	var keyUID string
	t.Run("AddKeyslot", func(t *testing.T) {
		kr := kektest.OpenKeyring(t, path)
		kek, err := kmipkek.NewKEK(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		pass, _ := passphrase.New([]byte(kektest.Passphrase))
		defer pass.Destroy()
		dek, err := kr.Unlock(ctx, pass)
		if err != nil {
			t.Fatal(err)
		}
		defer dek.Destroy()
		if slot, err = kr.AddKeyslot(ctx, dek, kek, kmipkek.KeyslotOptions()); err != nil {
			t.Fatal(err)
		}
		keyUID = kek.CreatedUID()
		if keyUID == "" {
			t.Fatal("no key was created")
		}
		var found bool
		for _, tok := range kr.Tokens() {
			if tok.Type == kmipkek.TokenType && len(tok.Keyslots) == 1 && tok.Keyslots[0] == slot {
				found = true
				pt, err := kmipkek.ParseToken(tok.Raw)
				if err != nil || pt.KeyUID != keyUID || pt.Servers[0] != srv.Addr || pt.Config != cfg.Path {
					t.Fatalf("token %+v, %v", pt, err)
				}
			}
		}
		if !found {
			t.Fatalf("no %s token bound to keyslot %d: %+v", kmipkek.TokenType, slot, kr.Tokens())
		}
		c, err := cfg.Client(nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		as, err := c.GetAttributes(ctx, keyUID, kmip.AttrSensitive)
		if a, ok := as.Get(kmip.AttrSensitive); err != nil || !ok || a.Value.Value != true {
			t.Fatalf("the key is not marked Sensitive: %+v, %v", as, err)
		}
		st := kek.Status(ctx, kr)
		if len(st) != 1 || st[0].Keyslot != slot || st[0].KeyUID != keyUID || st[0].State != kmip.StateActive || st[0].Err != nil {
			t.Fatalf("Status = %+v", st)
		}
	})

	t.Run("DiscardCreated", func(t *testing.T) {
		kek, _ := kmipkek.NewKEK(cfg, nil)
		secret, _, err := kek.Wrap(ctx)
		if err != nil {
			t.Fatal(err)
		}
		secret.Destroy()
		uid := kek.CreatedUID()
		if err := kek.DiscardCreated(ctx); err != nil {
			t.Fatal(err)
		}
		c, _ := cfg.Client(nil, nil)
		if _, err := c.KeyState(ctx, uid); err == nil {
			t.Fatalf("key %s still exists after DiscardCreated", uid)
		}
		if kek.CreatedUID() != "" || kek.DiscardCreated(ctx) != nil {
			t.Fatal("DiscardCreated is not idempotent")
		}
	})

	t.Run("CryptsetupKeepsToken", func(t *testing.T) {
		cs := testutil.RequireTool(t, "cryptsetup", "cryptsetup-bin")
		out, err := exec.Command(cs, "luksDump", path).CombinedOutput()
		if err != nil || !strings.Contains(string(out), kmipkek.TokenType) {
			t.Fatalf("cryptsetup luksDump: %v\n%s", err, out)
		}
	})

	t.Run("Unlock", func(t *testing.T) {
		got, dek, err := unlock(t, path, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got != slot || !bytes.Equal(dek, wantDEK) {
			t.Fatalf("unlocked keyslot %d (want %d), DEK match %v", got, slot, bytes.Equal(dek, wantDEK))
		}
		// Secret hands out the keyslot's passphrase, which opens it as a
		// plain passphrase would; Unwrap without a keyslot refuses.
		kr := kektest.OpenKeyring(t, path)
		kek, _ := kmipkek.NewKEK(cfg, nil)
		if _, err := kek.Unwrap(ctx, nil); err == nil {
			t.Fatal("Unwrap(nil) succeeded")
		}
		sslot, secret, err := keyring.SecretFor(ctx, kr, kek)
		if err != nil || sslot != slot {
			t.Fatalf("Secret = keyslot %d, %v", sslot, err)
		}
		pass, err := passphrase.New(bytes.Clone(secret.Bytes()))
		secret.Destroy()
		if err != nil {
			t.Fatal(err)
		}
		defer pass.Destroy()
		pdek, err := kr.UnlockKeyslot(ctx, pass, slot)
		if err != nil {
			t.Fatal(err)
		}
		defer pdek.Destroy()
		if !bytes.Equal(pdek.Bytes(), wantDEK) {
			t.Fatal("the released secret opens the keyslot to a different DEK")
		}
	})

	t.Run("TamperedToken", func(t *testing.T) {
		// A flipped ciphertext bit fails GCM authentication on the server;
		// the error says so and the volume stays locked.
		tampered := filepath.Join(t.TempDir(), "tampered.img")
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(tampered, b, 0o600); err != nil {
			t.Fatal(err)
		}
		kr := kektest.OpenKeyring(t, tampered)
		for _, tok := range kr.Tokens() {
			if tok.Type != kmipkek.TokenType {
				continue
			}
			var m map[string]any
			json.Unmarshal(tok.Raw, &m)
			ct, _ := base64.StdEncoding.DecodeString(m["ciphertext"].(string))
			ct[0] ^= 1
			m["ciphertext"] = base64.StdEncoding.EncodeToString(ct)
			raw, _ := json.Marshal(m)
			if err := kr.RemoveToken(tok.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := kr.AddToken(raw); err != nil {
				t.Fatal(err)
			}
		}
		_, _, err = unlock(t, tampered, cfg)
		if !errors.Is(err, keyring.ErrUnavailable) || !errors.Is(err, kmip.ErrOperationFailed) {
			t.Fatalf("tampered token: err = %v, want a server refusal", err)
		}
		t.Logf("tampered token: %v", err)
	})

	t.Run("Rotate", func(t *testing.T) {
		kr := kektest.OpenKeyring(t, path)
		old, _ := kmipkek.NewKEK(cfg, nil)
		next, _ := kmipkek.NewKEK(cfg, nil)
		oldSlot, newSlot, err := kr.RotateKEK(ctx, old, next, kmipkek.KeyslotOptions())
		if err != nil {
			t.Fatal(err)
		}
		if oldSlot != slot || newSlot == slot || next.CreatedUID() == "" || next.CreatedUID() == keyUID {
			t.Fatalf("rotated %d -> %d, key %q -> %q", oldSlot, newSlot, keyUID, next.CreatedUID())
		}
		for _, ks := range kr.Keyslots() {
			if ks.ID == oldSlot {
				t.Fatalf("old keyslot %d still there", oldSlot)
			}
		}
		// The old key can go now; the volume opens with the new one.
		c, err := cfg.Client(nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.RevokeDestroy(ctx, keyUID, kmip.RevocationSuperseded, "rotated"); err != nil {
			t.Fatal(err)
		}
		got, dek, err := unlock(t, path, cfg)
		if err != nil || got != newSlot || !bytes.Equal(dek, wantDEK) {
			t.Fatalf("unlock after rotation: slot %d, %v", got, err)
		}
		slot, keyUID = newSlot, next.CreatedUID()
	})

	t.Run("ClientFromOtherCARefused", func(t *testing.T) {
		intruder := writeConfig(t, srv, kmiptest.NewCA(t, "other CA").Issue(t, "intruder", false), srv.Addr)
		before := fileHash(t, path)
		_, _, err := unlock(t, path, intruder)
		if !errors.Is(err, keyring.ErrUnavailable) || !errors.Is(err, kmip.ErrUnavailable) || !strings.Contains(err.Error(), srv.Addr) {
			t.Fatalf("client from another CA: err = %v", err)
		}
		if fileHash(t, path) != before {
			t.Fatal("a refused unlock changed the volume")
		}
	})

	t.Run("RevokeLocks", func(t *testing.T) {
		c, err := cfg.Client(nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Revoke(ctx, keyUID, kmip.RevocationCessationOfOperation, "crypto-lock"); err != nil {
			t.Fatal(err)
		}
		before := fileHash(t, path)
		_, _, err = unlock(t, path, cfg)
		var re *kmip.ResultError
		if !errors.Is(err, keyring.ErrUnavailable) || !errors.As(err, &re) || re.Reason != kmip.ReasonPermissionDenied ||
			!strings.Contains(err.Error(), srv.Addr) || !strings.Contains(err.Error(), "Permission Denied") {
			t.Fatalf("revoked key: err = %v", err)
		}
		t.Logf("revoked key: %v", err)
		if errors.Is(err, keyring.ErrNoMatchingKeyslot) {
			t.Fatalf("revoked key reported as a wrong key: %v", err)
		}
		if fileHash(t, path) != before {
			t.Fatal("a refused unlock changed the volume")
		}
		kr := kektest.OpenKeyring(t, path)
		kek, _ := kmipkek.NewKEK(cfg, nil)
		if st := kek.Status(ctx, kr); len(st) != 1 || st[0].State != kmip.StateDeactivated {
			t.Fatalf("Status after revoke = %+v", st)
		}
		// The passphrase keyslot is unaffected.
		pass, _ := passphrase.New([]byte(kektest.Passphrase))
		defer pass.Destroy()
		dek, err := kr.Unlock(ctx, pass)
		if err != nil {
			t.Fatal(err)
		}
		dek.Destroy()
	})

	t.Run("ServerDown", func(t *testing.T) {
		srv.Stop()
		before := fileHash(t, path)
		_, _, err := unlock(t, path, cfg)
		if !errors.Is(err, keyring.ErrUnavailable) || !errors.Is(err, kmip.ErrUnavailable) || !strings.Contains(err.Error(), srv.Addr) {
			t.Fatalf("server down: err = %v", err)
		}
		t.Logf("server down: %v", err)
		if fileHash(t, path) != before {
			t.Fatal("a failed unlock changed the volume")
		}
		// Adding a KMIP keyslot fails cleanly too, leaving the header alone.
		kr := kektest.OpenKeyring(t, path)
		pass, _ := passphrase.New([]byte(kektest.Passphrase))
		defer pass.Destroy()
		dek, err := kr.Unlock(ctx, pass)
		if err != nil {
			t.Fatal(err)
		}
		defer dek.Destroy()
		kek, _ := kmipkek.NewKEK(cfg, nil)
		if _, err := kr.AddKeyslot(ctx, dek, kek, kmipkek.KeyslotOptions()); !errors.Is(err, kmip.ErrUnavailable) {
			t.Fatalf("AddKeyslot with the server down: err = %v", err)
		}
		if fileHash(t, path) != before {
			t.Fatal("a failed AddKeyslot changed the volume")
		}
		// Slots needs no server; Status reports it unreachable.
		sl := kmipkek.Slots(kr)
		if len(sl) != 1 || sl[0].KeyUID == "" || sl[0].Servers[0] != srv.Addr || sl[0].State != 0 || sl[0].Err != nil {
			t.Fatalf("Slots with the server down = %+v", sl)
		}
		st := kek.Status(ctx, kr)
		if len(st) != 1 || st[0].KeyUID != sl[0].KeyUID || st[0].Keyslot != sl[0].Keyslot || !errors.Is(st[0].Err, kmip.ErrUnavailable) {
			t.Fatalf("Status with the server down = %+v", st)
		}
	})
}
