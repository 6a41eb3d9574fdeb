package main

import (
	"strconv"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/encblk/encblk/internal/testutil"
	"github.com/encblk/encblk/pkg/kek/tang/tangtest"
)

// TestClevisScript runs testdata/clevis against three real Tang servers
// ($TANG1..$TANG3; $THP1, $THP2 their signing keys' thumbprints) with
// clevis and cryptsetup as judges. "tang-stop N" and "tang-start N" take
// server N down and up again.
func TestClevisScript(t *testing.T) {
	testutil.RequireTool(t, "clevis", "clevis-luks")
	testutil.RequireTool(t, "cryptsetup", "cryptsetup-bin")
	srvs := []*tangtest.Server{tangtest.Start(t), tangtest.Start(t), tangtest.Start(t)}
	server := func(ts *testscript.TestScript, args []string) *tangtest.Server {
		n, err := strconv.Atoi(args[0])
		if len(args) != 1 || err != nil || n < 1 || n > len(srvs) {
			ts.Fatalf("usage: tang-stop|tang-start 1..%d", len(srvs))
		}
		return srvs[n-1]
	}
	testscript.Run(t, testscript.Params{
		Dir:       "testdata/clevis",
		Condition: toolCondition,
		Setup: func(env *testscript.Env) error {
			for i, s := range srvs {
				env.Setenv("TANG"+strconv.Itoa(i+1), s.URL)
				env.Setenv("THP"+strconv.Itoa(i+1), s.SigningThumbprint(t))
			}
			return nil
		},
		Cmds: withScriptCmds(map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"tang-stop":  func(ts *testscript.TestScript, neg bool, args []string) { server(ts, args).Stop() },
			"tang-start": func(ts *testscript.TestScript, neg bool, args []string) { server(ts, args).Restart(t) },
		}),
	})
}
