package ublk

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/encblk/encblk/pkg/iouring"
)

// ControlPath is the ublk driver's control device.
const ControlPath = "/dev/ublk-control"

var (
	// ErrNoDriver: the kernel has no ublk driver loaded.
	ErrNoDriver = errors.New("no ublk driver: load the kernel module ublk_drv (modprobe ublk_drv; CONFIG_BLK_DEV_UBLK, Linux 6.5 or later)")
	// ErrPermission: the control device or command needs root.
	ErrPermission = errors.New("ublk needs root (CAP_SYS_ADMIN)")
	// ErrNoDevice: no ublk device has the id asked for.
	ErrNoDevice = errors.New("no such ublk device")
)

// Control is an open /dev/ublk-control with its own io_uring (SQE128, as
// control commands are 32 bytes). Its methods are safe for concurrent use
// but run one at a time: START_DEV and END_USER_RECOVERY block until every
// queue has fetched its requests, so those queues must already be running.
type Control struct {
	mu   sync.Mutex
	f    *os.File
	ring *iouring.Ring
	wake [8]byte // the eventfd read's buffer in runCancelable (here: it must not move)
}

// OpenControl opens the control device. Its errors wrap ErrNoDriver,
// ErrPermission or iouring.ErrUnavailable when those are the cause.
func OpenControl() (*Control, error) {
	f, err := os.OpenFile(ControlPath, os.O_RDWR|syscall.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("%w (%s does not exist)", ErrNoDriver, ControlPath)
	case errors.Is(err, os.ErrPermission):
		return nil, fmt.Errorf("%w: %w", ErrPermission, err)
	case err != nil:
		return nil, fmt.Errorf("ublk: %w", err)
	}
	ring, err := iouring.New(4, iouring.SetupSQE128)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("ublk: %w", err)
	}
	c := &Control{f: f, ring: ring}
	feat, err := c.Features()
	if err != nil {
		c.Close()
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
			return nil, fmt.Errorf("%w: the loaded driver is too old (GET_FEATURES: %v)", ErrNoDriver, err)
		}
		return nil, err
	}
	if feat&FlagCmdIoctlEncode == 0 || feat&FlagUserRecovery == 0 {
		c.Close()
		return nil, fmt.Errorf("%w: the loaded driver lacks ioctl-encoded commands or user recovery (features %#x)", ErrNoDriver, feat)
	}
	return c, nil
}

// Close closes the control device.
func (c *Control) Close() error {
	c.ring.Close()
	return c.f.Close()
}

// do runs one control command and returns its result.
func (c *Control) do(nr uint32, cmd ctrlCmd, buf unsafe.Pointer) (int32, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.ring.GetSQE()
	s.Opcode = iouring.OpUringCmd
	s.Fd = int32(c.f.Fd())
	s.SetCmdOp(ctrlOp(nr))
	*(*ctrlCmd)(unsafe.Pointer(&c.ring.Cmd(s)[0])) = cmd
	var res int32
	if err := c.ring.Wait(1); err != nil {
		return 0, fmt.Errorf("ublk: control command %#x: %w", nr, err)
	}
	c.ring.Reap(func(q *iouring.CQE) { res = q.Res })
	runtime.KeepAlive(buf)
	return c.result(nr, cmd, res)
}

// doCancelable is do for a command that may wait long (START_DEV and
// END_USER_RECOVERY wait for every queue to have fetched its requests),
// cancelled if stop is closed first; it then fails with EINTR or
// ECANCELED.
func (c *Control) doCancelable(nr uint32, cmd ctrlCmd, stop <-chan struct{}) (int32, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	res, err := c.runCancelable(func(s *iouring.SQE) {
		s.Opcode = iouring.OpUringCmd
		s.Fd = int32(c.f.Fd())
		s.SetCmdOp(ctrlOp(nr))
		*(*ctrlCmd)(unsafe.Pointer(&c.ring.Cmd(s)[0])) = cmd
	}, stop)
	if err != nil {
		return 0, fmt.Errorf("ublk: control command %#x: %w", nr, err)
	}
	return c.result(nr, cmd, res)
}

// runCancelable runs the one request prep fills on the control ring and
// returns its result; if stop is closed before it completes, an
// IORING_OP_ASYNC_CANCEL interrupts it. The driver runs control commands
// on an io_uring worker thread (they sleep), where the cancellation
// interrupts the command's wait: it then completes with -EINTR (or
// -ECANCELED if it had not started). Callers hold c.mu.
func (c *Control) runCancelable(prep func(*iouring.SQE), stop <-chan struct{}) (int32, error) {
	const reqTag, wakeTag, cancelTag = 1, 2, 3
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return 0, err
	}
	s := c.ring.GetSQE()
	prep(s)
	s.UserData = reqTag
	w := c.ring.GetSQE()
	w.Opcode = iouring.OpRead
	w.Fd = int32(efd)
	w.Addr = uint64(uintptr(unsafe.Pointer(&c.wake[0])))
	w.Len = 8
	w.UserData = wakeTag
	// The eventfd is written when stop is closed or the request is done,
	// so that its read completes in either case. The goroutine closes it
	// after its write: closed here, a write after an early return (ring
	// error) could land on a descriptor reused by then.
	finished := make(chan struct{})
	go func() {
		defer unix.Close(efd)
		select {
		case <-stop:
		case <-finished:
		}
		one := [8]byte{1}
		for {
			if _, err := unix.Write(efd, one[:]); err != unix.EINTR {
				return
			}
		}
	}()
	var res int32
	var done, woken bool
	cancels := 0
	for !done || !woken || cancels > 0 {
		if err := c.ring.Wait(1); err != nil {
			if !done {
				close(finished)
			}
			// Left in flight on a ring that keeps working: the read's
			// buffer is c.wake, the eventfd stays written.
			return 0, err
		}
		c.ring.Reap(func(q *iouring.CQE) {
			switch q.UserData {
			case reqTag:
				res, done = q.Res, true
				close(finished)
			case wakeTag:
				woken = true
				if !done {
					x := c.ring.GetSQE()
					x.Opcode = iouring.OpAsyncCancel
					x.Addr = reqTag
					x.UserData = cancelTag
					cancels++
				}
			case cancelTag:
				cancels--
			}
		})
	}
	return res, nil
}

// result turns a control command's result into the error callers get.
func (c *Control) result(nr uint32, cmd ctrlCmd, res int32) (int32, error) {
	if res < 0 {
		errno := syscall.Errno(-res)
		if errno == unix.EPERM || errno == unix.EACCES {
			return res, fmt.Errorf("%w: %s: %w", ErrPermission, cmdName(nr), errno)
		}
		if errno == unix.ENODEV && nr != cmdAddDev {
			return res, fmt.Errorf("%w: %s dev %d: %w", ErrNoDevice, cmdName(nr), cmd.DevID, errno)
		}
		return res, fmt.Errorf("ublk: %s dev %d: %w", cmdName(nr), int32(cmd.DevID), errno)
	}
	return res, nil
}

func cmdName(nr uint32) string {
	switch nr {
	case cmdGetDevInfo:
		return "GET_DEV_INFO"
	case cmdAddDev:
		return "ADD_DEV"
	case cmdDelDev:
		return "DEL_DEV"
	case cmdDelDevAsync:
		return "DEL_DEV_ASYNC"
	case cmdStartDev:
		return "START_DEV"
	case cmdStopDev:
		return "STOP_DEV"
	case cmdSetParams:
		return "SET_PARAMS"
	case cmdGetParams:
		return "GET_PARAMS"
	case cmdStartRecovery:
		return "START_USER_RECOVERY"
	case cmdEndRecovery:
		return "END_USER_RECOVERY"
	case cmdGetFeatures:
		return "GET_FEATURES"
	}
	return fmt.Sprintf("command %#x", nr)
}

// Features asks the driver which UBLK_F_* flags it supports.
func (c *Control) Features() (uint64, error) {
	var f uint64
	_, err := c.do(cmdGetFeatures, ctrlCmd{DevID: ^uint32(0), QueueID: ^uint16(0), Len: 8,
		Addr: uint64(uintptr(unsafe.Pointer(&f)))}, unsafe.Pointer(&f))
	return f, err
}

// AddDev creates a device from info (DevID ^0 picks a free id) and returns
// what the kernel made of it: its id, and the queue count clamped to the
// CPUs.
func (c *Control) AddDev(info DevInfo) (DevInfo, error) {
	_, err := c.do(cmdAddDev, ctrlCmd{DevID: info.DevID, QueueID: ^uint16(0),
		Len: uint16(unsafe.Sizeof(info)), Addr: uint64(uintptr(unsafe.Pointer(&info)))}, unsafe.Pointer(&info))
	return info, err
}

// DevInfo reports device id's state.
func (c *Control) DevInfo(id uint32) (DevInfo, error) {
	var info DevInfo
	_, err := c.do(cmdGetDevInfo, ctrlCmd{DevID: id, QueueID: ^uint16(0),
		Len: uint16(unsafe.Sizeof(info)), Addr: uint64(uintptr(unsafe.Pointer(&info)))}, unsafe.Pointer(&info))
	return info, err
}

func (c *Control) setParams(id uint32, p params) error {
	p.Len = uint32(unsafe.Sizeof(p))
	_, err := c.do(cmdSetParams, ctrlCmd{DevID: id, QueueID: ^uint16(0),
		Len: uint16(unsafe.Sizeof(p)), Addr: uint64(uintptr(unsafe.Pointer(&p)))}, unsafe.Pointer(&p))
	return err
}

// simple runs a command that takes only the device id and data[0].
func (c *Control) simple(nr, id uint32, data0 uint64) error {
	_, err := c.do(nr, ctrlCmd{DevID: id, QueueID: ^uint16(0), Data: [2]uint64{data0}}, nil)
	return err
}

// startDev runs START_DEV (or, recovering, END_USER_RECOVERY) with the
// server's pid; closing stop cancels it (see doCancelable).
func (c *Control) startDev(nr, id uint32, pid uint64, stop <-chan struct{}) error {
	_, err := c.doCancelable(nr, ctrlCmd{DevID: id, QueueID: ^uint16(0), Data: [2]uint64{pid}}, stop)
	return err
}

func (c *Control) openCharDev(id uint32) (*os.File, error) { return openCharDev(id) }

func (c *Control) newRing(_ *queue, entries uint32) (ring, error) { return iouring.New(entries, 0) }

// StopDev removes /dev/ublkbN; the queues' commands complete with abort.
func (c *Control) StopDev(id uint32) error { return c.simple(cmdStopDev, id, 0) }

// DelDev deletes device id. It does not wait for the last opener of the
// block device to close it (DEL_DEV_ASYNC) when the driver has that
// command; the synchronous DEL_DEV would.
func (c *Control) DelDev(id uint32) error {
	err := c.simple(cmdDelDevAsync, id, 0)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
		err = c.simple(cmdDelDev, id, 0)
	}
	return err
}
