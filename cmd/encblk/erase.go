package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/encblk/encblk/internal/audit"
)

func init() { subcommands = append(subcommands, newEraseCmd) }

func newEraseCmd(a *app) *cobra.Command {
	var (
		hdr   headerFlag
		batch bool
	)
	cmd := &cobra.Command{
		Use:   "erase DEVICE",
		Short: "Destroy every keyslot (crypto-erase), like cryptsetup erase",
		Long: `Erase overwrites all keyslots: no KEK opens the volume afterwards and the
data is unrecoverable unless someone kept the volume key or a header backup.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := hdr.open(args[0], false)
			if err != nil {
				return err
			}
			defer k.Close()
			if err := confirm(cmd.InOrStdin(), cmd.ErrOrStderr(), batch,
				fmt.Sprintf("This will destroy every keyslot of %s: the data becomes unrecoverable.", args[0])); err != nil {
				return err
			}
			err = k.Erase(cmd.Context())
			audit.Log(cmd.Context(), a.log, audit.Record{Event: audit.Erase, Volume: k.UUID(), Backing: args[0], Keyslot: -1, Err: err}.Self())
			return err
		},
	}
	hdr.register(cmd.Flags())
	cmd.Flags().BoolVarP(&batch, "batch-mode", "q", false, "do not ask for confirmation")
	return cmd
}
