package sed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Kind is how a block device is reached.
type Kind string

// Device kinds, found from sysfs.
const (
	KindNVMe    Kind = "nvme"    // NVMe Security Send/Receive
	KindATA     Kind = "ata"     // SATA behind libata: ATA PASS-THROUGH(16)
	KindSCSI    Kind = "scsi"    // SAS, USB, others: SECURITY PROTOCOL IN/OUT
	KindVirtio  Kind = "virtio"  // virtio-blk: tried as SCSI, which it refuses
	KindVirtual Kind = "virtual" // loop, dm, md, zram, nbd...: no hardware
)

// Sysfs locates a system's sysfs and device nodes; tests point it at a
// fake tree.
type Sysfs struct {
	Root string // "/sys"
	Dev  string // "/dev"
}

// DefaultSysfs is the running system's.
var DefaultSysfs = Sysfs{Root: "/sys", Dev: "/dev"}

// BlockName returns the whole-disk name of a device path (/dev/sda1 ->
// sda, /dev/nvme0n1p2 -> nvme0n1), following symlinks.
func (s Sysfs) BlockName(path string) (string, error) {
	_, disk, err := s.lookup(path)
	return disk, err
}

// lookup finds the block device at path (following symlinks) in sysfs:
// its own name (sda1) and its whole disk's (sda; the same for a disk).
func (s Sysfs) lookup(path string) (name, disk string, err error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", "", fmt.Errorf("sed: %w", err)
	}
	name = filepath.Base(real)
	if _, err := os.Stat(filepath.Join(s.Root, "block", name)); err == nil {
		return name, name, nil
	}
	cls := filepath.Join(s.Root, "class", "block", name)
	if _, err := os.Stat(filepath.Join(cls, "partition")); err == nil {
		// /sys/class/block/X is a symlink into /sys/devices/.../PARENT/X.
		if target, err := filepath.EvalSymlinks(cls); err == nil {
			return name, filepath.Base(filepath.Dir(target)), nil
		}
	}
	return "", "", fmt.Errorf("sed: %s is not a block device known to sysfs", path)
}

// Kind classifies the whole-disk block device name.
func (s Sysfs) Kind(name string) Kind {
	dev := filepath.Join(s.Root, "block", name, "device")
	target, err := filepath.EvalSymlinks(dev)
	if err != nil {
		return KindVirtual
	}
	// An NVMe namespace is reached through its controller whatever the
	// controller hangs off: PCIe, or a fabrics controller (TCP, RDMA, FC,
	// loop), which sysfs puts under /devices/virtual/nvme-fabrics.
	if strings.HasPrefix(name, "nvme") {
		return KindNVMe
	}
	if strings.Contains(target, "/devices/virtual/") {
		return KindVirtual
	}
	if sub, err := filepath.EvalSymlinks(filepath.Join(dev, "subsystem")); err == nil && filepath.Base(sub) == "virtio" {
		return KindVirtio
	}
	if v, err := os.ReadFile(filepath.Join(dev, "vendor")); err == nil && strings.TrimSpace(string(v)) == "ATA" {
		return KindATA
	}
	return KindSCSI
}

// Model returns the device's model string from sysfs, if any.
func (s Sysfs) Model(name string) string {
	v, err := os.ReadFile(filepath.Join(s.Root, "block", name, "device", "model"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(v))
}

// Opened is a device opened for security commands.
type Opened struct {
	Transport
	Name string
	Kind Kind
	fd   int
}

// Close closes the device.
func (o *Opened) Close() error { return unix.Close(o.fd) }

// OpenBlock opens the whole disk behind path and picks its transport from
// sysfs. Virtual devices (loop, dm, zram...) yield ErrNotSupported without
// any command being sent.
func (s Sysfs) OpenBlock(path string) (*Opened, error) {
	name, err := s.BlockName(path)
	if err != nil {
		return nil, err
	}
	return s.open(name, s.Kind(name))
}

// open opens the whole disk name, of kind, with the transport for kind.
func (s Sysfs) open(name string, kind Kind) (*Opened, error) {
	if kind == KindVirtual {
		return nil, fmt.Errorf("%w: %s is a virtual block device", ErrNotSupported, name)
	}
	node := filepath.Join(s.Dev, name)
	fd, err := unix.Open(node, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("sed: open %s: %w", node, err)
	}
	o := &Opened{Name: name, Kind: kind, fd: fd}
	switch kind {
	case KindNVMe:
		o.Transport = NewNVMeTransport(fd)
	case KindATA:
		o.Transport = NewATATransport(fd)
	default:
		o.Transport = NewSCSITransport(fd)
	}
	return o, nil
}

// ScanResult is what scanning found about one block device.
type ScanResult struct {
	Name      string     `json:"name"`
	Kind      Kind       `json:"kind"`
	Model     string     `json:"model,omitempty"`
	SSC       SSC        `json:"ssc,omitempty"`
	ComID     uint16     `json:"comid,omitempty"`
	Discovery *Discovery `json:"discovery,omitempty"`
	// ATASecurity is set for SATA drives whose IDENTIFY data reports the
	// ATA Security feature set.
	ATASecurity *ATASecurity `json:"ata_security,omitempty"`
	// Status is a one-line verdict: the SSC and locking state, or why
	// there is no security support.
	Status string `json:"status"`
	// Err is why probing failed, when it did (ErrNotSupported,
	// ErrDeviceFailed, a malformed answer...).
	Err error `json:"-"`
}

// Scan probes every whole-disk block device with Level 0 Discovery (and,
// for SATA, IDENTIFY DEVICE). Nothing else is sent; virtual devices are
// not touched at all.
func (s Sysfs) Scan(ctx context.Context) ([]ScanResult, error) {
	entries, err := os.ReadDir(filepath.Join(s.Root, "block"))
	if err != nil {
		return nil, fmt.Errorf("sed: list block devices: %w", err)
	}
	var out []ScanResult
	for _, e := range entries {
		out = append(out, s.Probe(ctx, e.Name()))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Probe examines one whole-disk block device by name.
func (s Sysfs) Probe(ctx context.Context, name string) ScanResult {
	r := ScanResult{Name: name, Kind: s.Kind(name), Model: s.Model(name)}
	if r.Kind == KindVirtual {
		r.Status = ErrNotSupported.Error() + " (virtual device)"
		return r
	}
	o, err := s.open(name, r.Kind)
	if err != nil {
		r.Status = err.Error()
		if r.Kind == KindVirtio {
			// virtio-blk has no way to pass security protocols to a drive.
			r.Status = ErrNotSupported.Error() + " (virtio-blk; " + err.Error() + ")"
		}
		return r
	}
	defer o.Close()
	return probeTransport(ctx, r, o.Transport)
}

// probeTransport fills r from discovery (and IDENTIFY on ATA) over t.
func probeTransport(ctx context.Context, r ScanResult, t Transport) ScanResult {
	if a, ok := t.(*ATATransport); ok {
		if id, err := a.Identify(ctx); err == nil && id.Security.Supported {
			sec := id.Security
			r.ATASecurity = &sec
		}
	}
	d, err := Discover(ctx, t)
	r.Err = err
	switch {
	case err == nil:
		r.Discovery = d
		if ssc, comID, ok := d.SSC(); ok {
			r.SSC, r.ComID = ssc, comID
			r.Status = describeLocking(ssc, d)
		} else {
			r.Status = "TCG device without a known SSC"
		}
	case r.ATASecurity != nil:
		r.Status = "ATA Security feature set (no TCG)"
	case errors.Is(err, ErrNotSupported):
		r.Status = ErrNotSupported.Error()
	case errors.Is(err, ErrDeviceFailed):
		r.Status = err.Error()
	default:
		r.Status = ErrNotSupported.Error() + ": " + err.Error()
	}
	return r
}

func describeLocking(ssc SSC, d *Discovery) string {
	s := string(ssc)
	if l := d.Locking; l != nil {
		switch {
		case l.Locked:
			s += ", locked"
		case l.LockingEnabled:
			s += ", locking enabled, unlocked"
		default:
			s += ", locking not enabled"
		}
		if l.MBREnabled && !l.MBRDone {
			s += ", shadow MBR shown"
		}
	}
	return s
}

// Size returns the device's size in bytes.
func (o *Opened) Size() (uint64, error) {
	var n uint64
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(o.fd), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&n))); errno != 0 {
		return 0, fmt.Errorf("sed: BLKGETSIZE64 on %s: %w", o.Name, errno)
	}
	return n, nil
}
