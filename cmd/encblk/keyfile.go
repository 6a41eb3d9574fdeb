package main

import (
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"time"

	"filippo.io/age"
	"github.com/spf13/cobra"

	"github.com/encblk/encblk/internal/secmem"
)

func init() { subcommands = append(subcommands, newKeyfileCmd) }

// keyFileLen is the size of a generated key file: 256 random bits.
const keyFileLen = 32

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
	key, err := secmem.New(keyFileLen)
	if err != nil {
		return err
	}
	defer key.Destroy()
	if _, err := rand.Read(key.Bytes()); err != nil {
		return err
	}
	return writeNewFile(path, "key file", key.Bytes())
}

// writeNewFile writes data to a new file at path, mode 0600, and syncs
// it; what names it in errors. A file that exists is left alone.
func writeNewFile(path, what string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return withExit(exitIO, fmt.Errorf("%s: %w", what, err))
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return withExit(exitIO, fmt.Errorf("%s: %w", what, err))
	}
	return f.Close()
}
