package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/encblk/encblk/internal/backing"
	"github.com/encblk/encblk/internal/daemon"
	"github.com/encblk/encblk/pkg/volume"
)

// Exit statuses for the serving packages' sentinel errors.
func init() {
	exitCodeMappers = append(exitCodeMappers, func(err error) (int, bool) {
		switch {
		case errors.Is(err, backing.ErrBusy), errors.Is(err, backing.ErrInUse), errors.Is(err, volume.ErrLocked):
			return exitBusy, true
		case errors.Is(err, backing.ErrLUKSHeader), errors.Is(err, daemon.ErrTooSmall):
			return exitCorrupt, true
		}
		return 0, false
	})
}

// targetFlags name the server of a volume: TARGET is a backing path,
// served or not; --control names a control socket explicitly.
type targetFlags struct {
	control string
}

func (f *targetFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.control, "control", "", "control socket of the server (default: found from the backing)")
}

// client finds the server of target. With --control and no target it
// addresses the server's only volume. It fails with an error wrapping
// daemon.ErrNotServed when nobody serves the backing.
func (f *targetFlags) client(ctx context.Context, target string) (*daemon.Client, string, error) {
	if f.control != "" {
		ref := ""
		if target != "" {
			id, err := daemon.VolumeID(target)
			if err != nil {
				return nil, "", err
			}
			ref = id
		}
		return daemon.NewClient(f.control), ref, nil
	}
	if target == "" {
		return nil, "", withExit(exitUsage, errors.New("name a backing (TARGET) or --control SOCK"))
	}
	c, id, err := daemon.ClientFor(ctx, target)
	if errors.Is(err, daemon.ErrNotServed) {
		// A server whose control socket is gone still holds the lock.
		if f, oerr := backing.Open(target, backing.Options{ReadOnly: true}); oerr != nil {
			if errors.Is(oerr, backing.ErrBusy) {
				return nil, "", fmt.Errorf("%s is served by a process whose control socket cannot be reached (use --control): %w", target, backing.ErrBusy)
			}
		} else {
			f.Close()
		}
	}
	return c, id, err
}
