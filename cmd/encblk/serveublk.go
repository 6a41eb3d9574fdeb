package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/spf13/pflag"

	"github.com/encblk/encblk/internal/daemon"
	"github.com/encblk/encblk/pkg/ublk"
)

// ublkFlags are serve's ublk flags.
type ublkFlags struct {
	on      bool
	queues  int
	depth   int
	id      int
	recover int
}

func (u *ublkFlags) register(fs *pflag.FlagSet) {
	fs.BoolVar(&u.on, "ublk", false, "also serve each backing as a local block device /dev/ublkbN (Linux ublk_drv; root); without --listen, NBD is then off")
	fs.IntVar(&u.queues, "ublk-queues", 0, "ublk hardware queues, each with its own thread and io_uring (0: one per CPU)")
	fs.IntVar(&u.depth, "ublk-depth", ublk.DefaultDepth, "requests in flight per ublk queue (1-4096)")
	fs.IntVar(&u.id, "ublk-id", ublk.AutoID, "create /dev/ublkbN with this N (default: a free one, or the device a killed server of this volume left)")
	fs.IntVar(&u.recover, "ublk-recover", ublk.AutoID, "take over /dev/ublkbN, N given, whose server was killed: it must exist and belong to this volume")
}

// config is the daemon's ublk configuration, nil without --ublk.
func (u *ublkFlags) config() (*daemon.UblkConfig, error) {
	if !u.on {
		if u.id != ublk.AutoID || u.recover != ublk.AutoID {
			return nil, withExit(exitUsage, errors.New("--ublk-id and --ublk-recover need --ublk"))
		}
		return nil, nil
	}
	if u.id != ublk.AutoID && u.recover != ublk.AutoID {
		return nil, withExit(exitUsage, errors.New("--ublk-id and --ublk-recover exclude each other"))
	}
	if u.depth < 1 || u.depth > 4096 {
		return nil, withExit(exitUsage, fmt.Errorf("--ublk-depth %d: out of range 1-4096", u.depth))
	}
	if u.queues < 0 || u.queues > 4096 {
		return nil, withExit(exitUsage, fmt.Errorf("--ublk-queues %d: out of range 0-4096", u.queues))
	}
	c := &daemon.UblkConfig{Queues: u.queues, Depth: u.depth, ID: u.id}
	if u.recover != ublk.AutoID {
		if u.recover < 0 {
			return nil, withExit(exitUsage, fmt.Errorf("--ublk-recover %d: not a device number", u.recover))
		}
		c.ID, c.Recover = u.recover, true
	}
	return c, nil
}

// printUblk prints "BACKING: /dev/ublkbN" for each device served.
func printUblk(w io.Writer, d *daemon.Daemon) {
	for backing, dev := range d.UblkDevices() {
		fmt.Fprintf(w, "%s: %s\n", backing, dev)
	}
}

// printUblkOrphans prints a status line for each of v's ublk devices whose
// server is gone, with what to do about it.
func printUblkOrphans(w io.Writer, v daemon.VolumeStatus) {
	for _, o := range v.UblkOrphans {
		how := fmt.Sprintf("`encblk ublk delete %d` removes it", o.ID)
		if o.Recoverable {
			how = fmt.Sprintf("`encblk serve --ublk %s` recovers it (its I/O waits until then), %s", v.Backing, how)
		}
		pid := ""
		if o.ServerPID > 0 {
			pid = fmt.Sprintf(", server pid %d gone", o.ServerPID)
		}
		fmt.Fprintf(w, "ublk:\t%s orphaned (%s%s): %s\n", o.Device, o.State, pid, how)
	}
}

func init() {
	subcommands = append(subcommands, newUblkCmd)
	exitCodeMappers = append(exitCodeMappers, func(err error) (int, bool) {
		if errors.Is(err, ublk.ErrInUse) {
			return exitBusy, true
		}
		return 0, false
	})
}

func newUblkCmd(*app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ublk",
		Short: "Manage ublk devices left by a killed server",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "delete ID",
		Short: "Remove /dev/ublkbID, whose server was killed (its pending and later I/O fail)",
		Long: `Delete removes the ublk device /dev/ublkbID that a killed encblk serve left
("orphaned" in encblk status): STOP_DEV, which fails the I/O the device
holds and any that follows (a filesystem mounted on it sees I/O errors),
then DEL_DEV. To keep its I/O, restart the server instead (encblk serve
--ublk BACKING recovers the device). A device whose server runs is
refused (exit status 3): stop that server. Needs root.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseUint(args[0], 10, 20)
			if err != nil {
				return withExit(exitUsage, fmt.Errorf("%q is not a ublk device number", args[0]))
			}
			ctl, err := ublk.OpenControl()
			if err != nil {
				return err
			}
			defer ctl.Close()
			if err := ctl.Delete(uint32(id)); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted /dev/ublkb%d\n", id)
			return nil
		},
	})
	return cmd
}
