package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/encblk/encblk/internal/daemon"
	"github.com/encblk/encblk/internal/secmem"
	"github.com/encblk/encblk/pkg/keyring"
)

func init() { subcommands = append(subcommands, newRotateCmd) }

func newRotateCmd(a *app) *cobra.Command {
	var (
		t        targetFlags
		oldKEK   kekFlags
		newKEK   kekFlags
		kdf      kdfFlags
		generate string
		ot       opalTargetFlags
	)
	cmd := &cobra.Command{
		Use:   "rotate TARGET",
		Short: "Replace a KEK in one header commit (old keyslot out, new in), then wipe the old one; data untouched",
		Long: `Rotate replaces the KEK that opens TARGET: the old KEK unwraps the data key,
which is wrapped for the new KEK in a new keyslot; one header commit adds it
and drops the old one, whose area is then wiped. The data key and the data do
not change, so it takes the same time for any volume size. A served volume is
rotated by its server while it keeps serving; otherwise the header is changed
here.

` + kekHelp(true) + `
--generate-key-file PATH makes the new KEK a new random key file.

For a LUKS2 hw-opal(-crypt) volume on a self-encrypting drive (--header for a
detached header), the key of the drive's locking range does not change: as
in cryptsetup, it is the first bytes of the volume key, which KEK rotation
keeps.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			target := argOr(args, 0)
			if generate != "" && newKEK.given() {
				return withExit(exitUsage, errors.New("--generate-key-file excludes --new-key-file and --new-passphrase-file"))
			}
			if target == "" && t.control == "" {
				return withExit(exitUsage, errors.New("name a backing (TARGET) or --control SOCK"))
			}
			if target == "" && (ot.hdr.path != "" || ot.sf.simulator) {
				return withExit(exitUsage, errors.New("--header and --simulator need a TARGET device"))
			}
			opts, err := kdf.options(newKEK.keyslotOptions())
			if err != nil {
				return err
			}
			tg, err := daemon.OpenTarget(ctx, target, daemon.TargetOptions{Header: ot.hdr.path, Control: t.control, Logger: a.log})
			if err != nil {
				return err
			}
			defer tg.Close()
			var ov *opalTarget
			if kr := tg.Keyring(); kr != nil {
				if ov, err = ot.of(target, kr); err != nil {
					return err
				}
			}
			if err := secmem.SetNonDumpable(); err != nil {
				return err
			}
			old, err := oldKEK.readFor(tg.Keyring(), cmd.InOrStdin(), cmd.ErrOrStderr(), false)
			if err != nil {
				return err
			}
			defer old.Destroy()
			// A generated key file is removed again unless the rotation
			// may have committed: only a failure before the attempt, or a
			// wrong old KEK, proves the new keyslot does not exist.
			if generate != "" {
				if err := generateKeyFile(generate); err != nil {
					return err
				}
				newKEK.keyFile = generate
			}
			nk, err := newKEK.read(cmd.InOrStdin(), cmd.ErrOrStderr(), true)
			if err != nil {
				if generate != "" {
					os.Remove(generate)
				}
				return err
			}
			defer nk.Destroy()
			oldSlot, newSlot, err := tg.RotateKEK(ctx, old, nk, opts)
			if err != nil {
				if generate != "" && !daemon.MayHaveCommitted(err) {
					os.Remove(generate)
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "KEK rotated: keyslot %d replaced by keyslot %d\n", oldSlot, newSlot)
			if d, ok := nk.(keyring.Discarder); ok && d.Created() != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "new %s\n", d.Created())
			}
			if ov != nil {
				fmt.Fprintln(cmd.OutOrStdout(), rotateNote(ov))
			}
			return nil
		},
	}
	fs := cmd.Flags()
	t.register(fs)
	oldKEK.register(fs, "")
	newKEK.register(fs, "new-")
	kdf.register(fs)
	ot.register(fs, false, false)
	fs.StringVar(&generate, "generate-key-file", "", "the new KEK is a new random key file written to PATH (mode 0600; must not exist)")
	return cmd
}
