package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newRepairCmd) }

func newRepairCmd(a *app) *cobra.Command {
	var hdr headerFlag
	cmd := &cobra.Command{
		Use:   "repair DEVICE",
		Short: "Rewrite a damaged header copy from the good one, like cryptsetup repair",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := hdr.open(args[0], false)
			if err != nil {
				return err
			}
			defer k.Close()
			what, err := k.Repair()
			if err != nil {
				return err
			}
			if what == "" {
				fmt.Fprintln(cmd.OutOrStdout(), "nothing to repair: both header copies are good")
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "repaired %s\n", what)
			return nil
		},
	}
	hdr.register(cmd.Flags())
	return cmd
}
