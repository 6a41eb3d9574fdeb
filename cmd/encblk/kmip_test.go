package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/encblk/encblk/pkg/kmip/kmiptest"
)

// TestKMIPScript runs the scenarios in testdata/kmip against a real
// pykmip-server. $KMIP_CONFIG is a client configuration the server
// accepts, $KMIP_INTRUDER one whose certificate another CA issued, and
// $KMIP_SERVER the server's address; the command kmip-server-stop stops it.
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
		},
	})
}
