package testtcmu

import (
	"context"
	"encoding/binary"
	"errors"

	"github.com/encblk/encblk/pkg/sed"
)

// ATA register values of a completed command.
const (
	ataStatusOK   = 0x50 // DRDY | DSC
	ataStatusErr  = 0x51 // DRDY | DSC | ERR
	ataErrorAbort = 0x04 // ABRT
)

// ataTaskFile is the register set of an ATA PASS-THROUGH CDB (SAT-3 12.2).
type ataTaskFile struct {
	protocol byte
	ckCond   bool
	dataIn   bool
	extend   bool
	features uint16
	count    uint16
	lba      uint64
	device   byte
	command  byte
}

func parseATAPassThrough(cdb []byte) ataTaskFile {
	t := ataTaskFile{
		protocol: cdb[1] >> 1 & 0x0F,
		ckCond:   cdb[2]&0x20 != 0,
		dataIn:   cdb[2]&0x08 != 0,
	}
	if cdb[0] == 0xA1 { // 12-byte: 28-bit registers only
		t.features, t.count = uint16(cdb[3]), uint16(cdb[4])
		t.lba = uint64(cdb[5]) | uint64(cdb[6])<<8 | uint64(cdb[7])<<16
		t.device, t.command = cdb[8], cdb[9]
		return t
	}
	t.extend = cdb[1]&1 != 0
	t.features = uint16(cdb[4])
	t.count = uint16(cdb[6])
	t.lba = uint64(cdb[8]) | uint64(cdb[10])<<8 | uint64(cdb[12])<<16
	if t.extend {
		t.features |= uint16(cdb[3]) << 8
		t.count |= uint16(cdb[5]) << 8
		t.lba |= uint64(cdb[7])<<24 | uint64(cdb[9])<<32 | uint64(cdb[11])<<40
	}
	t.device, t.command = cdb[13], cdb[14]
	return t
}

// ataSense is descriptor-format sense data with an ATA Status Return
// descriptor (SAT-3 12.2.2.6) carrying the registers.
func ataSense(key, asc, ascq byte, t ataTaskFile, status, errReg byte) []byte {
	s := make([]byte, 8+14)
	s[0], s[1], s[2], s[3], s[7] = 0x72, key, asc, ascq, 14
	d := s[8:]
	d[0], d[1] = 0x09, 0x0C
	if t.extend {
		d[2] = 1
	}
	d[3] = errReg
	d[4], d[5] = byte(t.count>>8), byte(t.count)
	d[6], d[7] = byte(t.lba>>24), byte(t.lba)
	d[8], d[9] = byte(t.lba>>32), byte(t.lba>>8)
	d[10], d[11] = byte(t.lba>>40), byte(t.lba>>16)
	d[12], d[13] = t.device, status
	return s
}

// ataPassThrough runs ATA PASS-THROUGH(12) or (16): IDENTIFY DEVICE,
// TRUSTED RECEIVE/SEND (into the Opal drive) and the ATA Security
// commands (into the ATA Security drive), as a SAT layer would.
func (d *Disk) ataPassThrough(cdb, data []byte) Response {
	t := parseATAPassThrough(cdb)
	ok := func(n int) Response {
		// CK_COND asks for the registers even on success: CHECK
		// CONDITION, RECOVERED ERROR, ATA PASS-THROUGH INFORMATION
		// AVAILABLE. The kernel's TCMU cannot return both data-in and
		// sense, so a data-in command that succeeded just returns its data.
		if t.ckCond && !(t.dataIn && n > 0) {
			return Response{Status: statusCheckCond, Sense: ataSense(keyRecovered, 0x00, 0x1D, t, ataStatusOK, 0)}
		}
		return good(n)
	}
	abort := func() Response {
		return Response{Status: statusCheckCond, Sense: ataSense(keyAborted, 0x00, 0x00, t, ataStatusErr, ataErrorAbort)}
	}
	switch t.command {
	case 0xEC: // IDENTIFY DEVICE
		if len(data) < 512 {
			return invalidField()
		}
		if d.ATA != nil {
			if err := d.ATA.ATA(context.Background(), sed.ATACommand{Protocol: 4, Command: 0xEC, Count: 1}, data[:512]); err != nil {
				return abort()
			}
		} else {
			d.identify(data[:512])
		}
		return ok(512)
	case 0x5C, 0x5D, 0x5E, 0x5F: // TRUSTED RECEIVE (DMA), TRUSTED SEND (DMA)
		if d.Opal == nil {
			return abort()
		}
		in := t.command <= 0x5D
		proto := sed.SecurityProtocol(t.features & 0xFF)
		comID := uint16(t.lba >> 8)
		n := (int(t.count&0xFF) | int(t.lba&0xFF)<<8) * 512
		if n > len(data) {
			return invalidField()
		}
		if err := d.securityExchange(in, proto, comID, data[:n]); err != nil {
			return abort()
		}
		if in {
			return ok(n)
		}
		return ok(0)
	case 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6: // SECURITY ...
		if d.ATA == nil {
			return abort()
		}
		var buf []byte
		if t.protocol == 5 || (t.protocol != 3 && !t.dataIn) {
			if len(data) < 512 {
				return invalidField()
			}
			buf = data[:512]
		}
		cmd := sed.ATACommand{Protocol: t.protocol, Command: t.command, Features: t.features, Count: t.count, LBA: t.lba, Device: t.device}
		err := d.ATA.ATA(context.Background(), cmd, buf)
		d.logf("ata security 0x%02x: %v", t.command, err)
		if errors.Is(err, sed.ErrATAAborted) {
			return abort()
		}
		if err != nil {
			return check(0x4, 0x44, 0x00) // HARDWARE ERROR, INTERNAL TARGET FAILURE
		}
		return ok(0)
	}
	return abort()
}

// identify fills IDENTIFY DEVICE data for the Opal personality: an LBA48
// disk with Trusted Computing supported (word 48) and no ATA Security.
func (d *Disk) identify(b []byte) {
	clear(b)
	put := func(w int, v uint16) { binary.LittleEndian.PutUint16(b[2*w:], v) }
	str := func(w, n int, s string) {
		p := padded(s, 2*n)
		for i := 0; i < 2*n; i += 2 {
			b[2*w+i], b[2*w+i+1] = p[i+1], p[i]
		}
	}
	str(10, 10, d.Serial)
	str(23, 4, d.Revision)
	str(27, 20, d.Product)
	sectors := uint64(d.Size / 512)
	put(49, 1<<9)            // LBA supported
	put(48, 0x4001)          // Trusted Computing feature set supported
	put(60, uint16(sectors)) // words 60-61: 28-bit capacity
	put(61, uint16(min(sectors, 0x0FFFFFFF)>>16))
	put(80, 0x01F0) // ATA8-ACS..ACS-4
	put(83, 0x4000|1<<10)
	put(86, 1<<10)
	put(100, uint16(sectors))
	put(101, uint16(sectors>>16))
	put(102, uint16(sectors>>32))
	put(106, 0x4000)
	b[510] = 0xA5
	var sum byte
	for _, c := range b[:511] {
		sum += c
	}
	b[511] = -sum
}
