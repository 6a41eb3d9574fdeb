package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/encblk/encblk/internal/daemon"
	"github.com/encblk/encblk/pkg/kek/kmipkek"
	"github.com/encblk/encblk/pkg/kek/passphrase"
	"github.com/encblk/encblk/pkg/keyring"
	"github.com/encblk/encblk/pkg/kmip"
	"github.com/encblk/encblk/pkg/kmip/kmiptest"
)

// TestKMIPScript runs the scenarios in testdata/kmip against a real
// pykmip-server. $KMIP_CONFIG is a client configuration the server
// accepts, $KMIP_INTRUDER one whose certificate another CA issued, and
// $KMIP_SERVER the server's address; the command kmip-server-stop stops it,
// and "kmip-key-state stdout|stderr REGEXP STATE" checks that the key whose
// UID REGEXP's group finds in the last command's output is in STATE on the
// server ("Active", "Deactivated", ... or "gone": no such key).
func TestKMIPScript(t *testing.T) {
	srv := kmiptest.Start(t)
	dir := t.TempDir()
	good := writeKMIPConfig(t, srv, dir, "client", srv.Client)
	intruder := writeKMIPConfig(t, srv, dir, "intruder", kmiptest.NewCA(t, "another CA").Issue(t, "intruder", false))
	testscript.Run(t, testscript.Params{
		Dir:       "testdata/kmip",
		Condition: toolCondition,
		Setup: func(env *testscript.Env) error {
			env.Setenv("KMIP_CONFIG", good)
			env.Setenv("KMIP_INTRUDER", intruder)
			env.Setenv("KMIP_SERVER", srv.Addr)
			return nil
		},
		Cmds: withScriptCmds(map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"kmip-server-stop": func(ts *testscript.TestScript, neg bool, args []string) { srv.Stop() },
			"kmip-key-state": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 3 {
					ts.Fatalf("usage: kmip-key-state stdout|stderr REGEXP STATE")
				}
				m := regexp.MustCompile(args[1]).FindStringSubmatch(ts.ReadFile(args[0]))
				if len(m) != 2 {
					ts.Fatalf("no key UID matching %q in %s", args[1], args[0])
				}
				cfg, err := kmip.LoadConfig(good)
				ts.Check(err)
				c, err := cfg.Client(nil, nil)
				ts.Check(err)
				got, err := keyState(c, m[1])
				if err != nil {
					ts.Fatalf("key %s: %v", m[1], err)
				}
				if got != args[2] {
					ts.Fatalf("key %s is %s, want %s", m[1], got, args[2])
				}
			},
		}),
	})
}

// writeKMIPConfig writes, in dir, the client configuration for srv with
// leaf's certificate, and returns its path.
func writeKMIPConfig(t *testing.T, srv *kmiptest.Server, dir, name string, leaf *kmiptest.Leaf) string {
	t.Helper()
	leaf.WriteFiles(t, dir, name)
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), srv.CA.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]any{
		"servers": []string{srv.Addr}, "ca": "ca.pem", "cert": name + ".crt", "key": name + ".key", "timeout": "5s",
	})
	path := filepath.Join(dir, name+".json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// daemon.DiscardNewKey destroys a key created for a keyslot only when the outcome
// is final and provably left no keyslot using it; otherwise the key stays
// Active and the error says so.
func TestDiscardNewKey(t *testing.T) {
	srv := kmiptest.Start(t)
	cfgPath := writeKMIPConfig(t, srv, t.TempDir(), "client", srv.Client)
	cfg, err := kmip.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cfg.Client(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	lost := errors.New("connection reset")
	for _, tc := range []struct {
		name  string
		err   error
		final bool
		want  string // the state of the key afterwards
		says  string
	}{
		{"answer lost", lost, false, "Active", "was kept: without the server's answer"},
		{"no header to read", lost, true, "Active", "was kept: name the backing"},
		{"wrong old KEK", fmt.Errorf("server: %w", keyring.ErrNoMatchingKeyslot), true, "gone", "was destroyed"},
	} {
		k, err := kmipkek.NewKEK(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		secret, _, err := k.Wrap(ctx)
		if err != nil {
			t.Fatal(err)
		}
		secret.Destroy()
		uid := k.CreatedUID()
		got := daemon.DiscardNewKey(ctx, k, nil, tc.err, tc.final)
		if !errors.Is(got, tc.err) || !strings.Contains(got.Error(), "the KMIP key "+uid+" created for it "+tc.says) {
			t.Errorf("%s: %v", tc.name, got)
		}
		state, err := keyState(c, uid)
		if err != nil {
			t.Fatal(err)
		}
		if state != tc.want {
			t.Errorf("%s: key %s is %s, want %s", tc.name, uid, state, tc.want)
		}
	}
}

// keyState is the state of the key uid on c's server, or "gone" if the
// server has no such key (it was destroyed).
func keyState(c *kmip.Client, uid string) (string, error) {
	st, err := c.KeyState(context.Background(), uid)
	if r, ok := kmip.Reason(err); ok && r == kmip.ReasonItemNotFound {
		return "gone", nil
	}
	return st.String(), err
}

// TestKMIPRevokeUnreadableToken: a KMIP keyslot whose token cannot be read
// (here, a newer token version) has a key that kmip revoke cannot name; the
// crypto-lock must say so and fail rather than report success.
func TestKMIPRevokeUnreadableToken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "disk.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(20 << 20); err != nil {
		t.Fatal(err)
	}
	pass, err := passphrase.New([]byte("passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	defer pass.Destroy()
	kr, dek, err := keyring.Format(context.Background(), f, pass, &keyring.FormatOptions{
		KDF: keyring.KDFParams{Type: "pbkdf2", Hash: "sha256", Iterations: 1000},
	})
	if err != nil {
		t.Fatal(err)
	}
	dek.Destroy()
	tok := `{"type":"encblk-kmip","keyslots":["0"],"encblk_kmip_version":99,"servers":["kmip.example:5696"],"key_uid":"7"}`
	if _, err := kr.AddToken(json.RawMessage(tok)); err != nil {
		t.Fatal(err)
	}
	kr.Close()
	cfg := filepath.Join(dir, "kmip.json")
	if err := os.WriteFile(cfg, []byte(`{"servers":["kmip.example:5696"],"ca":"ca.pem","cert":"c.crt","key":"c.key"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"kmip", "revoke", "--batch-mode", "--config", cfg, path})
	err = root.Execute()
	if err == nil || !strings.Contains(err.Error(), "keyslot 0 (token 0): not revoked") || !errors.Is(err, kmipkek.ErrBadToken) {
		t.Fatalf("kmip revoke with an unreadable token: %v (output %q)", err, out.String())
	}
}
