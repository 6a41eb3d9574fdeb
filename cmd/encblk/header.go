package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/encblk/encblk/internal/audit"
	"github.com/encblk/encblk/internal/backing"
	"github.com/encblk/encblk/pkg/keyring"
)

func init() { subcommands = append(subcommands, newHeaderCmd) }

func newHeaderCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "header",
		Short: "Back up and restore the LUKS header",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newHeaderBackupCmd(), newHeaderRestoreCmd(a))
	return cmd
}

func newHeaderBackupCmd() *cobra.Command {
	var (
		hdr  headerFlag
		file string
		bc   backupCrypto
	)
	cmd := &cobra.Command{
		Use:   "backup DEVICE --header-backup-file FILE",
		Short: "Save the header and keyslots to FILE, like cryptsetup luksHeaderBackup",
		Long: `Backup copies the header area (both LUKS2 copies and the keyslots) to a new
file with mode 0600. Anyone with the backup and a KEK it lists can open the
volume, even after that KEK is rotated out: keep it as safe as the keys.

With --recipient/--recipients-file (age1…, ssh-ed25519, ssh-rsa public keys),
or --encrypt and a passphrase, the backup is an age file (age-encryption.org/v1)
instead: any age client opens it, and

  age -d -i KEY backup.age > backup.hdr

gives the very file cryptsetup luksHeaderRestore takes. header restore opens
it with --identity KEY, or asks for the passphrase.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return withExit(exitUsage, errors.New("--header-backup-file is required"))
			}
			k, err := hdr.open(args[0], true)
			if err != nil {
				return err
			}
			defer k.Close()
			f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return fmt.Errorf("header backup: %w", err)
			}
			if err := writeBackup(k, f, &bc, cmd.InOrStdin(), cmd.ErrOrStderr()); err != nil {
				f.Close()
				os.Remove(file)
				return err
			}
			if err := f.Sync(); err != nil {
				f.Close()
				return withExit(exitIO, err)
			}
			return f.Close()
		},
	}
	hdr.register(cmd.Flags())
	bc.register(cmd.Flags(), true)
	cmd.Flags().StringVar(&file, "header-backup-file", "", "file to write (must not exist)")
	return cmd
}

func newHeaderRestoreCmd(a *app) *cobra.Command {
	var (
		hdr   headerFlag
		file  string
		batch bool
		bc    backupCrypto
	)
	cmd := &cobra.Command{
		Use:   "restore DEVICE --header-backup-file FILE",
		Short: "Write a header backup back, like cryptsetup luksHeaderRestore",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return withExit(exitUsage, errors.New("--header-backup-file is required"))
			}
			target := hdr.location(args[0])
			if err := confirm(cmd.InOrStdin(), cmd.ErrOrStderr(), batch,
				fmt.Sprintf("The header of %s will be replaced by the backup %s;\nkeyslots added since the backup are lost.", target, file)); err != nil {
				return err
			}
			if hdr.path == "" {
				// A server holds the backing's lock: its header must not
				// change under it (exit 3 while served).
				lock, err := backing.Open(target, backing.Options{})
				if err != nil {
					return err
				}
				defer lock.Close()
			}
			f, err := os.OpenFile(target, os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			err = restoreBackup(f, file, &bc, cmd.InOrStdin(), cmd.ErrOrStderr())
			rec := audit.Record{Event: audit.HeaderRestore, Backing: args[0], Keyslot: -1, Err: err}
			if err == nil {
				if kr, kerr := keyring.Open(target, &keyring.Options{ReadOnly: true}); kerr == nil {
					rec.Volume = kr.UUID()
					kr.Close()
				}
			}
			audit.Log(cmd.Context(), a.log, rec.Self())
			return err
		},
	}
	hdr.register(cmd.Flags())
	cmd.Flags().StringVar(&file, "header-backup-file", "", "backup file to restore")
	cmd.Flags().BoolVarP(&batch, "batch-mode", "q", false, "do not ask for confirmation")
	bc.register(cmd.Flags(), false)
	return cmd
}
