package sed

import (
	"context"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// nvmeAdminCmd mirrors struct nvme_admin_cmd (= struct nvme_passthru_cmd)
// of <linux/nvme_ioctl.h>: 72 bytes, offsets checked against the C header
// by TestStructLayouts.
type nvmeAdminCmd struct {
	Opcode      uint8  // 0
	Flags       uint8  // 1
	Rsvd1       uint16 // 2
	NSID        uint32 // 4
	Cdw2        uint32 // 8
	Cdw3        uint32 // 12
	Metadata    uint64 // 16
	Addr        uint64 // 24 user buffer address
	MetadataLen uint32 // 32
	DataLen     uint32 // 36
	Cdw10       uint32 // 40
	Cdw11       uint32 // 44
	Cdw12       uint32 // 48
	Cdw13       uint32 // 52
	Cdw14       uint32 // 56
	Cdw15       uint32 // 60
	TimeoutMs   uint32 // 64
	Result      uint32 // 68
}

// NVMe admin opcodes (NVM Express Base 2.0, 5.25/5.26) and the ioctl.
const (
	nvmeSecuritySend    = 0x81
	nvmeSecurityReceive = 0x82
	// NVME_IOCTL_ADMIN_CMD = _IOWR('N', 0x41, struct nvme_admin_cmd).
	nvmeIoctlAdminCmd = 3<<30 | uint(unsafe.Sizeof(nvmeAdminCmd{}))<<16 | 'N'<<8 | 0x41
)

// NVMeSecurityCommand builds Security Send or Receive: CDW10 = SECP(31:24)
// SPSP1(23:16) SPSP0(15:8) NSSF(7:0), CDW11 = transfer/allocation length.
func NVMeSecurityCommand(send bool, proto SecurityProtocol, spSpecific uint16, n int) nvmeAdminCmd {
	c := nvmeAdminCmd{Opcode: nvmeSecurityReceive, DataLen: uint32(n),
		Cdw10: uint32(proto)<<24 | uint32(spSpecific)<<8, Cdw11: uint32(n),
		TimeoutMs: uint32(commandTimeout.Milliseconds())}
	if send {
		c.Opcode = nvmeSecuritySend
	}
	return c
}

// NVMeTransport sends security protocols to an NVMe controller through
// NVME_IOCTL_ADMIN_CMD on a namespace or controller device.
type NVMeTransport struct{ fd int }

// NewNVMeTransport uses the open descriptor fd of /dev/nvmeXnY or /dev/nvmeX.
func NewNVMeTransport(fd int) *NVMeTransport { return &NVMeTransport{fd: fd} }

func (t *NVMeTransport) run(ctx context.Context, send bool, proto SecurityProtocol, spSpecific uint16, buf []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c := NVMeSecurityCommand(send, proto, spSpecific, len(buf))
	if len(buf) > 0 {
		c.Addr = uint64(uintptr(unsafe.Pointer(&buf[0])))
	}
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(t.fd), uintptr(nvmeIoctlAdminCmd), uintptr(unsafe.Pointer(&c)))
	runtime.KeepAlive(buf)
	if errno != 0 {
		return fmt.Errorf("NVME_IOCTL_ADMIN_CMD: %w", errno)
	}
	if r != 0 {
		// A positive return is the NVMe status field (SCT/SC).
		return fmt.Errorf("NVMe status 0x%x", r)
	}
	return nil
}

// IFRecv implements Transport with Security Receive.
func (t *NVMeTransport) IFRecv(ctx context.Context, proto SecurityProtocol, spSpecific uint16, buf []byte) error {
	if err := t.run(ctx, false, proto, spSpecific, buf); err != nil {
		return fmt.Errorf("Security Receive: %w", err)
	}
	return nil
}

// IFSend implements Transport with Security Send.
func (t *NVMeTransport) IFSend(ctx context.Context, proto SecurityProtocol, spSpecific uint16, data []byte) error {
	if err := t.run(ctx, true, proto, spSpecific, data); err != nil {
		return fmt.Errorf("Security Send: %w", err)
	}
	return nil
}
