package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/encblk/encblk/internal/backing"
	"github.com/encblk/encblk/internal/secmem"
	"github.com/encblk/encblk/pkg/keyring"
)

func init() { subcommands = append(subcommands, newFormatCmd) }

func newFormatCmd(a *app) *cobra.Command {
	var (
		kek        kekFlags
		kdf        kdfFlags
		hdr        headerFlag
		batch      bool
		sectorSize int
		keyBits    int
		offset     uint64
		mdSize     uint64
		ksSize     uint64
		label      string
		uuid       string
		discards   bool
	)
	cmd := &cobra.Command{
		Use:   "format DEVICE",
		Short: "Create a LUKS2 volume (new random DEK, first KEK in keyslot 0)",
		Long: `Format writes a new LUKS2 header to DEVICE (a file or block device), or to
the --header file, with a new random data-encryption key wrapped for the
KEK given by --key-file, --passphrase-file or typed at the prompt.
Everything on the header area is destroyed. cryptsetup opens the result.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			params, err := kdf.params()
			if err != nil {
				return err
			}
			if keyBits != 256 && keyBits != 512 {
				return withExit(exitUsage, fmt.Errorf("--key-size %d: want 256 or 512", keyBits))
			}
			opts := &keyring.FormatOptions{
				KeySize: keyBits / 8, SectorSize: sectorSize, DataOffset: offset * 512,
				Detached: hdr.path != "", MetadataSize: mdSize, KeyslotsSize: ksSize,
				KDF: params, Label: label, UUID: uuid, AllowDiscards: discards,
			}
			target := hdr.location(args[0])
			if hdr.path != "" {
				if _, err := os.Stat(args[0]); err != nil {
					return fmt.Errorf("data device: %w", err)
				}
			}
			if err := confirm(cmd.InOrStdin(), cmd.ErrOrStderr(), batch,
				fmt.Sprintf("This will overwrite data on %s irrevocably.", target)); err != nil {
				return err
			}
			if err := secmem.SetNonDumpable(); err != nil {
				return err
			}
			key, err := kek.read(cmd.InOrStdin(), cmd.ErrOrStderr(), true)
			if err != nil {
				return err
			}
			defer key.Destroy()
			flag := os.O_RDWR
			if hdr.path != "" {
				flag |= os.O_CREATE
			}
			// Not under a server (flock) nor a mounted or mapped device.
			f, err := backing.Claim(target, flag, 0o600)
			switch {
			case errors.Is(err, backing.ErrBusy), errors.Is(err, backing.ErrInUse):
				return fmt.Errorf("%w; nothing written", err)
			case err != nil:
				return withExit(exitIO, err)
			}
			defer f.Close()
			k, dek, err := keyring.Format(cmd.Context(), f, key, opts)
			if err != nil {
				return fmt.Errorf("format %s: %w", target, err)
			}
			dek.Destroy()
			if err := f.Close(); err != nil {
				return withExit(exitIO, err)
			}
			a.log.Debug("formatted", "device", target, "uuid", k.UUID())
			return nil
		},
	}
	fs := cmd.Flags()
	kek.registerDirect(fs, "")
	kdf.register(fs)
	hdr.register(fs)
	fs.BoolVarP(&batch, "batch-mode", "q", false, "do not ask for confirmation")
	fs.IntVar(&sectorSize, "sector-size", 512, "encryption sector size: 512, 1024, 2048 or 4096")
	fs.IntVarP(&keyBits, "key-size", "s", 512, "volume key size in bits: 512 (AES-256-XTS) or 256 (AES-128-XTS)")
	fs.Uint64Var(&offset, "offset", 0, "data offset in 512-byte sectors (default 16 MiB, 0 with --header)")
	fs.Uint64Var(&mdSize, "luks2-metadata-size", 0, "size of one header copy in bytes (16384 … 4194304)")
	fs.Uint64Var(&ksSize, "luks2-keyslots-size", 0, "size of the keyslots area in bytes")
	fs.StringVar(&label, "label", "", "LUKS2 label")
	fs.StringVar(&uuid, "uuid", "", "volume UUID (default random)")
	fs.BoolVar(&discards, "allow-discards", false, "set the persistent allow-discards flag (TRIM reaches the backing)")
	return cmd
}
