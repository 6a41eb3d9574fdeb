package sed

import (
	"fmt"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sgIOHdr mirrors struct sg_io_hdr of <scsi/sg.h> on 64-bit Linux (88
// bytes; offsets checked against the C header by TestStructLayouts).
type sgIOHdr struct {
	InterfaceID    int32          // 0  'S'
	DxferDirection int32          // 4  SG_DXFER_*
	CmdLen         uint8          // 8
	MxSbLen        uint8          // 9
	IovecCount     uint16         // 10
	DxferLen       uint32         // 12
	Dxferp         unsafe.Pointer // 16
	Cmdp           unsafe.Pointer // 24
	Sbp            unsafe.Pointer // 32
	Timeout        uint32         // 40 milliseconds
	Flags          uint32         // 44
	PackID         int32          // 48
	_              [4]byte        // 52 padding before the pointer
	UsrPtr         unsafe.Pointer // 56
	Status         uint8          // 64 SCSI status
	MaskedStatus   uint8          // 65
	MsgStatus      uint8          // 66
	SbLenWr        uint8          // 67
	HostStatus     uint16         // 68
	DriverStatus   uint16         // 70
	Resid          int32          // 72
	Duration       uint32         // 76
	Info           uint32         // 80
	_              [4]byte        // 84 tail padding
}

// SG_IO constants (<scsi/sg.h>).
const (
	sgIO           = 0x2285
	sgDxferNone    = -1
	sgDxferToDev   = -2
	sgDxferFromDev = -3
	sgInfoCheck    = 0x1 // SG_INFO_CHECK: status, host or driver reported a problem
	scsiCheckCond  = 0x02
	senseLen       = 32
)

// SenseError is a SCSI command that ended in CHECK CONDITION (or another
// non-GOOD status), with its sense key and additional sense code.
type SenseError struct {
	Status   uint8 // SCSI status
	Key      uint8 // sense key
	ASC      uint8
	ASCQ     uint8
	Host     uint16 // host_status of SG_IO
	Driver   uint16 // driver_status of SG_IO
	ATAError uint8  // ATA error register from an ATA status return descriptor
	ATAStat  uint8  // ATA status register
}

func (e *SenseError) Error() string {
	s := fmt.Sprintf("SCSI status 0x%02x sense key 0x%x ASC/ASCQ 0x%02x/0x%02x", e.Status, e.Key, e.ASC, e.ASCQ)
	if e.Host != 0 || e.Driver != 0 {
		s += fmt.Sprintf(" host 0x%x driver 0x%x", e.Host, e.Driver)
	}
	if e.ATAStat != 0 {
		s += fmt.Sprintf(" ATA status 0x%02x error 0x%02x", e.ATAStat, e.ATAError)
	}
	return s
}

// Sense keys callers may look at.
const (
	SenseIllegalRequest = 0x5
	SenseAbortedCommand = 0xB
	SenseDataProtect    = 0x7
)

// parseSense decodes fixed (0x70/0x71) and descriptor (0x72/0x73) sense
// data into e.
func parseSense(e *SenseError, sb []byte) {
	if len(sb) < 2 {
		return
	}
	switch sb[0] & 0x7F {
	case 0x70, 0x71:
		if len(sb) >= 14 {
			e.Key, e.ASC, e.ASCQ = sb[2]&0x0F, sb[12], sb[13]
		} else if len(sb) >= 3 {
			e.Key = sb[2] & 0x0F
		}
	case 0x72, 0x73:
		if len(sb) < 8 {
			return
		}
		e.Key, e.ASC, e.ASCQ = sb[1]&0x0F, sb[2], sb[3]
		n := int(sb[7])
		desc := sb[8:min(len(sb), 8+n)]
		for len(desc) >= 2 {
			l := int(desc[1]) + 2
			if l > len(desc) {
				break
			}
			// ATA Status Return descriptor (SAT-3 12.2.2.6).
			if desc[0] == 0x09 && l >= 14 {
				e.ATAError, e.ATAStat = desc[3], desc[13]
			}
			desc = desc[l:]
		}
	}
}

// sgCommand runs one SCSI command through SG_IO. dir is sgDxfer*; buf is
// the data-in or data-out buffer.
func sgCommand(fd int, cdb []byte, dir int32, buf []byte, timeout time.Duration) error {
	sense := make([]byte, senseLen)
	h := sgIOHdr{
		InterfaceID:    'S',
		DxferDirection: dir,
		CmdLen:         uint8(len(cdb)),
		MxSbLen:        senseLen,
		DxferLen:       uint32(len(buf)),
		Cmdp:           unsafe.Pointer(&cdb[0]),
		Sbp:            unsafe.Pointer(&sense[0]),
		Timeout:        uint32(timeout / time.Millisecond),
	}
	if len(buf) > 0 {
		h.Dxferp = unsafe.Pointer(&buf[0])
	}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), sgIO, uintptr(unsafe.Pointer(&h)))
	runtime.KeepAlive(cdb)
	runtime.KeepAlive(buf)
	runtime.KeepAlive(sense)
	if errno != 0 {
		return fmt.Errorf("SG_IO: %w", errno)
	}
	if h.Info&sgInfoCheck != 0 {
		e := &SenseError{Status: h.Status, Host: h.HostStatus, Driver: h.DriverStatus}
		parseSense(e, sense[:min(int(h.SbLenWr), len(sense))])
		// ATA PASS-THROUGH with CK_COND reports success as a check
		// condition carrying "ATA pass through information available".
		if e.Key == 0x01 || (e.Key == 0 && e.ASC == 0x00 && e.ASCQ == 0x1D && e.ATAStat&0x01 == 0) {
			return nil
		}
		return e
	}
	return nil
}
