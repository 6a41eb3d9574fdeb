package sed

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/encblk/encblk/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestCDBs checks command blocks against the tables of SPC-4 (6.40/6.41),
// SAT-3 (12.2.2, ATA PASS-THROUGH(16)), ACS-3 (TRUSTED RECEIVE/SEND,
// SECURITY *) and NVMe Base 2.0 (5.25/5.26), written out by hand.
func TestCDBs(t *testing.T) {
	t.Parallel()
	in := SecurityProtocolInCDB(ProtocolTCG, 0x0001, 2048)
	if want := mustHex(t, "a2 01 0001 00 00 00000800 00 00"); !bytes.Equal(in[:], want) {
		t.Errorf("SECURITY PROTOCOL IN %x", in)
	}
	out := SecurityProtocolOutCDB(ProtocolTCG, 0x07FE, 512)
	if want := mustHex(t, "b5 01 07fe 00 00 00000200 00 00"); !bytes.Equal(out[:], want) {
		t.Errorf("SECURITY PROTOCOL OUT %x", out)
	}

	// TRUSTED RECEIVE of 2048 bytes (4 blocks) on ComID 0x07FE: protocol in
	// FEATURES, blocks in COUNT, ComID in LBA mid (low byte) / high.
	recv, err := trustedCommand(false, ProtocolTCG, 0x07FE, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if c, want := recv.CDB(), mustHex(t, "85 08 0e 00 01 00 04 00 00 00 fe 00 07 00 5c 00"); !bytes.Equal(c[:], want) {
		t.Errorf("TRUSTED RECEIVE %x", c)
	}
	send, _ := trustedCommand(true, ProtocolTCG, 0x1004, 512)
	if c, want := send.CDB(), mustHex(t, "85 0a 06 00 01 00 01 00 00 00 04 00 10 00 5e 00"); !bytes.Equal(c[:], want) {
		t.Errorf("TRUSTED SEND %x", c)
	}
	// 128 KiB: 256 blocks, the high byte of the length goes to LBA(7:0).
	big, _ := trustedCommand(false, ProtocolTCG, 1, 256*512)
	if c, want := big.CDB(), mustHex(t, "85 08 0e 00 01 00 00 00 01 00 01 00 00 00 5c 00"); !bytes.Equal(c[:], want) {
		t.Errorf("TRUSTED RECEIVE 256 blocks %x", c)
	}
	for _, n := range []int{0, 100, 65536 * 512} {
		if _, err := trustedCommand(false, ProtocolTCG, 1, n); err == nil {
			t.Errorf("trusted transfer of %d bytes accepted", n)
		}
	}
	if c, want := (ATACommand{Protocol: ataProtoPIOIn, Command: ataIdentify, Count: 1}).CDB(), mustHex(t, "85 08 0e 00 00 00 01 00 00 00 00 00 00 00 ec 00"); !bytes.Equal(c[:], want) {
		t.Errorf("IDENTIFY %x", c)
	}
	if c, want := SecurityFreezeLock().Cmd.CDB(), mustHex(t, "85 06 20 00 00 00 00 00 00 00 00 00 00 00 f5 00"); !bytes.Equal(c[:], want) {
		t.Errorf("FREEZE LOCK %x", c)
	}
	if c := SecurityErasePrepare().Cmd.CDB(); c[14] != 0xF3 || c[1] != 0x06 {
		t.Errorf("ERASE PREPARE %x", c)
	}

	nv := NVMeSecurityCommand(false, ProtocolTCG, 0x07FE, 2048)
	if nv.Opcode != 0x82 || nv.Cdw10 != 0x0107FE00 || nv.Cdw11 != 2048 || nv.DataLen != 2048 {
		t.Errorf("Security Receive %+v", nv)
	}
	nv = NVMeSecurityCommand(true, ProtocolTCGManagement, 0x0004, 512)
	if nv.Opcode != 0x81 || nv.Cdw10 != 0x02000400 || nv.Cdw11 != 512 {
		t.Errorf("Security Send %+v", nv)
	}
}

func TestATASecurityData(t *testing.T) {
	t.Parallel()
	pw := []byte("0123456789abcdef0123456789abcdef")
	c, err := SecuritySetPassword(ATAMasterPassword, pw, true, 0xFFFE)
	if err != nil {
		t.Fatal(err)
	}
	if c.Cmd.Command != 0xF1 || c.Cmd.Protocol != ataProtoPIOOut || c.Cmd.Count != 1 || len(c.Data) != 512 {
		t.Fatalf("%+v", c.Cmd)
	}
	// Word 0: identifier (bit 0) master, bit 8 maximum; words 1-16 password;
	// word 17 master password identifier.
	if binary.LittleEndian.Uint16(c.Data) != 0x0101 || !bytes.Equal(c.Data[2:34], pw) || binary.LittleEndian.Uint16(c.Data[34:]) != 0xFFFE {
		t.Fatalf("data %x", c.Data[:40])
	}
	c.Wipe()
	if !bytes.Equal(c.Data, make([]byte, 512)) {
		t.Fatal("not wiped")
	}
	u, _ := SecurityUnlock(ATAUserPassword, []byte("pw"))
	if u.Cmd.Command != 0xF2 || binary.LittleEndian.Uint16(u.Data) != 0 || string(u.Data[2:4]) != "pw" || u.Data[4] != 0 {
		t.Fatalf("unlock %x", u.Data[:8])
	}
	e, _ := SecurityEraseUnit(ATAUserPassword, []byte("pw"), true)
	if e.Cmd.Command != 0xF4 || binary.LittleEndian.Uint16(e.Data) != 0x0002 {
		t.Fatalf("erase %x", e.Data[:4])
	}
	d, _ := SecurityDisablePassword(ATAMasterPassword, []byte("pw"))
	if d.Cmd.Command != 0xF6 || binary.LittleEndian.Uint16(d.Data) != 0x0001 {
		t.Fatalf("disable %x", d.Data[:4])
	}
	if _, err := SecurityUnlock(ATAUserPassword, make([]byte, 33)); !errors.Is(err, ErrATAPassword) {
		t.Fatalf("long password: %v", err)
	}
}

// identifyData builds IDENTIFY DEVICE data from words, with a valid
// checksum in word 255.
func identifyData(words map[int]uint16, model string) []byte {
	b := make([]byte, 512)
	for i, v := range words {
		binary.LittleEndian.PutUint16(b[2*i:], v)
	}
	m := []byte(model + "                                        ")[:40]
	for i := 0; i < 40; i += 2 {
		b[54+i], b[54+i+1] = m[i+1], m[i]
	}
	b[510] = 0xA5
	var sum byte
	for _, c := range b[:511] {
		sum += c
	}
	b[511] = -sum
	return b
}

func TestParseIdentify(t *testing.T) {
	t.Parallel()
	b := identifyData(map[int]uint16{48: 0x4001, 82: 0x0002, 89: 0x8010, 90: 0x0003, 92: 0xFFFE, 128: 0x0127}, "Samsung SSD 860 EVO 500GB")
	id, err := ParseIdentify(b)
	if err != nil {
		t.Fatal(err)
	}
	want := ATASecurity{Supported: true, Enabled: true, Locked: true, EnhancedErase: true, MasterMaximum: true,
		MasterIdentifier: 0xFFFE, EraseMinutes: 32, EnhancedMinutes: 6}
	if id.Model != "Samsung SSD 860 EVO 500GB" || !id.TrustedComputing || id.Security != want {
		t.Fatalf("%+v", id)
	}
	b[100] ^= 1
	if _, err := ParseIdentify(b); !errors.Is(err, ErrMalformed) {
		t.Fatalf("bad checksum: %v", err)
	}
	if _, err := ParseIdentify(b[:100]); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short: %v", err)
	}
}

func FuzzParseIdentify(f *testing.F) {
	f.Add(identifyData(map[int]uint16{128: 0x21}, "x"))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = ParseIdentify(b) })
}

func TestParseSense(t *testing.T) {
	t.Parallel()
	var e SenseError
	parseSense(&e, mustHex(t, "70 00 05 00 00 00 00 0a 00 00 00 00 20 00"))
	if e.Key != SenseIllegalRequest || e.ASC != 0x20 {
		t.Errorf("fixed: %+v", e)
	}
	e = SenseError{}
	// Descriptor sense with an ATA Status Return descriptor (aborted, ERR).
	parseSense(&e, mustHex(t, "72 0b 00 00 00 00 00 0e 09 0c 00 04 00 00 00 00 00 00 00 00 00 51"))
	if e.Key != SenseAbortedCommand || e.ATAError != 0x04 || e.ATAStat != 0x51 {
		t.Errorf("descriptor: %+v", e)
	}
	for _, junk := range [][]byte{nil, {0x72}, {0x72, 0, 0, 0, 0, 0, 0, 200, 9, 50}, {0x70, 1}} {
		parseSense(&SenseError{}, junk)
	}
}

// fakeSysfs builds a sysfs tree: vda (virtio), sda (SATA), sdb (SAS),
// nvme0n1, loop0 (virtual) and the partition sda1.
func fakeSysfs(t *testing.T) Sysfs {
	t.Helper()
	root := t.TempDir()
	mk := func(p string) string {
		p = filepath.Join(root, p)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	link := func(target, name string) {
		if err := os.Symlink(filepath.Join(root, target), filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string) {
		if err := os.WriteFile(filepath.Join(root, p), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mk("bus/virtio")
	mk("bus/scsi")
	mk("block")
	mk("class/block")
	for name, dev := range map[string]string{
		"vda": "devices/pci0/virtio1", "sda": "devices/pci0/ata1/host0/target0/0:0:0:0",
		"sdb": "devices/pci0/sas/0:0:1:0", "nvme0n1": "devices/pci0/nvme/nvme0", "loop0": "devices/virtual/block/loop0",
		// An NVMe/TCP namespace, as the 6.12 kernel shows it (seen in
		// test/vm's sed-nvme-opal: /sys/block/nvme1n1/device resolves to
		// /sys/devices/virtual/nvme-fabrics/ctl/nvme1).
		"nvme1n1": "devices/virtual/nvme-fabrics/ctl/nvme1",
	} {
		mk(dev)
		d := mk("devices/pci0/block/" + name)
		link(dev, "devices/pci0/block/"+name+"/device")
		link("devices/pci0/block/"+name, "block/"+name)
		link("devices/pci0/block/"+name, "class/block/"+name)
		_ = d
	}
	link("bus/virtio", "devices/pci0/virtio1/subsystem")
	link("bus/scsi", "devices/pci0/ata1/host0/target0/0:0:0:0/subsystem")
	write("devices/pci0/ata1/host0/target0/0:0:0:0/vendor", "ATA     \n")
	write("devices/pci0/ata1/host0/target0/0:0:0:0/model", "Samsung SSD 860 \n")
	write("devices/pci0/sas/0:0:1:0/vendor", "SEAGATE \n")
	mk("devices/pci0/block/sda/sda1")
	write("devices/pci0/block/sda/sda1/partition", "1\n")
	link("devices/pci0/block/sda/sda1", "class/block/sda1")
	dev := mk("dev")
	for _, n := range []string{"sda1", "vda"} {
		write("dev/"+n, "")
	}
	return Sysfs{Root: root, Dev: dev}
}

func TestSysfsKinds(t *testing.T) {
	t.Parallel()
	s := fakeSysfs(t)
	for name, want := range map[string]Kind{"vda": KindVirtio, "sda": KindATA, "sdb": KindSCSI, "nvme0n1": KindNVMe, "nvme1n1": KindNVMe, "loop0": KindVirtual, "nope": KindVirtual} {
		if got := s.Kind(name); got != want {
			t.Errorf("%s: %s, want %s", name, got, want)
		}
	}
	if n, err := s.BlockName(filepath.Join(s.Dev, "sda1")); err != nil || n != "sda" {
		t.Errorf("partition: %q %v", n, err)
	}
	if s.Model("sda") != "Samsung SSD 860" {
		t.Errorf("model %q", s.Model("sda"))
	}
	if r := s.Probe(context.Background(), "loop0"); r.Status != "no TCG/ATA security support (virtual device)" {
		t.Errorf("loop0: %+v", r)
	}
	// A regular file standing in for /dev/vda does not take SG_IO.
	if r := s.Probe(context.Background(), "vda"); r.Kind != KindVirtio || r.SSC != "" || !bytes.HasPrefix([]byte(r.Status), []byte("no TCG/ATA security support")) {
		t.Errorf("vda: %+v", r)
	}
}

// TestRealVirtioDisk sends Level 0 Discovery through SG_IO to the
// machine's virtio disk (which has no security protocols): it must report
// "no TCG/ATA security support".
func TestRealVirtioDisk(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/sys/block/vda"); err != nil {
		t.Skip("no /dev/vda on this machine")
	}
	testutil.RequireRoot(t)
	r := DefaultSysfs.Probe(context.Background(), "vda")
	if r.Kind != KindVirtio || r.Discovery != nil || !bytes.HasPrefix([]byte(r.Status), []byte("no TCG/ATA security support")) {
		t.Fatalf("%+v", r)
	}
	t.Logf("vda: %s", r.Status)
}

// TestRealIoctlsOnLoopDevice sends discovery through the three real ioctl
// paths (SG_IO as SCSI and as ATA pass-through, NVME_IOCTL_ADMIN_CMD) to a
// loop device, which supports none of them: each must fail cleanly with
// ErrNotSupported and the kernel's errno, never crash or hang.
func TestRealIoctlsOnLoopDevice(t *testing.T) {
	t.Parallel()
	testutil.RequireRoot(t)
	fd, err := unix.Open("/dev/loop7", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no usable loop device: %v", err)
	}
	defer unix.Close(fd)
	for name, tr := range map[string]Transport{"scsi": NewSCSITransport(fd), "ata": NewATATransport(fd), "nvme": NewNVMeTransport(fd)} {
		_, err := Discover(context.Background(), tr)
		if !errors.Is(err, ErrNotSupported) {
			t.Errorf("%s: %v", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
}

func TestSysfsPartition(t *testing.T) {
	t.Parallel()
	s := fakeSysfs(t)
	part := filepath.Join(s.Root, "devices/pci0/block/sda/sda1")
	if _, err := s.Partition(filepath.Join(s.Dev, "sda1")); err == nil {
		t.Fatal("partition without start/size: no error")
	}
	for f, v := range map[string]string{"start": "2048\n", "size": "409600\n"} {
		if err := os.WriteFile(filepath.Join(part, f), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p, err := s.Partition(filepath.Join(s.Dev, "sda1"))
	if err != nil || p == nil || *p != (Partition{Disk: "sda", Start: 1 << 20, Size: 200 << 20}) {
		t.Fatalf("sda1: %+v %v", p, err)
	}
	if p, err := s.Partition(filepath.Join(s.Dev, "vda")); err != nil || p != nil {
		t.Fatalf("whole disk: %+v %v", p, err)
	}
	if err := os.WriteFile(filepath.Join(part, "size"), []byte("lots\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Partition(filepath.Join(s.Dev, "sda1")); err == nil {
		t.Fatal("malformed size: no error")
	}
}

// failingTransport answers every command with one error.
type failingTransport struct{ err error }

func (f failingTransport) IFRecv(context.Context, SecurityProtocol, uint16, []byte) error {
	return f.err
}
func (f failingTransport) IFSend(context.Context, SecurityProtocol, uint16, []byte) error {
	return f.err
}

// TestDiscoverClassifiesFailures: only a refusal (ILLEGAL REQUEST, an ATA
// abort, an SG_IO the node does not take) means "no security support". A
// timed-out command is a failing device: the kernel's answer when
// target_core_user's cmd_time_out expired (seen in test/vm's sed-faults
// scenario through tcm_loop and SG_IO: CHECK CONDITION, sense key NOT
// READY, ASC/ASCQ 08h/00h LOGICAL UNIT COMMUNICATION FAILURE, driver
// status DRIVER_SENSE) used to be reported as "no TCG/ATA security
// support", hiding that a SED stopped answering.
func TestDiscoverClassifiesFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		err    error
		failed bool
	}{
		{"tcmu cmd_time_out", &SenseError{Status: 2, Key: 0x2, ASC: 0x08, ASCQ: 0x00, Driver: 0x8}, true},
		{"SG_IO host timeout", &SenseError{Status: 0, Host: 0x03}, true},
		{"aborted, no ATA error", &SenseError{Status: 2, Key: SenseAbortedCommand, Driver: 0x8}, true},
		{"EIO", fmt.Errorf("SG_IO: %w", unix.EIO), true},
		{"deadline", context.DeadlineExceeded, true},
		{"illegal request", &SenseError{Status: 2, Key: SenseIllegalRequest, ASC: 0x20, Driver: 0x8}, false},
		{"ATA abort", &SenseError{Status: 2, Key: SenseAbortedCommand, ATAError: 0x04, ATAStat: 0x51, Driver: 0x8}, false},
		{"ENOTTY", fmt.Errorf("SG_IO: %w", unix.ENOTTY), false},
	} {
		_, err := Discover(context.Background(), failingTransport{tc.err})
		if got := errors.Is(err, ErrDeviceFailed); got != tc.failed || errors.Is(err, ErrNotSupported) == tc.failed {
			t.Errorf("%s: %v (device failed %v, want %v)", tc.name, err, got, tc.failed)
		}
	}
}
