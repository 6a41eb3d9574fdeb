package main

import (
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/encblk/encblk/internal/testutil"
	"github.com/encblk/encblk/pkg/kek/tpm2/tpm2test"
)

// TestTPM2Script runs testdata/tpm2 with a software TPM: $TPM is its
// device in systemd's spelling (also TPM2TOOLS_TCTI), systemd-cryptenroll
// and cryptsetup the judges.
func TestTPM2Script(t *testing.T) { runTPM2Script(t, "testdata/tpm2") }

// TestTPM2EnrollScript runs testdata/tpm2-enroll (encblk seals keyslots)
// with its own software TPM.
func TestTPM2EnrollScript(t *testing.T) { runTPM2Script(t, "testdata/tpm2-enroll") }

func runTPM2Script(t *testing.T, dir string) {
	testutil.RequireTool(t, "systemd-cryptenroll", "systemd")
	testutil.RequireTool(t, "tpm2_pcrextend", "tpm2-tools")
	testutil.RequireTool(t, "cryptsetup", "cryptsetup-bin")
	testutil.RequireTool(t, "clevis", "clevis-luks")
	testutil.RequireTool(t, "clevis-encrypt-tpm2", "clevis-tpm2")
	dev := tpm2test.Start(t)
	testscript.Run(t, testscript.Params{
		Dir:       dir,
		Condition: toolCondition,
		Setup: func(env *testscript.Env) error {
			env.Setenv("TPM", dev)
			env.Setenv("TPM2TOOLS_TCTI", dev)
			return nil
		},
		Cmds: scriptCmds(),
	})
}
