package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"filippo.io/age"
	"github.com/spf13/cobra"

	"github.com/encblk/encblk/pkg/kek/keyfile"
)

func init() { subcommands = append(subcommands, newKeyfileCmd) }

func newKeyfileCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keyfile",
		Short: "Manage key files (KEKs kept on another device)",
		Args:  cobra.NoArgs,
	}
	var ageIdentity bool
	gen := &cobra.Command{
		Use:   "generate PATH",
		Short: "Write a new key file of 32 random bytes (mode 0600; never overwrites)",
		Long: `Generate writes a new key file of 32 random bytes, with mode 0600; it never
overwrites a file.

With --age it writes an age identity instead, as age-keygen does, and prints
its recipient (the public key, age1…) on stdout: give that to whoever is to
seal a volume or a header backup to this host (keyslot add --age-recipient,
header backup --recipient).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if ageIdentity {
				return generateAgeIdentity(args[0], cmd.OutOrStdout())
			}
			return generateKeyFile(args[0])
		},
	}
	gen.Flags().BoolVar(&ageIdentity, "age", false, "write an age identity (AGE-SECRET-KEY-1…) and print its recipient")
	cmd.AddCommand(gen)
	return cmd
}

// generateAgeIdentity writes a new X25519 age identity to path in
// age-keygen's format and prints its recipient to out.
func generateAgeIdentity(path string, out io.Writer) error {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return err
	}
	// age gives the private key only as a string, on the Go heap.
	text := fmt.Sprintf("# created: %s\n# public key: %s\n%s\n", time.Now().UTC().Format(time.RFC3339), id.Recipient(), id)
	if err := writeNewFile(path, "age identity", []byte(text)); err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, id.Recipient())
	return err
}

func generateKeyFile(path string) error {
	k, err := keyfile.Generate(path)
	if err != nil {
		return newFileError("key file", err)
	}
	k.Destroy()
	return nil
}

// writeNewFile writes data to a new file at path (keyfile.Create: mode
// 0600, synced, never over a file that exists); what names it in errors.
func writeNewFile(path, what string, data []byte) error {
	return newFileError(what, keyfile.Create(path, data))
}

// newFileError is a new file's error: opening it (it exists, no such
// directory) is the caller's mistake (exit 1), writing it an I/O error.
func newFileError(what string, err error) error {
	var pe *fs.PathError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pe) && pe.Op == "open":
		return fmt.Errorf("%s: %w", what, err)
	}
	return withExit(exitIO, fmt.Errorf("%s: %w", what, err))
}
