package main

import (
	"github.com/spf13/cobra"

	"github.com/encblk/encblk/internal/audit"
	"github.com/encblk/encblk/internal/daemon"
	"github.com/encblk/encblk/internal/secmem"
)

func init() { subcommands = append(subcommands, newUnlockCmd) }

func newUnlockCmd(a *app) *cobra.Command {
	var (
		t   targetFlags
		kek kekFlags
		ot  opalTargetFlags
	)
	cmd := &cobra.Command{
		Use:   "unlock TARGET",
		Short: "Unlock a served volume with a KEK; waiting I/O resumes",
		Long: `Unlock sends the KEK to the server of TARGET over its control socket; the
server opens a keyslot with it and resumes the I/O that waited. A wrong KEK
(a TPM2 keyslot whose PCRs changed, a wrong PIN) exits with status 2 and
leaves the volume locked; a source that cannot answer now (a key server or
Tang server down, no TPM) leaves its keyslot locked with the reason, and
the exit status is 3 if no keyslot opens.

` + kekHelp(false) + `

For a LUKS2 hw-opal(-crypt) volume on a self-encrypting drive (TARGET is the
drive; --header for a detached header), the keyslot opened by the KEK yields
the key of the drive's locking range, which is unlocked.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kr, ov, err := ot.open(argOr(args, 0))
			if err != nil {
				return err
			}
			if kr != nil {
				defer kr.Close()
			}
			var c *daemon.Client
			var vol string
			if ov == nil {
				if c, vol, err = t.client(cmd.Context(), argOr(args, 0)); err != nil {
					return err
				}
			}
			if err := secmem.SetNonDumpable(); err != nil {
				return err
			}
			k, err := kek.readFor(kr, cmd.InOrStdin(), cmd.ErrOrStderr(), false)
			if err != nil {
				return err
			}
			defer k.Destroy()
			if ov != nil {
				err := ot.unlock(cmd.Context(), cmd.OutOrStdout(), args[0], ov, k)
				auditOpal(cmd.Context(), a, audit.Unlock, args[0], ov, err)
				return err
			}
			secret, err := serverSecret(cmd.Context(), kr, k)
			if err != nil {
				return err
			}
			defer secret.Destroy()
			return c.Unlock(cmd.Context(), vol, secret.Bytes())
		},
	}
	t.register(cmd.Flags())
	kek.register(cmd.Flags(), "")
	ot.register(cmd.Flags(), false, false)
	return cmd
}
