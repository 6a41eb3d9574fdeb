package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/encblk/encblk/internal/secmem"
	"github.com/encblk/encblk/pkg/sed"
	"github.com/encblk/encblk/pkg/sed/sedsim"
)

// ataFlags are the flags of the "sed ata" commands.
type ataFlags struct {
	simulator    bool
	powerCycle   bool
	passwordFile string
	master       bool
}

func (f *ataFlags) register(fs *pflag.FlagSet, password bool) {
	fs.BoolVar(&f.simulator, "simulator", false, "DEVICE is a file holding a simulated ATA drive (testing and demos)")
	fs.BoolVar(&f.powerCycle, "simulator-power-cycle", false, "power-cycle the simulated drive first")
	_ = fs.MarkHidden("simulator")
	_ = fs.MarkHidden("simulator-power-cycle")
	if password {
		fs.StringVar(&f.passwordFile, "password-file", "", "file with the password (1..32 bytes, every byte counts)")
		fs.BoolVar(&f.master, "master", false, "the password is the master password (default: the user password)")
	}
}

// which is the password --master selects.
func (f *ataFlags) which() sed.ATAPassword {
	if f.master {
		return sed.ATAMasterPassword
	}
	return sed.ATAUserPassword
}

// readPassword reads --password-file into protected memory.
func (f *ataFlags) readPassword() (*secmem.Buffer, error) {
	if f.passwordFile == "" {
		return nil, withExit(exitUsage, errors.New("--password-file is required"))
	}
	if err := secmem.SetNonDumpable(); err != nil {
		return nil, err
	}
	return readSmallKey(f.passwordFile, "password-file")
}

// open opens DEVICE for ATA security commands: a SATA disk through ATA
// PASS-THROUGH, or with --simulator a sedsim ATA image whose state is kept
// in DEVICE.sedsim-ata. Anything else is refused before a command is sent.
func (f *ataFlags) open(ctx context.Context, path string) (sed.ATASecurityDevice, func() error, error) {
	if f.simulator {
		sim, err := sedsim.OpenATA(path, path+".sedsim-ata", nil)
		if err != nil {
			return sed.ATASecurityDevice{}, nil, err
		}
		if f.powerCycle {
			if err := sim.PowerCycle(); err != nil {
				sim.Close()
				return sed.ATASecurityDevice{}, nil, err
			}
		}
		return sed.ATASecurityDevice{C: sim}, sim.Close, nil
	}
	if f.powerCycle {
		return sed.ATASecurityDevice{}, nil, withExit(exitUsage, errors.New("--simulator-power-cycle needs --simulator"))
	}
	o, err := openWholeDisk(path)
	if err != nil {
		return sed.ATASecurityDevice{}, nil, err
	}
	c, ok := o.Transport.(sed.ATACommander)
	if !ok || o.Kind != sed.KindATA {
		o.Close()
		return sed.ATASecurityDevice{}, nil, fmt.Errorf("%s: %w: ATA Security needs a SATA disk (this is a %s device)", path, sed.ErrNotSupported, o.Kind)
	}
	return sed.ATASecurityDevice{C: c}, o.Close, nil
}

func newSedATACmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ata",
		Short: "ATA Security feature set of SATA drives without Opal",
		Long: `Commands for the ATA Security feature set (ACS-3) of SATA drives: a user
password that locks the whole drive at every power-on, a master password for
recovery, freeze lock, and secure erase. Passwords are read from files only
(1 to 32 bytes; use random bytes, not a human password). erase destroys all
data and asks for a typed YES unless --batch-mode (or --yes-destroy-data).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newSedATAStatusCmd(a))
	for _, op := range ataOps {
		cmd.AddCommand(newSedATAOpCmd(a, op))
	}
	return cmd
}

func newSedATAStatusCmd(a *app) *cobra.Command {
	var (
		f      ataFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "status DEVICE",
		Short: "Show the drive's ATA security state (IDENTIFY DEVICE)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dev, closeFn, err := f.open(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer closeFn()
			st, err := dev.Status(cmd.Context())
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), st)
			}
			printATAStatus(cmd.OutOrStdout(), args[0], st)
			return nil
		},
	}
	f.register(cmd.Flags(), false)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printATAStatus(w io.Writer, name string, s sed.ATASecurity) {
	state := "no password set"
	switch {
	case s.Locked:
		state = "locked"
	case s.Enabled:
		state = "password set, unlocked"
	}
	if s.Frozen {
		state += ", frozen"
	}
	if s.CountExpired {
		state += ", attempt counter expired (power-cycle the drive)"
	}
	level := "high"
	if s.MasterMaximum {
		level = "maximum"
	}
	fmt.Fprintf(w, "%s: ATA security %s\n", name, state)
	fmt.Fprintf(w, "  security level %s, master password identifier 0x%04x\n", level, s.MasterIdentifier)
	fmt.Fprintf(w, "  enhanced erase %s, erase ~%d min, enhanced erase ~%d min\n", yn(s.EnhancedErase), s.EraseMinutes, s.EnhancedMinutes)
}

// ataOp is one "sed ata" command that changes the drive.
type ataOp struct {
	use, short, long, done string
	password, destroy      bool
	run                    func(ctx context.Context, dev sed.ATASecurityDevice, f *ataFlags, pw []byte, o ataOpts) error
}

// ataOpts are the per-command flags.
type ataOpts struct{ maximum, enhanced bool }

var ataOps = []ataOp{
	{use: "set-password", short: "Set the user password (the drive locks at the next power-on) or the master password",
		long: `set-password sets the user password, which enables ATA security: from the
next power-on the drive refuses all data access until "sed ata unlock".
With --master it sets the master password instead (keep it: with security
level high it unlocks the drive, with --maximum it can only erase it).`,
		done: "password set", password: true,
		run: func(ctx context.Context, dev sed.ATASecurityDevice, f *ataFlags, pw []byte, o ataOpts) error {
			return dev.SetPassword(ctx, f.which(), pw, o.maximum)
		}},
	{use: "unlock", short: "Unlock a locked drive until its next power-off",
		done: "unlocked", password: true,
		run: func(ctx context.Context, dev sed.ATASecurityDevice, f *ataFlags, pw []byte, _ ataOpts) error {
			return dev.Unlock(ctx, f.which(), pw)
		}},
	{use: "disable", short: "Remove the user password (ATA security off)",
		done: "password removed, security disabled", password: true,
		run: func(ctx context.Context, dev sed.ATASecurityDevice, f *ataFlags, pw []byte, _ ataOpts) error {
			return dev.DisablePassword(ctx, f.which(), pw)
		}},
	{use: "freeze", short: "Refuse every security command until the next power cycle",
		done: "security frozen until the next power cycle",
		run: func(ctx context.Context, dev sed.ATASecurityDevice, _ *ataFlags, _ []byte, _ ataOpts) error {
			return dev.Freeze(ctx)
		}},
	{use: "erase", short: "Secure-erase the whole drive (ALL DATA DESTROYED)",
		long: `erase runs SECURITY ERASE PREPARE and SECURITY ERASE UNIT with the user (or
--master) password: the drive erases all user data (--enhanced: the vendor's
method, on a self-encrypting drive a media key change) and removes the user
password. EVERY BYTE ON THE DRIVE IS DESTROYED. The drive must have a user
password (set-password first). It may take as long as "status" says.`,
		done: "erased; the user password is removed", password: true, destroy: true,
		run: func(ctx context.Context, dev sed.ATASecurityDevice, f *ataFlags, pw []byte, o ataOpts) error {
			return dev.Erase(ctx, f.which(), pw, o.enhanced)
		}},
}

func newSedATAOpCmd(a *app, op ataOp) *cobra.Command {
	var (
		f       ataFlags
		o       ataOpts
		destroy destroyConfirm
	)
	cmd := &cobra.Command{
		Use:   op.use + " DEVICE",
		Short: op.short,
		Long:  op.long,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if op.destroy {
				if err := destroy.confirm(cmd, fmt.Sprintf("This will erase %s: all data on the drive is destroyed.", args[0])); err != nil {
					return err
				}
			}
			var pw []byte
			if op.password {
				buf, err := f.readPassword()
				if err != nil {
					return err
				}
				defer buf.Destroy()
				pw = buf.Bytes()
			}
			ctx := cmd.Context()
			dev, closeFn, err := f.open(ctx, args[0])
			if err != nil {
				return err
			}
			defer closeFn()
			if err := op.run(ctx, dev, &f, pw, o); err != nil {
				hint, wrongKey := ataHint(ctx, dev, op.use, err)
				err = fmt.Errorf("%s: %w%s", args[0], err, hint)
				if wrongKey {
					return withExit(exitWrongKey, err)
				}
				return err
			}
			a.log.Info("sed ata "+op.use, "device", args[0], "master", f.master)
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", args[0], op.done)
			return nil
		},
	}
	fs := cmd.Flags()
	f.register(fs, op.password)
	switch op.use {
	case "set-password":
		fs.BoolVar(&o.maximum, "maximum", false, "security level maximum: the master password can only erase, not unlock")
	case "erase":
		fs.BoolVar(&o.enhanced, "enhanced", false, "enhanced security erase")
		destroy.register(fs, "all data on the drive")
	}
	return cmd
}

// ataHint says, after a command the drive aborted, what its security
// state is: a wrong password and a frozen or expired drive look the same
// on the wire (a real drive's abort carries no reason: ATA status ERR,
// error ABRT). When the state leaves only a wrong password to explain an
// aborted unlock or disable, it says so and wrongKey is true.
func ataHint(ctx context.Context, dev sed.ATASecurityDevice, op string, cause error) (hint string, wrongKey bool) {
	st, err := dev.Status(ctx)
	switch {
	case err != nil:
		return "", false
	case st.CountExpired:
		return " (the attempt counter has expired: power-cycle the drive)", false
	case st.Frozen:
		return " (security is frozen until the next power cycle)", false
	case errors.Is(cause, sed.ErrATAAborted) && op == "unlock" && st.Locked,
		errors.Is(cause, sed.ErrATAAborted) && op == "disable" && st.Enabled && !st.Locked:
		return " (wrong password)", true
	case st.Locked:
		return " (the drive is locked)", false
	case !st.Enabled:
		return " (no user password is set)", false
	}
	return "", false
}
