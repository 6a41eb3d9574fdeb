package main

import (
	"github.com/spf13/cobra"

	"github.com/encblk/encblk/internal/audit"
)

func init() { subcommands = append(subcommands, newLockCmd) }

func newLockCmd(a *app) *cobra.Command {
	var (
		t  targetFlags
		ot opalTargetFlags
	)
	cmd := &cobra.Command{
		Use:   "lock TARGET",
		Short: "Lock a served volume: wait for in-flight I/O, flush, wipe the key",
		Long: `Lock tells the server of TARGET (a backing path, or the server of --control)
to wait for in-flight requests, flush the backing and wipe the data key from
memory. Clients stay connected; their I/O waits for "encblk unlock" (or fails,
per the server's --lock-mode and --lock-timeout).

For a LUKS2 hw-opal(-crypt) volume on a self-encrypting drive (TARGET is the
drive; --header for a detached header), the drive's locking range is locked:
with the range key from a keyslot opened by the KEK (--key-file,
--passphrase-file), or with the drive's admin key (--admin-key-file).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kr, ov, err := ot.open(argOr(args, 0))
			if err != nil {
				return err
			}
			if kr != nil {
				defer kr.Close()
			}
			if ov != nil {
				err := ot.lock(cmd.Context(), cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0], ov)
				auditOpal(cmd.Context(), a, audit.Lock, args[0], ov, err)
				return err
			}
			c, vol, err := t.client(cmd.Context(), argOr(args, 0))
			if err != nil {
				return err
			}
			return c.Lock(cmd.Context(), vol)
		},
	}
	t.register(cmd.Flags())
	ot.register(cmd.Flags(), true, true)
	return cmd
}

// argOr is args[i], or "" when there are fewer arguments.
func argOr(args []string, i int) string {
	if i < len(args) {
		return args[i]
	}
	return ""
}
