package main

import (
	"encoding/json"
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
		Long: `Rotate replaces the KEK that opens TARGET: the old KEK (--key-file,
--passphrase-file or the prompt) unwraps the data key, which is wrapped for the
new KEK (--new-key-file, --new-passphrase-file, --new-kmip CONFIG, --generate-key-file PATH or the prompt) in a new keyslot; one header commit adds it and drops the old one, whose area is then wiped.
The data key and the data do not change, so it takes the same time for any
volume size. A served volume is rotated by its server while it keeps serving;
otherwise the header is changed here.

For a LUKS2 hw-opal(-crypt) volume on a self-encrypting drive (--header for a
detached header), the key of the drive's locking range does not change: as
in cryptsetup, it is the first bytes of the volume key, which KEK rotation
keeps.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			target := argOr(args, 0)
			kr, ov, err := ot.open(target)
			if err != nil {
				return err
			}
			if kr != nil {
				defer kr.Close()
			}
			if ov != nil {
				// Never served: the header is rotated in place.
				target = ov.hdrPath
			}
			if generate != "" && newKEK.given() {
				return withExit(exitUsage, errors.New("--generate-key-file excludes --new-key-file and --new-passphrase-file"))
			}
			opts, err := kdf.options(newKEK.highEntropy())
			if err != nil {
				return err
			}
			c, vol, err := t.client(ctx, target)
			offline := errors.Is(err, daemon.ErrNotServed) && t.control == ""
			if err != nil && !offline {
				return err
			}
			if err := secmem.SetNonDumpable(); err != nil {
				return err
			}
			old, err := oldKEK.readFor(kr, cmd.InOrStdin(), cmd.ErrOrStderr(), false)
			if err != nil {
				return err
			}
			defer old.Destroy()
			// The generated key file is removed again unless the rotation
			// may have committed: only a failure before the attempt, or a
			// wrong old KEK, proves the new keyslot does not exist.
			var attempted, committed bool
			var rotErr error
			if generate != "" {
				if err := generateKeyFile(generate); err != nil {
					return err
				}
				newKEK.keyFile = generate
				defer func() {
					if !committed && (!attempted || errors.Is(rotErr, keyring.ErrNoMatchingKeyslot)) {
						os.Remove(generate)
					}
				}()
			}
			nk, err := newKEK.read(cmd.InOrStdin(), cmd.ErrOrStderr(), true)
			if err != nil {
				return err
			}
			defer nk.Destroy()

			var oldSlot, newSlot int
			final := true // the outcome is known: see discardNewKey
			if offline {
				attempted = true
				oldSlot, newSlot, err = daemon.RotateOffline(ctx, target, old, nk, opts)
			} else {
				var oldSecret, newSecret *keyring.Secret
				if oldSecret, err = serverSecret(ctx, kr, old); err != nil {
					return err
				}
				defer oldSecret.Destroy()
				var tokens []json.RawMessage
				if newSecret, tokens, err = nk.Wrap(ctx); err == nil {
					defer newSecret.Destroy()
					attempted = true // only now can the server commit
					var res daemon.RotateResult
					res, err = c.RotateKEKWrapped(ctx, vol, oldSecret.Bytes(), newSecret.Bytes(), tokens, &opts.KDF)
					oldSlot, newSlot, final = res.OldSlot, res.NewSlot, err == nil || daemon.Answered(err)
				}
			}
			if err != nil {
				rotErr = err
				return discardNewKey(ctx, nk, kr, err, final)
			}
			committed = true
			fmt.Fprintf(cmd.OutOrStdout(), "KEK rotated: keyslot %d replaced by keyslot %d\n", oldSlot, newSlot)
			if d, ok := nk.(keyring.Discarder); ok && d.Created() != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "new %s\n", d.Created())
			}
			if ov != nil {
				fmt.Fprintln(cmd.OutOrStdout(), rotateNote(ov))
			}
			a.log.Debug("rotated", "old", oldSlot, "new", newSlot, "online", !offline)
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
