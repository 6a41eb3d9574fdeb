package ublk

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/encblk/encblk/pkg/blockdev"
)

// Defaults for Options.
const (
	DefaultDepth    = 128
	DefaultMaxIO    = 512 << 10
	AutoID          = -1 // Options.ID: let the kernel pick, or recover ours
	recoveryTimeout = 30 * time.Second
)

// startTimeout bounds START_DEV (END_USER_RECOVERY) while no request has
// reached a queue: the kernel waits for every tag's FETCH_REQ first, and
// if one never counts (a bug, or a driver that dropped it) it would wait
// forever. A request arriving (the partition scan) means the queues are
// ready: what follows may wait as long as the volume is locked.
var startTimeout = 60 * time.Second

// driver is what a Device needs of ublk_drv: *Control, or a test's fake.
type driver interface {
	DevInfo(id uint32) (DevInfo, error)
	AddDev(info DevInfo) (DevInfo, error)
	setParams(id uint32, p params) error
	simple(nr, id uint32, data0 uint64) error
	startDev(nr, id uint32, pid uint64, stop <-chan struct{}) error
	StopDev(id uint32) error
	DelDev(id uint32) error
	openCharDev(id uint32) (*os.File, error)
	newRing(q *queue, entries uint32) (ring, error)
	Close() error
}

var (
	// ErrNotOwner: the device asked to recover serves another volume.
	ErrNotOwner = errors.New("ublk device belongs to another volume")
	// ErrInUse: the device has a live server.
	ErrInUse = errors.New("ublk device is served by another process")
	// ErrOptions: Options out of range.
	ErrOptions = errors.New("invalid ublk options")
)

// Options configure Start.
type Options struct {
	// Queues is the number of hardware queues, each with its own ring and
	// thread (0: one per CPU; the kernel clamps it to the CPU count).
	Queues int
	// Depth is each queue's depth, 1 to 4096 (0: DefaultDepth).
	Depth int
	// MaxIO is the largest request in bytes (0: DefaultMaxIO); each tag
	// has a buffer of this size.
	MaxIO int
	// ID is the device number to create, or AutoID.
	ID int
	// Recover: the device ID (which must exist) is taken over after its
	// server died instead of created. With ID AutoID, Start recovers a
	// device of the same Owner that waits for a server, if there is one,
	// and creates one otherwise.
	Recover bool
	// Owner identifies the volume served (the kernel keeps it in the
	// device's ublksrv_flags): recovery refuses a device of another owner.
	Owner uint64
}

func (o *Options) fill() error {
	if o.Queues == 0 {
		o.Queues = runtime.NumCPU()
	}
	if o.Depth == 0 {
		o.Depth = DefaultDepth
	}
	if o.MaxIO == 0 {
		o.MaxIO = DefaultMaxIO
	}
	switch {
	case o.Depth < 1 || o.Depth > maxQueueDepth:
		return fmt.Errorf("%w: queue depth %d out of range 1..%d", ErrOptions, o.Depth, maxQueueDepth)
	case o.Queues < 1 || o.Queues > 4096:
		return fmt.Errorf("%w: %d queues out of range 1..4096", ErrOptions, o.Queues)
	case o.MaxIO < 4096 || o.MaxIO > 1<<20 || o.MaxIO%4096 != 0:
		return fmt.Errorf("%w: max I/O %d bytes: want a multiple of 4096 up to 1 MiB", ErrOptions, o.MaxIO)
	case o.ID < AutoID || o.ID >= 1<<20:
		return fmt.Errorf("%w: device id %d out of range 0..%d", ErrOptions, o.ID, 1<<20-1)
	case o.Recover && o.ID == AutoID:
		return fmt.Errorf("%w: recovery needs a device id", ErrOptions)
	}
	return nil
}

// Device is a served ublk device.
type Device struct {
	ctl       driver
	info      DevInfo
	recovered bool
	cdev      *os.File
	queues    []*queue
	cancel    context.CancelFunc // gives up on I/O still waiting at Stop
	wg        sync.WaitGroup
	errMu     sync.Mutex
	err       error
	done      chan struct{}
	stopOnce  sync.Once
	stopErr   error
}

// ID is the device number N of /dev/ublkbN.
func (d *Device) ID() int { return int(d.info.DevID) }

// Path is the block device, /dev/ublkbN.
func (d *Device) Path() string { return "/dev/ublkb" + strconv.Itoa(d.ID()) }

// LockedBytes is the memory the device's request buffers keep locked in
// RAM (each tag has one of the largest request's size), outside the Go
// heap and its memory limit.
func (d *Device) LockedBytes() int64 {
	return int64(d.info.NrHWQueues) * int64(d.info.QueueDepth) * int64(d.info.MaxIOBufBytes)
}

// Recovered reports whether Start took over a device whose server had died.
func (d *Device) Recovered() bool { return d.recovered }

// Queues and Depth are the device's geometry as the kernel accepted it.
func (d *Device) Queues() int { return int(d.info.NrHWQueues) }
func (d *Device) Depth() int  { return int(d.info.QueueDepth) }

// Done is closed when every queue has stopped (after Stop, or when the
// device was removed behind the server's back); Err then says why.
func (d *Device) Done() <-chan struct{} { return d.done }

// Err is the first queue error, if any, once Done is closed.
func (d *Device) Err() error {
	d.errMu.Lock()
	defer d.errMu.Unlock()
	return d.err
}

// Start serves dev as a ublk block device: it creates the device (or
// recovers one, see Options.Recover), starts a queue per hardware queue
// and returns once /dev/ublkbN exists and takes I/O. dev's logical block
// size becomes the device's (at least 512, at most the page size).
//
// The kernel reads the partition table before START_DEV returns; if dev
// makes those reads wait (a locked volume), so does Start. Cancelling ctx
// then fails them, and Start returns ctx's error.
func Start(ctx context.Context, dev blockdev.Device, opts Options) (*Device, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	ctl, err := OpenControl()
	if err != nil {
		return nil, err
	}
	d, err := start(ctx, ctl, dev, opts)
	if err != nil {
		ctl.Close()
		return nil, err
	}
	return d, nil
}

func start(ctx context.Context, ctl driver, dev blockdev.Device, opts Options) (*Device, error) {
	info, recovering, err := findOrAdd(ctl, dev, opts)
	if err != nil {
		return nil, err
	}
	d := &Device{ctl: ctl, info: info, recovered: recovering, done: make(chan struct{})}
	fail := func(err error) (*Device, error) {
		d.teardown(!recovering)
		return nil, err
	}
	if !recovering {
		p, err := deviceParams(dev, int(info.MaxIOBufBytes))
		if err != nil {
			return fail(err)
		}
		if err := ctl.setParams(info.DevID, p); err != nil {
			return fail(err)
		}
	}
	if d.cdev, err = ctl.openCharDev(info.DevID); err != nil {
		return fail(err)
	}
	ioCtx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	fetched := make(chan error, info.NrHWQueues)
	refused := make(chan error, info.NrHWQueues)
	var served atomic.Bool
	for i := 0; i < int(info.NrHWQueues); i++ {
		q, err := newQueue(uint16(i), int(info.QueueDepth), int(info.MaxIOBufBytes), int(d.cdev.Fd()), dev, ioCtx)
		if errors.Is(err, ErrMemlock) {
			err = fmt.Errorf("%w; %d queues of %d tags need %d MiB locked in all", err,
				info.NrHWQueues, info.QueueDepth, d.LockedBytes()>>20)
		}
		if err != nil {
			return fail(err)
		}
		q.newRing = func(n uint32) (ring, error) { return ctl.newRing(q, n) }
		q.refused, q.served = refused, &served
		d.queues = append(d.queues, q)
	}
	for _, q := range d.queues {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			if err := q.run(fetched); err != nil {
				d.setErr(err)
			}
		}()
	}
	for range d.queues {
		if err := <-fetched; err != nil {
			// The kernel cancels the other queues' fetches when their
			// rings close; STOP_DEV (in teardown) aborts them first.
			return fail(err)
		}
	}
	nr, what := uint32(cmdStartDev), "START_DEV"
	if recovering {
		nr, what = cmdEndRecovery, "END_USER_RECOVERY"
	}
	// START_DEV waits in the kernel for every queue's fetches, then for
	// the partition scan's reads. A watcher cancels it when ctx is (the
	// scan's reads fail too), when a queue reports a refused fetch (the
	// kernel would wait for it forever) or when no request came in
	// startTimeout.
	started, cancelStart := make(chan struct{}), make(chan struct{})
	why := make(chan error, 1)
	go func() {
		timer := time.NewTimer(startTimeout)
		defer timer.Stop()
		for {
			var err error
			select {
			case <-started:
				why <- nil
				return
			case <-ctx.Done():
				cancel() // the partition scan's reads fail
				err = ctx.Err()
			case err = <-refused:
			case <-timer.C:
				if served.Load() {
					continue // the queues are ready: the scan may wait on a lock
				}
				err = fmt.Errorf("the queues were not ready after %v", startTimeout)
			}
			close(cancelStart)
			why <- err
			return
		}
	}()
	err = ctl.startDev(nr, info.DevID, uint64(os.Getpid()), cancelStart)
	close(started)
	if w := <-why; w != nil && err != nil {
		err = fmt.Errorf("ublk: %s of /dev/ublkb%d cancelled: %w", what, info.DevID, w)
	}
	if err == nil && ctx.Err() != nil {
		err = fmt.Errorf("ublk: start of /dev/ublkb%d abandoned: %w", info.DevID, ctx.Err())
		if !recovering {
			_ = ctl.StopDev(info.DevID)
		}
	}
	if err != nil {
		return fail(err)
	}
	// From here on the queues' end (Stop, or the device removed behind
	// the server's back) closes them; teardown no longer runs.
	go func() {
		d.wg.Wait()
		d.closeQueues()
		close(d.done)
	}()
	return d, nil
}

// findOrAdd creates the device, or finds the one to recover and starts
// its recovery. It returns the device's info and whether it recovers.
func findOrAdd(ctl driver, dev blockdev.Device, opts Options) (DevInfo, bool, error) {
	if opts.Recover {
		info, err := ctl.DevInfo(uint32(opts.ID))
		if err != nil {
			return info, false, err
		}
		if err := startRecovery(ctl, info, opts.Owner); err != nil {
			return info, false, err
		}
		info, err = ctl.DevInfo(uint32(opts.ID))
		return info, true, err
	}
	if opts.ID == AutoID {
		for _, id := range listDevices() {
			info, err := ctl.DevInfo(id)
			if err != nil || info.ServerFlags != opts.Owner || info.Flags&FlagUserRecovery == 0 {
				continue
			}
			if info.State == StateDead {
				// Added by a server that died before START_DEV: a leftover.
				_ = ctl.DelDev(id)
				continue
			}
			if err := startRecovery(ctl, info, opts.Owner); err != nil {
				return info, false, err
			}
			info, err = ctl.DevInfo(id)
			return info, true, err
		}
	}
	id := ^uint32(0)
	if opts.ID != AutoID {
		id = uint32(opts.ID)
	}
	info, err := ctl.AddDev(DevInfo{
		NrHWQueues: uint16(opts.Queues), QueueDepth: uint16(opts.Depth),
		MaxIOBufBytes: uint32(opts.MaxIO), DevID: id,
		Flags:       FlagUserRecovery | FlagUserRecoveryReissue | FlagCmdIoctlEncode,
		ServerFlags: opts.Owner,
	})
	if errors.Is(err, unix.EEXIST) {
		return info, false, fmt.Errorf("ublk device %d exists already: %w", opts.ID, err)
	}
	return info, false, err
}

// startRecovery checks that info's device is opts.Owner's and has no live
// server, waits for the kernel to quiesce it (the dead server's rings are
// torn down asynchronously) and starts its recovery.
func startRecovery(ctl driver, info DevInfo, owner uint64) error {
	if info.ServerFlags != owner {
		return fmt.Errorf("/dev/ublkb%d: %w", info.DevID, ErrNotOwner)
	}
	if info.Flags&FlagUserRecovery == 0 {
		return fmt.Errorf("/dev/ublkb%d was created without user recovery", info.DevID)
	}
	deadline := time.Now().Add(recoveryTimeout)
	for {
		if info.State == StateLive && info.ServerPID > 0 && processAlive(int(info.ServerPID)) {
			return fmt.Errorf("/dev/ublkb%d: %w (pid %d)", info.DevID, ErrInUse, info.ServerPID)
		}
		if info.State == StateDead {
			return fmt.Errorf("/dev/ublkb%d is stopped: nothing to recover", info.DevID)
		}
		var err error
		if info.State == StateQuiesced {
			err = ctl.simple(cmdStartRecovery, info.DevID, 0)
			if err == nil {
				return nil
			}
			if !errors.Is(err, unix.EBUSY) {
				return err
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("/dev/ublkb%d: the dead server's queues were not released in %v (state %d): %v",
				info.DevID, recoveryTimeout, info.State, err)
		}
		time.Sleep(50 * time.Millisecond)
		if info, err = ctl.DevInfo(info.DevID); err != nil {
			return err
		}
	}
}

func processAlive(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || err == unix.EPERM
}

// listDevices lists the ublk device ids that exist (their char devices in
// sysfs).
func listDevices() []uint32 {
	ents, _ := os.ReadDir("/sys/class/ublk-char")
	var ids []uint32
	for _, e := range ents {
		if n, err := strconv.ParseUint(strings.TrimPrefix(e.Name(), "ublkc"), 10, 32); err == nil {
			ids = append(ids, uint32(n))
		}
	}
	return ids
}

// openCharDev opens /dev/ublkcN, waiting briefly for devtmpfs to create it.
func openCharDev(id uint32) (*os.File, error) {
	path := filepath.Join("/dev", "ublkc"+strconv.Itoa(int(id)))
	for i := 0; ; i++ {
		f, err := os.OpenFile(path, os.O_RDWR|syscall.O_CLOEXEC, 0)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, os.ErrNotExist) || i == 100 {
			return nil, fmt.Errorf("ublk: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// deviceParams maps dev's Info to the kernel's basic and discard params.
func deviceParams(dev blockdev.Device, maxIO int) (params, error) {
	in := dev.Info()
	lbs := max(in.LogicalBlockSize, 512)
	pbs := max(in.PhysicalBlockSize, lbs)
	if bits.OnesCount32(lbs) != 1 || lbs > uint32(unix.Getpagesize()) || bits.OnesCount32(pbs) != 1 {
		return params{}, fmt.Errorf("ublk: block size %d/%d: want a power of two from 512 to the page size", lbs, pbs)
	}
	size := dev.Size()
	if size <= 0 || size%int64(lbs) != 0 {
		return params{}, fmt.Errorf("ublk: device size %d is not a multiple of the block size %d", size, lbs)
	}
	maxBytes := uint32(maxIO)
	if in.MaxTransfer != 0 && in.MaxTransfer < maxBytes {
		maxBytes = in.MaxTransfer &^ (lbs - 1)
	}
	p := params{Types: paramTypeBasic}
	shift := func(v uint32) uint8 { return uint8(bits.TrailingZeros32(v)) }
	p.Basic = paramBasic{
		LogicalBSShift: shift(lbs), PhysicalBSShift: shift(pbs),
		IOMinShift: shift(lbs), IOOptShift: shift(pbs),
		MaxSectors: maxBytes >> 9, DevSectors: uint64(size) >> 9,
	}
	if in.ReadOnly {
		p.Basic.Attrs |= attrReadOnly
	}
	if in.CanFlush {
		p.Basic.Attrs |= attrVolatileCache
		if in.CanFUA {
			p.Basic.Attrs |= attrFUA
		}
	}
	if (in.CanTrim || in.CanZero) && !in.ReadOnly {
		p.Types |= paramTypeDiscard
		p.Discard = paramDiscard{DiscardGranularity: lbs, MaxDiscardSegments: 1}
		if in.CanTrim {
			p.Discard.MaxDiscardSectors = 1 << 21 // 1 GiB per request
		}
		if in.CanZero {
			p.Discard.MaxWriteZeroesSectors = 1 << 21
		}
	}
	return p, nil
}

func (d *Device) setErr(err error) {
	d.errMu.Lock()
	if d.err == nil {
		d.err = err
	}
	d.errMu.Unlock()
}

// Stop removes the device: STOP_DEV (the block device goes away; requests
// in flight complete first), the queues end, and DEL_DEV. Requests still
// waiting on dev after grace (a locked volume) are failed so that the
// kernel can finish. Stop is idempotent.
func (d *Device) Stop(grace time.Duration) error {
	d.stopOnce.Do(func() {
		stopped := make(chan error, 1)
		go func() { stopped <- d.ctl.StopDev(d.info.DevID) }()
		var err error
		select {
		case err = <-stopped:
		case <-time.After(grace):
			d.cancel()
			err = <-stopped
		}
		d.cancel()
		<-d.done
		if e := d.ctl.DelDev(d.info.DevID); err == nil {
			err = e
		}
		d.ctl.Close()
		d.stopErr = err
	})
	return d.stopErr
}

func (d *Device) closeQueues() {
	for _, q := range d.queues {
		q.close()
	}
	if d.cdev != nil {
		d.cdev.Close()
	}
}

// teardown undoes a failed start. A device this server created is
// stopped and deleted; a device being recovered is left to the kernel,
// which quiesces it again when the queues' rings close, for a later
// recovery.
func (d *Device) teardown(created bool) {
	if created {
		_ = d.ctl.StopDev(d.info.DevID)
	}
	// Whether or not STOP_DEV aborted every fetch (it does not for a
	// device that never started, on some kernels), the queues stop
	// waiting for them: closing a ring cancels the fetches it holds.
	for _, q := range d.queues {
		q.abandon()
	}
	if d.cancel != nil {
		d.cancel()
	}
	d.wg.Wait()
	d.closeQueues()
	if created {
		_ = d.ctl.DelDev(d.info.DevID)
	}
}
