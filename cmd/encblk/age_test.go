package main

import (
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
	testscript.Run(t, testscript.Params{Dir: "testdata/age", Cmds: scriptCmds()})
}
