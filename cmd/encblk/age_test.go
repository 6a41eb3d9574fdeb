package main

import (
	"bytes"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/encblk/encblk/internal/testutil"
)

// TestAgeScript runs the scenarios in testdata/age, where encblk's age
// files meet the real age and age-keygen (Debian's package age), keys made
// by ssh-keygen, and cryptsetup as the judge of header backups. age reads
// a passphrase only from a terminal: the scripts give it one with
// script(1).
func TestAgeScript(t *testing.T) {
	for _, tool := range [][2]string{
		{"age", "age"}, {"age-keygen", "age"}, {"ssh-keygen", "openssh-client"},
		{"cryptsetup", "cryptsetup-bin"}, {"script", "bsdutils"},
	} {
		testutil.RequireTool(t, tool[0], tool[1])
	}
	testscript.Run(t, testscript.Params{
		Dir:       "testdata/age",
		Condition: toolCondition,
		Cmds: withScriptCmds(map[string]func(ts *testscript.TestScript, neg bool, args []string){
			// same-volume-key A B: the volume keys that the two dumps
			// (encblk dump or cryptsetup luksDump --dump-volume-key; a
			// file, or stdout) show are the same.
			"same-volume-key": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: same-volume-key DUMP DUMP")
				}
				var keys [2][]byte
				for i, name := range args {
					k, err := testutil.ParseVolumeKey(ts.ReadFile(name))
					if err != nil {
						ts.Fatalf("%s: %v", name, err)
					}
					keys[i] = k
				}
				same := bytes.Equal(keys[0], keys[1])
				if same == neg {
					ts.Fatalf("the volume keys of %s and %s: same = %v", args[0], args[1], same)
				}
			},
		}),
	})
}
