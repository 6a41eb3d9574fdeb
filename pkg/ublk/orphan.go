package ublk

import (
	"errors"
	"fmt"
)

// StateName is a device state's name: "dead" (added and not started, or
// stopped), "live", "quiesced" (its server died; waiting for a recovery)
// or "fail-io" (its server died; I/O fails until a recovery).
func StateName(state uint16) string {
	switch state {
	case StateDead:
		return "dead"
	case StateLive:
		return "live"
	case StateQuiesced:
		return "quiesced"
	case stateFailIO:
		return "fail-io"
	}
	return fmt.Sprintf("state %d", state)
}

// stateFailIO is UBLK_S_DEV_FAIL_IO (6.11+: a device with
// UBLK_F_USER_RECOVERY_FAIL_IO whose server died).
const stateFailIO = 3

// Served reports whether info's device has a live server: started and its
// server process alive.
func (info DevInfo) Served() bool {
	return info.State == StateLive && info.ServerPID > 0 && processAlive(int(info.ServerPID))
}

// List reports every ublk device there is (GET_DEV_INFO of each in
// /sys/class/ublk-char). Devices removed meanwhile are left out.
func (c *Control) List() ([]DevInfo, error) {
	var infos []DevInfo
	for _, id := range listDevices() {
		info, err := c.DevInfo(id)
		if errors.Is(err, ErrNoDevice) {
			continue
		}
		if err != nil {
			return nil, err
		}
		infos = append(infos, info)
	}
	return infos, nil
}

// Exist reports whether any ublk device exists (no root needed).
func Exist() bool { return len(listDevices()) > 0 }

// Delete removes device id whose server is gone (STOP_DEV, which fails
// what the block device still has queued, then DEL_DEV). It refuses a
// device with a live server (ErrInUse: stop that server instead) and
// reports ErrNoDevice if there is no such device.
func (c *Control) Delete(id uint32) error {
	info, err := c.DevInfo(id)
	if err != nil {
		return err
	}
	if info.Served() {
		return fmt.Errorf("/dev/ublkb%d: %w (pid %d): stop that server instead", id, ErrInUse, info.ServerPID)
	}
	if err := c.StopDev(id); err != nil {
		return err
	}
	return c.DelDev(id)
}
