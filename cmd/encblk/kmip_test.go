package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

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
	writeConfig := func(name string, leaf *kmiptest.Leaf) string {
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
	good := writeConfig("client", srv.Client)
	intruder := writeConfig("intruder", kmiptest.NewCA(t, "another CA").Issue(t, "intruder", false))
	testscript.Run(t, testscript.Params{
		Dir: "testdata/kmip",
		Setup: func(env *testscript.Env) error {
			env.Setenv("KMIP_CONFIG", good)
			env.Setenv("KMIP_INTRUDER", intruder)
			env.Setenv("KMIP_SERVER", srv.Addr)
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
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
				st, err := c.KeyState(context.Background(), m[1])
				got := st.String()
				if r, ok := kmip.Reason(err); ok && r == kmip.ReasonItemNotFound {
					got = "gone"
				} else if err != nil {
					ts.Fatalf("key %s: %v", m[1], err)
				}
				if got != args[2] {
					ts.Fatalf("key %s is %s, want %s", m[1], got, args[2])
				}
			},
		},
	})
}
