package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/encblk/encblk/pkg/ublk"
)

// UblkConfig asks the Daemon to serve every volume as a ublk block device
// (/dev/ublkbN) too.
type UblkConfig struct {
	// Queues and Depth: see ublk.Options (0: the defaults).
	Queues, Depth int
	// ID creates the device with this number (ublk.AutoID: any). With
	// Recover it names the device to recover, which must exist, wait for
	// a server and belong to the volume. Both need exactly one volume.
	// Without either, a device of the same volume that waits for a server
	// (its server was killed) is recovered, and a new one created if none.
	ID      int
	Recover bool
}

// ublkStopGrace is how long Stop lets requests waiting on a locked volume
// wait before failing them, so that the kernel can remove the device.
const ublkStopGrace = 5 * time.Second

// ublkSet is the ublk devices of a Daemon's volumes.
type ublkSet struct {
	mu   sync.Mutex
	devs map[*Volume]*ublk.Device
}

// ublkOwner is the tag the kernel keeps with a volume's device so that a
// restarted server recovers its own device and no other: derived from the
// LUKS UUID, or for a plain backing from its VolumeID.
func (v *Volume) ublkOwner() uint64 {
	if v.kr != nil {
		return ublkOwner("uuid " + v.kr.UUID())
	}
	return ublkOwner("id " + v.id)
}

func ublkOwner(name string) uint64 {
	h := sha256.Sum256([]byte("encblk ublk owner\x00" + name))
	return binary.LittleEndian.Uint64(h[:8])
}

// UblkOrphan is a ublk device of a volume whose server is gone (killed):
// the kernel keeps it, and its I/O waits, until a server recovers it or
// it is deleted.
type UblkOrphan struct {
	ID     int    `json:"id"`
	Device string `json:"device"`
	// State is the kernel's: "quiesced" (waiting for a recovery), "dead"
	// (never started or stopped: only deleting it helps), ...
	State     string `json:"state"`
	ServerPID int    `json:"server_pid,omitempty"` // the dead server's
	// Recoverable: `encblk serve --ublk` of the volume takes it over.
	Recoverable bool `json:"recoverable"`
}

// ublkOrphans lists the ublk devices of the volume with the LUKS UUID
// uuid that no live server serves. It needs the control device (root);
// without it, or without ublk devices, it finds none.
func ublkOrphans(uuid string) []UblkOrphan {
	if !ublk.Exist() {
		return nil
	}
	ctl, err := ublk.OpenControl()
	if err != nil {
		return nil
	}
	defer ctl.Close()
	infos, err := ctl.List()
	if err != nil {
		return nil
	}
	owner := ublkOwner("uuid " + uuid)
	var orphans []UblkOrphan
	for _, info := range infos {
		if info.ServerFlags != owner || info.Served() {
			continue
		}
		orphans = append(orphans, UblkOrphan{ID: int(info.DevID), Device: fmt.Sprintf("/dev/ublkb%d", info.DevID),
			State: ublk.StateName(info.State), ServerPID: int(info.ServerPID),
			Recoverable: info.State != ublk.StateDead && info.Flags&ublk.FlagUserRecovery != 0})
	}
	return orphans
}

func (c *UblkConfig) check(vols int) error {
	if (c.ID != ublk.AutoID || c.Recover) && vols != 1 {
		return fmt.Errorf("a ublk device id needs exactly one volume (have %d)", vols)
	}
	return nil
}

// startUblk creates (or recovers) each volume's device. On error the
// devices already started are stopped. A volume that starts locked holds
// up the kernel's partition scan, and so startUblk, until it is unlocked
// (the control sockets already listen) or ctx is cancelled (SIGTERM).
func (d *Daemon) startUblk(ctx context.Context) error {
	c := d.cfg.Ublk
	if c == nil {
		return nil
	}
	d.ublk.devs = map[*Volume]*ublk.Device{}
	for _, v := range d.cfg.Volumes {
		dev, err := ublk.Start(ctx, v.Device(), ublk.Options{Queues: c.Queues, Depth: c.Depth,
			ID: c.ID, Recover: c.Recover, Owner: v.ublkOwner()})
		if err != nil {
			d.stopUblk()
			return fmt.Errorf("%s: %w", v.spec.Backing, err)
		}
		d.ublk.mu.Lock()
		d.ublk.devs[v] = dev
		d.ublk.mu.Unlock()
		how := "created"
		if dev.Recovered() {
			how = "recovered"
		}
		// The request buffers are locked in RAM outside the Go heap (and
		// serve's memory limit): say how much.
		d.log.Info("ublk device "+how, "backing", v.spec.Backing, "device", dev.Path(),
			"queues", dev.Queues(), "depth", dev.Depth(), "locked_buffers_mib", dev.LockedBytes()>>20)
		go func() {
			<-dev.Done()
			if err := dev.Err(); err != nil {
				d.log.Error("ublk device stopped", "device", dev.Path(), "err", err)
			}
		}()
	}
	return nil
}

// stopUblk removes every device (STOP_DEV, DEL_DEV).
func (d *Daemon) stopUblk() {
	d.ublk.mu.Lock()
	devs := d.ublk.devs
	d.ublk.devs = nil
	d.ublk.mu.Unlock()
	for v, dev := range devs {
		if err := dev.Stop(ublkStopGrace); err != nil {
			d.log.Error("removing ublk device", "backing", v.spec.Backing, "device", dev.Path(), "err", err)
			continue
		}
		d.log.Info("ublk device removed", "backing", v.spec.Backing, "device", dev.Path())
	}
}

// UblkDevices maps each backing served over ublk to its block device.
func (d *Daemon) UblkDevices() map[string]string {
	d.ublk.mu.Lock()
	defer d.ublk.mu.Unlock()
	m := map[string]string{}
	for v, dev := range d.ublk.devs {
		m[v.spec.Backing] = dev.Path()
	}
	return m
}

// volumeStatus is v.Status with the daemon's view of it added.
func (d *Daemon) volumeStatus(v *Volume) VolumeStatus {
	s := v.Status()
	d.ublk.mu.Lock()
	if dev := d.ublk.devs[v]; dev != nil {
		s.Ublk = dev.Path()
		st := dev.Stats()
		s.UblkStats = &st
	}
	d.ublk.mu.Unlock()
	return s
}
