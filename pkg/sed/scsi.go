package sed

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"
)

// SCSI SECURITY PROTOCOL IN (A2h) and OUT (B5h), SPC-4 6.40 and 6.41:
//
//	0 opcode  1 security protocol  2-3 security protocol specific (ComID)
//	4 bit 7 INC_512 (0: lengths in bytes)  5 reserved
//	6-9 allocation / transfer length  10 reserved  11 control
const (
	opSecurityProtocolIn  = 0xA2
	opSecurityProtocolOut = 0xB5
	// commandTimeout bounds one security command; GenKey and Revert of
	// large drives are the slow ones.
	commandTimeout = 60 * time.Second
)

// SecurityProtocolInCDB builds SECURITY PROTOCOL IN for length bytes.
func SecurityProtocolInCDB(proto SecurityProtocol, spSpecific uint16, length uint32) [12]byte {
	return securityProtocolCDB(opSecurityProtocolIn, proto, spSpecific, length)
}

// SecurityProtocolOutCDB builds SECURITY PROTOCOL OUT for length bytes.
func SecurityProtocolOutCDB(proto SecurityProtocol, spSpecific uint16, length uint32) [12]byte {
	return securityProtocolCDB(opSecurityProtocolOut, proto, spSpecific, length)
}

func securityProtocolCDB(op byte, proto SecurityProtocol, spSpecific uint16, length uint32) [12]byte {
	var c [12]byte
	c[0], c[1] = op, byte(proto)
	binary.BigEndian.PutUint16(c[2:], spSpecific)
	binary.BigEndian.PutUint32(c[6:], length)
	return c
}

// SCSITransport sends security protocols to a SCSI disk (SAS, USB UAS,
// or anything the kernel's SCSI layer translates) through SG_IO.
type SCSITransport struct{ fd int }

// NewSCSITransport uses the open block-device descriptor fd.
func NewSCSITransport(fd int) *SCSITransport { return &SCSITransport{fd: fd} }

// IFRecv implements Transport.
func (s *SCSITransport) IFRecv(ctx context.Context, proto SecurityProtocol, spSpecific uint16, buf []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	cdb := SecurityProtocolInCDB(proto, spSpecific, uint32(len(buf)))
	if err := sgCommand(s.fd, cdb[:], sgDxferFromDev, buf, commandTimeout); err != nil {
		return fmt.Errorf("SECURITY PROTOCOL IN: %w", err)
	}
	return nil
}

// IFSend implements Transport.
func (s *SCSITransport) IFSend(ctx context.Context, proto SecurityProtocol, spSpecific uint16, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	cdb := SecurityProtocolOutCDB(proto, spSpecific, uint32(len(data)))
	if err := sgCommand(s.fd, cdb[:], sgDxferToDev, data, commandTimeout); err != nil {
		return fmt.Errorf("SECURITY PROTOCOL OUT: %w", err)
	}
	return nil
}
