package main

import (
	"github.com/spf13/cobra"

	"github.com/encblk/encblk/internal/secmem"
)

func init() { subcommands = append(subcommands, newUnlockCmd) }

func newUnlockCmd(a *app) *cobra.Command {
	var (
		t   targetFlags
		kek kekFlags
	)
	cmd := &cobra.Command{
		Use:   "unlock TARGET",
		Short: "Unlock a served volume with a KEK; waiting I/O resumes",
		Long: `Unlock sends the KEK (--key-file, --passphrase-file or the prompt) to the
server of TARGET over its control socket; the server opens a keyslot with it
and resumes the I/O that waited. A wrong KEK exits with status 2 and leaves
the volume locked. With no KEK named and KMIP keyslots in TARGET's header, the
key server releases the keyslot secret (--kmip CONFIG names the client
configuration); if it refuses or cannot be reached, the volume stays locked
and the exit status is 3.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, vol, err := t.client(cmd.Context(), argOr(args, 0))
			if err != nil {
				return err
			}
			if err := secmem.SetNonDumpable(); err != nil {
				return err
			}
			k, err := kek.readForTarget(argOr(args, 0), cmd.InOrStdin(), cmd.ErrOrStderr(), false)
			if err != nil {
				return err
			}
			defer k.Destroy()
			secret, err := serverSecret(cmd.Context(), argOr(args, 0), k)
			if err != nil {
				return err
			}
			defer secmem.Wipe(secret)
			return c.Unlock(cmd.Context(), vol, secret)
		},
	}
	t.register(cmd.Flags())
	kek.register(cmd.Flags(), "")
	return cmd
}
