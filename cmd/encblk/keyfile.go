package main

import (
	"crypto/rand"
	"fmt"
	"os"

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
	cmd.AddCommand(&cobra.Command{
		Use:   "generate PATH",
		Short: "Write a new key file of 32 random bytes (mode 0600; never overwrites)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return generateKeyFile(args[0])
		},
	})
	return cmd
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
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("key file: %w", err)
	}
	if _, err := f.Write(key.Bytes()); err != nil {
		f.Close()
		os.Remove(path)
		return withExit(exitIO, fmt.Errorf("key file: %w", err))
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return withExit(exitIO, fmt.Errorf("key file: %w", err))
	}
	return f.Close()
}
