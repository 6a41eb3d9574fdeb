package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/encblk/encblk/internal/secmem"
	"github.com/encblk/encblk/pkg/kek/keyfile"
	"github.com/encblk/encblk/pkg/keyring"
	"github.com/encblk/encblk/pkg/sed"
	"github.com/encblk/encblk/pkg/sed/opalvolume"
	"github.com/encblk/encblk/pkg/sed/sedsim"
)

// Exit statuses for the drive's answers.
func init() {
	exitCodeMappers = append(exitCodeMappers, func(err error) (int, bool) {
		switch {
		case errors.Is(err, sed.StatusNotAuthorized), errors.Is(err, sed.ErrOwned):
			return exitWrongKey, true
		case errors.Is(err, sed.StatusAuthorityLockedOut), errors.Is(err, sed.StatusNoSessionsAvailable), errors.Is(err, sed.StatusSPBusy):
			return exitBusy, true
		case errors.Is(err, sed.ErrDeviceFailed):
			// The drive timed out, aborted or the transport failed.
			return exitIO, true
		case errors.Is(err, sed.ErrMalformed):
			// The drive answered something that is not TCG.
			return exitCorrupt, true
		}
		return 0, false
	})
}

// errNoDestroyConfirm is what destructive sed commands say without
// --batch-mode.
//
// destroyConfirm is the confirmation of a command that destroys data on a
// drive: a typed YES, as every other destructive command asks, unless
// --batch-mode (or its older spelling --yes-destroy-data) is given.
type destroyConfirm struct{ batch bool }

func (d *destroyConfirm) register(fs *pflag.FlagSet, what string) {
	fs.BoolVarP(&d.batch, "batch-mode", "q", false, "do not ask for confirmation that "+what+" is destroyed")
	fs.BoolVar(&d.batch, "yes-destroy-data", false, "the same as --batch-mode")
}

func (d *destroyConfirm) confirm(cmd *cobra.Command, warning string) error {
	return confirm(cmd.InOrStdin(), cmd.ErrOrStderr(), d.batch, warning)
}

// sedFlags are the flags shared by the commands that talk Opal to a drive.
type sedFlags struct {
	simulator    bool
	adminKeyFile string
}

func (f *sedFlags) register(fs *pflag.FlagSet, adminKey bool) {
	fs.BoolVar(&f.simulator, "simulator", false, "DEVICE is a file holding a simulated Opal 2 drive (testing and demos)")
	_ = fs.MarkHidden("simulator")
	if adminKey {
		fs.StringVar(&f.adminKeyFile, "admin-key-file", "", "file with the drive's admin key (SID and Admin1 PIN, 1..32 bytes, every byte counts)")
	}
}

// drive is an Opal drive opened for one command.
type drive struct {
	dev    *sed.Device
	size   uint64 // bytes of DEVICE (a partition's size for a partition)
	offset uint64 // where DEVICE begins on the drive (a partition's start)
	close  func() error
}

// openDrive opens DEVICE: a block device through its SCSI, ATA or NVMe
// transport (for a partition, its disk, noting where the partition lies),
// or with --simulator a sedsim image whose state is kept in DEVICE.sedsim.
func (f *sedFlags) openDrive(ctx context.Context, path string) (*drive, error) {
	var t sed.Transport
	var size, offset uint64
	var closeFn func() error
	if f.simulator {
		sim, err := sedsim.New(path, sedsim.Options{StatePath: path + ".sedsim"})
		if err != nil {
			return nil, err
		}
		t, size, closeFn = sim, uint64(sim.Size()), sim.Close
	} else {
		part, err := sed.DefaultSysfs.Partition(path)
		if err != nil {
			return nil, err
		}
		o, err := sed.DefaultSysfs.OpenBlock(path)
		if err != nil {
			return nil, err
		}
		if part != nil {
			size, offset = part.Size, part.Start
		} else if size, err = o.Size(); err != nil {
			o.Close()
			return nil, err
		}
		t, closeFn = o, o.Close
	}
	dev, err := sed.Open(ctx, t)
	if err != nil {
		closeFn()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &drive{dev: dev, size: size, offset: offset, close: closeFn}, nil
}

// openWholeDisk opens the block device at path for security commands,
// refusing a partition: locking ranges and ATA security are per disk.
func openWholeDisk(path string) (*sed.Opened, error) {
	name, err := sed.DefaultSysfs.BlockName(path)
	if err != nil {
		return nil, err
	}
	if real, err := filepath.EvalSymlinks(path); err == nil && filepath.Base(real) != name {
		return nil, fmt.Errorf("%s is a partition: give the whole disk (%s)", path, filepath.Join(sed.DefaultSysfs.Dev, name))
	}
	return sed.DefaultSysfs.OpenBlock(path)
}

// readAdminKey reads the admin key file into protected memory.
func (f *sedFlags) readAdminKey(flag string) (*secmem.Buffer, error) {
	if f.adminKeyFile == "" {
		return nil, withExit(exitUsage, fmt.Errorf("--%s is required", flag))
	}
	return readSmallKey(f.adminKeyFile, flag)
}

// maxPINLen bounds a drive PIN file: an ATA Security password is 32 bytes
// (sed.ATAPasswordLen), as is the most an Opal C_PIN's PIN column holds.
const maxPINLen = sed.ATAPasswordLen

// readSmallKey reads a file of 1..32 bytes (a drive PIN) into protected
// memory, as every key file is read.
func readSmallKey(path, flag string) (*secmem.Buffer, error) {
	kf, err := keyfile.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", flag, err)
	}
	pin, err := bufferOf(kf)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", flag, err)
	}
	if pin.Len() > maxPINLen {
		pin.Destroy()
		return nil, withExit(exitUsage, fmt.Errorf("--%s: a drive PIN is 1 to %d bytes", flag, maxPINLen))
	}
	return pin, nil
}

func newSedSetupCmd(a *app) *cobra.Command {
	var (
		sf      sedFlags
		kek     kekFlags
		kdf     kdfFlags
		hdr     headerFlag
		segment uint8
		only    bool
		destroy destroyConfirm
	)
	cmd := &cobra.Command{
		Use:   "setup DEVICE",
		Short: "Take a self-encrypting drive and make it a LUKS2 hw-opal volume",
		Long: `Setup does what cryptsetup 2.7's luksFormat --hw-opal does: it takes
ownership of the drive with the admin key (or proves it, if the drive is
already owned), activates the Locking SP, writes a LUKS2 header whose data
segment is locking range --range (type hw-opal-crypt, or hw-opal with
--hw-opal-only), and gives that range a key: the first 32 bytes of the new
volume key, so whoever opens a keyslot can unlock the range. The range covers
the data area and is left locked. Every byte in it is destroyed. DEVICE may
be a partition: the range then starts at the partition's offset on the disk
plus the data offset, as with cryptsetup.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := destroy.confirm(cmd, fmt.Sprintf("This will destroy every byte in the locking range of %s.", args[0])); err != nil {
				return err
			}
			if sf.simulator && hdr.path == "" {
				return withExit(exitUsage, errors.New("--simulator needs --header (the simulated medium is encrypted by the drive)"))
			}
			params, err := kdf.params()
			if err != nil {
				return err
			}
			if err := secmem.SetNonDumpable(); err != nil {
				return err
			}
			admin, err := sf.readAdminKey("admin-key-file")
			if err != nil {
				return err
			}
			defer admin.Destroy()
			k, err := kek.read(cmd.InOrStdin(), cmd.ErrOrStderr(), true)
			if err != nil {
				return err
			}
			defer k.Destroy()
			ctx := cmd.Context()
			d, err := sf.openDrive(ctx, args[0])
			if err != nil {
				return err
			}
			defer d.close()
			hdrFile, err := os.OpenFile(hdr.location(args[0]), os.O_RDWR|os.O_CREATE, 0o600)
			if err != nil {
				return fmt.Errorf("header: %w", err)
			}
			defer hdrFile.Close()
			kr, dek, err := opalvolume.Format(ctx, d.dev, hdrFile, d.size, k, admin.Bytes(), opalvolume.Options{
				Segment: segment, Only: only, DeviceOffset: d.offset,
				LUKS: keyring.FormatOptions{KDF: params, Detached: hdr.path != ""},
			})
			if err != nil {
				return err
			}
			dek.Destroy()
			defer kr.Close()
			s, err := opalvolume.Segment(kr)
			if err != nil {
				return err
			}
			a.log.Info("sed setup", "device", args[0], "segment", s.Type, "range", s.OpalSegmentNumber)
			fmt.Fprintf(cmd.OutOrStdout(), "%s: LUKS2 %s volume on locking range %d (%d bytes at offset %d), locked\n",
				args[0], s.Type, s.OpalSegmentNumber, s.OpalSegmentSize, s.Offset)
			return nil
		},
	}
	fs := cmd.Flags()
	sf.register(fs, true)
	kek.registerDirect(fs, "")
	kdf.register(fs)
	hdr.register(fs)
	fs.Uint8Var(&segment, "range", 1, "locking range (LUKS2 opal_segment_number), 1..8")
	fs.BoolVar(&only, "hw-opal-only", false, "rely on the drive's encryption alone (segment type hw-opal, no dm-crypt layer)")
	destroy.register(fs, "the data in the range")
	return cmd
}

// newSedLockCmd builds "sed unlock" (lock=false) and "sed lock".
func newSedLockCmd(a *app, lock bool) *cobra.Command {
	var (
		sf  sedFlags
		kek kekFlags
		hdr headerFlag
	)
	use, short := "unlock", "Unlock a LUKS2 hw-opal volume's locking range with a KEK"
	if lock {
		use, short = "lock", "Lock a LUKS2 hw-opal volume's locking range (the KEK proves the range key)"
	}
	cmd := &cobra.Command{
		Use:   use + " DEVICE",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := secmem.SetNonDumpable(); err != nil {
				return err
			}
			kr, err := hdr.open(args[0], true)
			if err != nil {
				return err
			}
			defer kr.Close()
			s, err := opalvolume.Segment(kr)
			if err != nil {
				return err
			}
			k, err := kek.read(cmd.InOrStdin(), cmd.ErrOrStderr(), false)
			if err != nil {
				return err
			}
			defer k.Destroy()
			ctx := cmd.Context()
			d, err := sf.openDrive(ctx, args[0])
			if err != nil {
				return err
			}
			defer d.close()
			state := "unlocked"
			if lock {
				err, state = opalvolume.LockWithKEK(ctx, d.dev, kr, k), "locked"
			} else {
				var dek *secmem.Buffer
				if dek, err = opalvolume.Unlock(ctx, d.dev, kr, k); err == nil {
					dek.Destroy()
				}
			}
			if err != nil {
				return err
			}
			a.log.Info("sed "+use, "device", args[0], "range", s.OpalSegmentNumber)
			fmt.Fprintf(cmd.OutOrStdout(), "%s: locking range %d %s\n", args[0], s.OpalSegmentNumber, state)
			return nil
		},
	}
	fs := cmd.Flags()
	sf.register(fs, false)
	kek.register(fs, "")
	hdr.register(fs)
	return cmd
}

func newSedRevertCmd(a *app) *cobra.Command {
	var (
		sf       sedFlags
		psidFile string
		destroy  destroyConfirm
	)
	cmd := &cobra.Command{
		Use:   "revert DEVICE",
		Short: "Return a drive to its factory state (all data destroyed)",
		Long: `Revert returns the whole drive to its factory state: every locking range is
crypto-erased, the Locking SP is deactivated and the SID PIN becomes the MSID
again. Prove it with the admin key (--admin-key-file) or, when that is lost,
with the PSID printed on the drive's label (--psid-file). EVERY BYTE ON THE
DRIVE IS DESTROYED.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := destroy.confirm(cmd, fmt.Sprintf("This will return %s to its factory state: EVERY BYTE ON THE DRIVE IS DESTROYED.", args[0])); err != nil {
				return err
			}
			var cred sed.Credential
			var key *secmem.Buffer
			var err error
			switch {
			case psidFile != "" && sf.adminKeyFile != "":
				return withExit(exitUsage, errors.New("--admin-key-file and --psid-file are exclusive"))
			case psidFile != "":
				key, err = readSmallKey(psidFile, "psid-file")
				cred.Authority = sed.AuthorityPSID
			default:
				key, err = sf.readAdminKey("admin-key-file or --psid-file")
				cred.Authority = sed.AuthoritySID
			}
			if err != nil {
				return err
			}
			defer key.Destroy()
			cred.PIN = key.Bytes()
			ctx := cmd.Context()
			d, err := sf.openDrive(ctx, args[0])
			if err != nil {
				return err
			}
			defer d.close()
			if err := d.dev.RevertTPer(ctx, cred); err != nil {
				return err
			}
			a.log.Warn("sed revert: drive returned to factory state", "device", args[0], "authority", cred.Authority.String())
			fmt.Fprintf(cmd.OutOrStdout(), "%s: reverted to factory state; all data destroyed\n", args[0])
			return nil
		},
	}
	fs := cmd.Flags()
	sf.register(fs, true)
	fs.StringVar(&psidFile, "psid-file", "", "file with the PSID from the drive's label")
	destroy.register(fs, "all data on the drive")
	return cmd
}
