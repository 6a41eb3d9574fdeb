package testtcmu

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/encblk/encblk/pkg/sed"
	"github.com/encblk/encblk/pkg/sed/sedsim"
)

// SCSI status and sense (SPC-4 4.5).
const (
	statusGood      = 0x00
	statusCheckCond = 0x02

	keyNoSense        = 0x0
	keyRecovered      = 0x1
	keyIllegalRequest = 0x5
	keyDataProtect    = 0x7
	keyAborted        = 0xB
)

// Media is the simulated medium.
type Media interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
}

// Fault is a misbehaviour the disk can be told to show, for bad-input
// tests of the hosts: answers to security commands become garbage, or
// never come.
type Fault string

// Faults.
const (
	FaultNone    Fault = ""
	FaultGarbage Fault = "garbage" // IF-RECV / TRUSTED RECEIVE data is random bytes
	FaultHang    Fault = "hang"    // security commands are answered after HangFor
	FaultSense   Fault = "sense"   // security commands fail with ABORTED COMMAND
	// FaultSessionGarbage answers Level 0 Discovery truthfully and
	// everything else on the ComID with random bytes.
	FaultSessionGarbage Fault = "session-garbage"
)

// Disk is a SCSI direct-access device over a simulated self-encrypting
// drive: an Opal drive (sedsim.Drive, reached by SECURITY PROTOCOL IN/OUT
// or by TRUSTED SEND/RECEIVE inside ATA PASS-THROUGH) or an ATA Security
// drive (sedsim.ATADrive, reached by ATA PASS-THROUGH). With Vendor "ATA"
// it looks like a SATA disk behind a SAT layer (libata's INQUIRY vendor),
// and encblk then talks ATA PASS-THROUGH to it.
type Disk struct {
	Vendor, Product, Revision, Serial string
	Size                              int64 // bytes, a multiple of 512
	Opal                              *sedsim.Drive
	ATA                               *sedsim.ATADrive
	Media                             Media
	// FaultFile, if set, is read before each security command; its
	// first word is a Fault.
	FaultFile string
	HangFor   time.Duration
	// Log, if set, receives one line per security exchange.
	Log func(format string, args ...any)

	mu sync.Mutex
}

func fixedSense(key, asc, ascq byte) []byte {
	s := make([]byte, 18)
	s[0], s[2], s[7], s[12], s[13] = 0x70, key, 10, asc, ascq
	return s
}

func check(key, asc, ascq byte) Response {
	return Response{Status: statusCheckCond, Sense: fixedSense(key, asc, ascq)}
}

var (
	invalidOpcode = func() Response { return check(keyIllegalRequest, 0x20, 0x00) }
	invalidField  = func() Response { return check(keyIllegalRequest, 0x24, 0x00) }
	lbaRange      = func() Response { return check(keyIllegalRequest, 0x21, 0x00) }
	// TCG Storage Interface Interactions Specification 3.3.2 (SCSI):
	// access to a locked range is DATA PROTECT, ACCESS DENIED - NO ACCESS
	// RIGHTS.
	dataProtect = func() Response { return check(keyDataProtect, 0x20, 0x02) }
)

func good(n int) Response { return Response{Status: statusGood, ReadLen: n} }

// Execute implements Handler.
func (d *Disk) Execute(cdb []byte, data []byte) Response {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch cdb[0] {
	case 0x00: // TEST UNIT READY
		return good(0)
	case 0x03: // REQUEST SENSE
		n := copy(data, fixedSense(keyNoSense, 0, 0))
		return good(n)
	case 0x12: // INQUIRY
		return d.inquiry(cdb, data)
	case 0x25: // READ CAPACITY(10)
		last := uint64(d.Size/512 - 1)
		if last > 0xFFFFFFFF {
			last = 0xFFFFFFFF
		}
		var b [8]byte
		binary.BigEndian.PutUint32(b[0:], uint32(last))
		binary.BigEndian.PutUint32(b[4:], 512)
		return good(copy(data, b[:]))
	case 0x9E: // SERVICE ACTION IN(16)
		if cdb[1]&0x1F != 0x10 {
			return invalidField()
		}
		var b [32]byte // READ CAPACITY(16)
		binary.BigEndian.PutUint64(b[0:], uint64(d.Size/512-1))
		binary.BigEndian.PutUint32(b[8:], 512)
		return good(copy(data, b[:]))
	case 0x1A, 0x5A: // MODE SENSE(6), (10)
		return d.modeSense(cdb, data)
	case 0xA3: // MAINTENANCE IN
		if cdb[1]&0x1F == 0x0C {
			return reportOpcodes(cdb, data, d.ATA == nil)
		}
		return invalidField()
	case 0x35, 0x91: // SYNCHRONIZE CACHE(10), (16): writes reach the backing at once
		return good(0)
	case 0x08, 0x28, 0xA8, 0x88, 0x0A, 0x2A, 0xAA, 0x8A:
		return d.readWrite(cdb, data)
	case 0xA2, 0xB5: // SECURITY PROTOCOL IN / OUT
		if d.Opal == nil {
			return invalidOpcode()
		}
		return d.securityProtocol(cdb, data)
	case 0x85, 0xA1: // ATA PASS-THROUGH(16), (12)
		if d.Vendor != "ATA" {
			return invalidOpcode()
		}
		return d.ataPassThrough(cdb, data)
	}
	return invalidOpcode()
}

func padded(s string, n int) []byte {
	b := []byte(strings.Repeat(" ", n))
	copy(b, s)
	return b
}

func (d *Disk) inquiry(cdb, data []byte) Response {
	if cdb[1]&0x01 == 0 {
		if cdb[2] != 0 {
			return invalidField()
		}
		b := make([]byte, 36)
		b[2], b[3], b[4], b[7] = 0x06, 0x02, 31, 0x02 // SPC-4, format 2, CmdQue
		copy(b[8:], padded(d.Vendor, 8))
		copy(b[16:], padded(d.Product, 16))
		copy(b[32:], padded(d.Revision, 4))
		return good(copy(data, b))
	}
	var page []byte
	switch cdb[2] {
	case 0x00:
		page = []byte{0x00, 0x80, 0x83}
	case 0x80:
		page = []byte(d.Serial)
	case 0x83:
		// One designator: T10 vendor ID based, ASCII.
		id := append(padded(d.Vendor, 8), []byte(d.Serial)...)
		page = append([]byte{0x02, 0x01, 0x00, byte(len(id))}, id...)
	default:
		return invalidField()
	}
	b := append([]byte{0x00, cdb[2], byte(len(page) >> 8), byte(len(page))}, page...)
	return good(copy(data, b))
}

func (d *Disk) modeSense(cdb, data []byte) Response {
	pc, code := cdb[2]>>6, cdb[2]&0x3F
	if pc == 3 {
		return check(keyIllegalRequest, 0x39, 0x00) // saving parameters not supported
	}
	caching := make([]byte, 20)
	caching[0], caching[1] = 0x08, 18
	if pc != 1 { // changeable values: none
		caching[2] = 0x04 // WCE
	}
	control := make([]byte, 12)
	control[0], control[1] = 0x0A, 10
	var pages []byte
	switch code {
	case 0x08:
		pages = caching
	case 0x0A:
		pages = control
	case 0x3F:
		pages = append(caching, control...)
	default:
		return invalidField()
	}
	var b []byte
	if cdb[0] == 0x1A {
		b = append([]byte{byte(3 + len(pages)), 0, 0, 0}, pages...)
	} else {
		n := 6 + len(pages)
		b = append([]byte{byte(n >> 8), byte(n), 0, 0, 0, 0, 0, 0}, pages...)
	}
	return good(copy(data, b))
}

// supportedOps lists the commands reported by REPORT SUPPORTED OPERATION
// CODES: opcode, service action (or -1) and CDB length.
var supportedOps = []struct {
	op  byte
	sa  int
	len int
}{
	{0x00, -1, 6}, {0x03, -1, 6}, {0x08, -1, 6}, {0x0A, -1, 6}, {0x12, -1, 6}, {0x1A, -1, 6},
	{0x25, -1, 10}, {0x28, -1, 10}, {0x2A, -1, 10}, {0x35, -1, 10}, {0x5A, -1, 10},
	{0x88, -1, 16}, {0x8A, -1, 16}, {0x91, -1, 16}, {0x9E, 0x10, 16},
	{0xA2, -1, 12}, {0xA3, 0x0C, 12}, {0xA8, -1, 12}, {0xAA, -1, 12}, {0xB5, -1, 12},
	{0x85, -1, 16}, {0xA1, -1, 12},
}

// reportOpcodes answers REPORT SUPPORTED OPERATION CODES (SPC-4 6.35):
// all commands (option 0) or one (options 1-3). scsiSecurity is whether
// SECURITY PROTOCOL IN/OUT are supported.
func reportOpcodes(cdb, data []byte, scsiSecurity bool) Response {
	opt := cdb[2] & 0x07
	reqOp, reqSA := cdb[3], int(binary.BigEndian.Uint16(cdb[4:]))
	has := func(op byte) bool { return scsiSecurity || (op != 0xA2 && op != 0xB5) }
	switch opt {
	case 0:
		var list []byte
		for _, o := range supportedOps {
			if !has(o.op) {
				continue
			}
			desc := make([]byte, 8)
			desc[0] = o.op
			if o.sa >= 0 {
				binary.BigEndian.PutUint16(desc[2:], uint16(o.sa))
				desc[5] = 0x01 // SERVACTV
			}
			binary.BigEndian.PutUint16(desc[6:], uint16(o.len))
			list = append(list, desc...)
		}
		b := binary.BigEndian.AppendUint32(nil, uint32(len(list)))
		return good(copy(data, append(b, list...)))
	case 1, 2, 3:
		support := byte(1) // not supported
		cdbLen := 0
		for _, o := range supportedOps {
			if o.op != reqOp || !has(o.op) {
				continue
			}
			if opt == 1 && o.sa >= 0 {
				return invalidField() // a service action is needed
			}
			if opt == 2 && o.sa != reqSA {
				continue
			}
			if opt == 3 && o.sa >= 0 && o.sa != reqSA {
				continue
			}
			support, cdbLen = 3, o.len
		}
		b := []byte{0, support, byte(cdbLen >> 8), byte(cdbLen)}
		if cdbLen > 0 {
			usage := make([]byte, cdbLen) // CDB usage map: every bit may be used
			for i := range usage {
				usage[i] = 0xFF
			}
			usage[0] = reqOp
			b = append(b, usage...)
		}
		return good(copy(data, b))
	}
	return invalidField()
}

func (d *Disk) readWrite(cdb, data []byte) Response {
	var lba uint64
	var blocks uint32
	switch cdb[0] {
	case 0x08, 0x0A:
		lba = uint64(cdb[1]&0x1F)<<16 | uint64(cdb[2])<<8 | uint64(cdb[3])
		blocks = uint32(cdb[4])
		if blocks == 0 {
			blocks = 256
		}
	case 0x28, 0x2A:
		lba, blocks = uint64(binary.BigEndian.Uint32(cdb[2:])), uint32(binary.BigEndian.Uint16(cdb[7:]))
	case 0xA8, 0xAA:
		lba, blocks = uint64(binary.BigEndian.Uint32(cdb[2:])), binary.BigEndian.Uint32(cdb[6:])
	default:
		lba, blocks = binary.BigEndian.Uint64(cdb[2:]), binary.BigEndian.Uint32(cdb[10:])
	}
	n := int64(blocks) * 512
	if lba > uint64(d.Size/512) || int64(lba)*512+n > d.Size {
		return lbaRange()
	}
	if int64(len(data)) < n {
		return invalidField()
	}
	write := cdb[0]&0x0F == 0x0A
	var err error
	if write {
		_, err = d.Media.WriteAt(data[:n], int64(lba)*512)
	} else {
		_, err = d.Media.ReadAt(data[:n], int64(lba)*512)
	}
	if errors.Is(err, sedsim.ErrLocked) {
		return dataProtect()
	}
	if err != nil {
		return check(0x3, 0x11, 0x00) // MEDIUM ERROR, UNRECOVERED READ ERROR
	}
	if write {
		return good(0)
	}
	return good(int(n))
}

func (d *Disk) fault() Fault {
	if d.FaultFile == "" {
		return FaultNone
	}
	b, err := os.ReadFile(d.FaultFile)
	if err != nil {
		return FaultNone
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return FaultNone
	}
	return Fault(f[0])
}

func (d *Disk) logf(format string, args ...any) {
	if d.Log != nil {
		d.Log(format, args...)
	}
}

// securityExchange runs IF-RECV (in) or IF-SEND on the Opal drive, with
// the configured fault. It reports whether the command succeeded.
func (d *Disk) securityExchange(in bool, proto sed.SecurityProtocol, comID uint16, buf []byte) error {
	switch d.fault() {
	case FaultHang:
		d.logf("fault: hang %s on a security command", d.HangFor)
		time.Sleep(d.HangFor)
		return errors.New("hung")
	case FaultSense:
		return errors.New("fault")
	case FaultSessionGarbage:
		if in && comID != 0x0001 {
			for i := range buf {
				buf[i] = byte(i*13 + 5)
			}
			return nil
		}
	case FaultGarbage:
		if in {
			for i := range buf {
				buf[i] = byte(i*7 + 3)
			}
			return nil
		}
	}
	var err error
	if in {
		err = d.Opal.IFRecv(context.Background(), proto, comID, buf)
	} else {
		err = d.Opal.IFSend(context.Background(), proto, comID, buf)
	}
	d.logf("security %s proto 0x%02x comid 0x%04x len %d: %v", map[bool]string{true: "in", false: "out"}[in], uint8(proto), comID, len(buf), err)
	return err
}

func (d *Disk) securityProtocol(cdb, data []byte) Response {
	proto := sed.SecurityProtocol(cdb[1])
	comID := binary.BigEndian.Uint16(cdb[2:])
	n := int(binary.BigEndian.Uint32(cdb[6:]))
	if cdb[4]&0x80 != 0 {
		n *= 512
	}
	if n > len(data) {
		return invalidField()
	}
	in := cdb[0] == 0xA2
	if err := d.securityExchange(in, proto, comID, data[:n]); err != nil {
		if d.fault() == FaultHang || d.fault() == FaultSense {
			return check(keyAborted, 0x00, 0x00)
		}
		return invalidField()
	}
	if in {
		return good(n)
	}
	return good(0)
}
