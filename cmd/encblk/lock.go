package main

import (
	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newLockCmd) }

func newLockCmd(a *app) *cobra.Command {
	var t targetFlags
	cmd := &cobra.Command{
		Use:   "lock TARGET",
		Short: "Lock a served volume: wait for in-flight I/O, flush, wipe the key",
		Long: `Lock tells the server of TARGET (a backing path, or the server of --control)
to wait for in-flight requests, flush the backing and wipe the data key from
memory. Clients stay connected; their I/O waits for "encblk unlock" (or fails,
per the server's --lock-mode and --lock-timeout).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, vol, err := t.client(cmd.Context(), argOr(args, 0))
			if err != nil {
				return err
			}
			return c.Lock(cmd.Context(), vol)
		},
	}
	t.register(cmd.Flags())
	return cmd
}

// argOr is args[i], or "" when there are fewer arguments.
func argOr(args []string, i int) string {
	if i < len(args) {
		return args[i]
	}
	return ""
}
