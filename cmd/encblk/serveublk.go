package main

import (
	"errors"
	"fmt"
	"io"

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

func init() {
	exitCodeMappers = append(exitCodeMappers, func(err error) (int, bool) {
		if errors.Is(err, ublk.ErrInUse) {
			return exitBusy, true
		}
		return 0, false
	})
}
