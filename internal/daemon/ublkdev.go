package daemon

import (
	"context"

	"github.com/encblk/encblk/pkg/blockdev"
	"github.com/encblk/encblk/pkg/nbd"
)

// blockDevice is what pkg/ublk serves for v: its backend, with the
// volume's sector size as the logical block size.
//
// TODO(issue 15 item 1): this adapter from nbd.Backend goes away when
// pkg/volume and internal/backing implement blockdev.Device themselves;
// then blockDevice returns the device.
func (v *Volume) blockDevice() blockdev.Device {
	lbs := uint32(512)
	if v.vol != nil {
		lbs = uint32(v.vol.Config().SectorSize)
	}
	return backendDevice{v.backend, lbs}
}

type backendDevice struct {
	nbd.Backend
	lbs uint32
}

func (b backendDevice) Info() blockdev.Info {
	i := b.Backend.Info()
	return blockdev.Info{LogicalBlockSize: b.lbs, PhysicalBlockSize: max(i.PreferredBlock, b.lbs),
		MaxTransfer: i.MaxBlock, ReadOnly: i.ReadOnly, CanTrim: i.CanTrim, CanZero: i.CanZero,
		CanFastZero: i.CanFastZero, CanFUA: i.CanFUA, CanFlush: i.CanFlush, SerialWrites: i.SerialWrites}
}

// Zero maps the flags: blockdev's and nbd's have the same bits.
func (b backendDevice) Zero(ctx context.Context, off, n int64, f blockdev.ZeroFlags) error {
	return b.Backend.Zero(ctx, off, n, nbd.ZeroFlags(f))
}
