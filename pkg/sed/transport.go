package sed

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// SecurityProtocol is the Security Protocol field of SCSI SECURITY
// PROTOCOL IN/OUT (SPC-4 table 265), ATA TRUSTED RECEIVE/SEND and NVMe
// Security Receive/Send.
type SecurityProtocol uint8

// Security protocols used here.
const (
	// ProtocolInfo (0x00) lists the supported protocols.
	ProtocolInfo SecurityProtocol = 0x00
	// ProtocolTCG (0x01) carries Level 0 Discovery and ComPackets.
	ProtocolTCG SecurityProtocol = 0x01
	// ProtocolTCGManagement (0x02) carries ComID management and TPer reset.
	ProtocolTCGManagement SecurityProtocol = 0x02
	// ProtocolATASecurity (0xEF) is the ATA Device Server Password
	// Security protocol of SAT.
	ProtocolATASecurity SecurityProtocol = 0xEF
)

// Transport moves security-protocol buffers to and from one device. The
// spSpecific field is the ComID for TCG protocols. Implementations: the
// SCSI, ATA and NVMe transports of this package and sedsim's simulated
// drive.
type Transport interface {
	// IFRecv reads len(buf) bytes of protocol data into buf (IF-RECV).
	// A device that has less to say pads with zeros.
	IFRecv(ctx context.Context, proto SecurityProtocol, spSpecific uint16, buf []byte) error
	// IFSend sends data (IF-SEND). The length is a multiple of 512 for
	// ATA and SCSI transports; callers pad (padTransfer).
	IFSend(ctx context.Context, proto SecurityProtocol, spSpecific uint16, data []byte) error
}

// padTransfer rounds a transfer length up to whole 512-byte blocks, the
// unit ATA TRUSTED SEND/RECEIVE move (SCSI and NVMe accept it too).
func padTransfer(n int) int { return (n + 511) &^ 511 }

// ErrNotSupported is returned when a device answers no TCG or ATA
// security protocol: it is not a self-encrypting drive, or its transport
// does not pass the commands through.
var ErrNotSupported = errors.New("no TCG/ATA security support")

// ErrDeviceFailed is wrapped when a security command failed in a way
// that says nothing about the device's support: it timed out, was
// aborted, or the transport reported an error. Unlike ErrNotSupported, the
// device may well be a self-encrypting drive in trouble.
var ErrDeviceFailed = errors.New("the device failed a security command")

// refused reports whether err is the device refusing a command it does
// not support: SCSI ILLEGAL REQUEST (invalid opcode or field), an ATA
// abort (ABRT) of TRUSTED RECEIVE, or an SG_IO the device node does not
// take. Timeouts, aborted commands, transport errors and anything else
// are not refusals.
func refused(err error) bool {
	var se *SenseError
	if errors.As(err, &se) {
		if se.Host != 0 {
			return false // DID_TIME_OUT, DID_ABORT...: the transport failed
		}
		return se.Key == SenseIllegalRequest || se.ATAError&0x04 != 0
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		return errno == unix.ENOTTY || errno == unix.EINVAL || errno == unix.EOPNOTSUPP || errno == unix.ENOSYS
	}
	// Simulated drives and other transports report refusals as plain
	// errors.
	return !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled)
}

// discoveryError classifies a failed Level 0 Discovery command.
func discoveryError(err error) error {
	if refused(err) {
		return fmt.Errorf("%w: level 0 discovery: %v", ErrNotSupported, err)
	}
	return fmt.Errorf("%w: level 0 discovery: %w", ErrDeviceFailed, err)
}

// Discover performs Level 0 Discovery. A device that rejects the command
// or returns no feature descriptors yields an error wrapping
// ErrNotSupported; nothing else is sent to it. A command that fails
// otherwise (timeout, aborted, transport error) yields ErrDeviceFailed.
func Discover(ctx context.Context, t Transport) (*Discovery, error) {
	buf := make([]byte, defaultDiscoveryBytes)
	if err := t.IFRecv(ctx, ProtocolTCG, discoveryComID, buf); err != nil {
		return nil, discoveryError(err)
	}
	if allZero(buf) {
		return nil, fmt.Errorf("%w: empty level 0 discovery response", ErrNotSupported)
	}
	// A response longer than the first buffer: read it again whole.
	if n := int(uint32(buf[0])<<24|uint32(buf[1])<<16|uint32(buf[2])<<8|uint32(buf[3])) + 4; n > len(buf) && n <= maxDiscoveryLen {
		buf = make([]byte, padTransfer(n))
		if err := t.IFRecv(ctx, ProtocolTCG, discoveryComID, buf); err != nil {
			return nil, discoveryError(err)
		}
	}
	d, err := ParseDiscovery(buf)
	if err != nil {
		return nil, fmt.Errorf("level 0 discovery: %w", err)
	}
	if len(d.Features) == 0 {
		return nil, fmt.Errorf("%w: level 0 discovery lists no features", ErrNotSupported)
	}
	return d, nil
}
