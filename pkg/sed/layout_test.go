package sed

import (
	"testing"
	"unsafe"

	"github.com/encblk/encblk/internal/testutil"
)

// TestStructLayouts compiles a C program against the kernel's uapi headers
// (<scsi/sg.h> from libc6-dev, <linux/nvme_ioctl.h> from linux-libc-dev)
// and compares sizes and offsets with the Go mirrors of the structs the
// ioctls take.
func TestStructLayouts(t *testing.T) {
	t.Parallel()
	src := `#include <stdio.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <scsi/sg.h>
#include <linux/nvme_ioctl.h>
#define F(s, f) printf(#s "." #f " %zu\n", offsetof(struct s, f))
int main(void) {
	printf("sg_io_hdr %zu\n", sizeof(struct sg_io_hdr));
	F(sg_io_hdr, interface_id); F(sg_io_hdr, dxfer_direction); F(sg_io_hdr, cmd_len);
	F(sg_io_hdr, mx_sb_len); F(sg_io_hdr, iovec_count); F(sg_io_hdr, dxfer_len);
	F(sg_io_hdr, dxferp); F(sg_io_hdr, cmdp); F(sg_io_hdr, sbp); F(sg_io_hdr, timeout);
	F(sg_io_hdr, flags); F(sg_io_hdr, pack_id); F(sg_io_hdr, usr_ptr); F(sg_io_hdr, status);
	F(sg_io_hdr, masked_status); F(sg_io_hdr, msg_status); F(sg_io_hdr, sb_len_wr);
	F(sg_io_hdr, host_status); F(sg_io_hdr, driver_status); F(sg_io_hdr, resid);
	F(sg_io_hdr, duration); F(sg_io_hdr, info);
	printf("SG_IO %u\n", (unsigned)SG_IO);
	printf("nvme_admin_cmd %zu\n", sizeof(struct nvme_admin_cmd));
	F(nvme_admin_cmd, opcode); F(nvme_admin_cmd, flags); F(nvme_admin_cmd, nsid);
	F(nvme_admin_cmd, cdw2); F(nvme_admin_cmd, cdw3); F(nvme_admin_cmd, metadata);
	F(nvme_admin_cmd, addr); F(nvme_admin_cmd, metadata_len); F(nvme_admin_cmd, data_len);
	F(nvme_admin_cmd, cdw10); F(nvme_admin_cmd, cdw11); F(nvme_admin_cmd, cdw12);
	F(nvme_admin_cmd, cdw13); F(nvme_admin_cmd, cdw14); F(nvme_admin_cmd, cdw15);
	F(nvme_admin_cmd, timeout_ms); F(nvme_admin_cmd, result);
	printf("NVME_IOCTL_ADMIN_CMD %lu\n", (unsigned long)NVME_IOCTL_ADMIN_CMD);
	return 0;
}
`
	c := testutil.CValues(t, src, map[string]string{
		"/usr/include/scsi/sg.h": "libc6-dev", "/usr/include/linux/nvme_ioctl.h": "linux-libc-dev"})
	var sg sgIOHdr
	var nv nvmeAdminCmd
	want := map[string]uintptr{
		"sg_io_hdr": unsafe.Sizeof(sg), "SG_IO": sgIO,
		"sg_io_hdr.interface_id": unsafe.Offsetof(sg.InterfaceID), "sg_io_hdr.dxfer_direction": unsafe.Offsetof(sg.DxferDirection),
		"sg_io_hdr.cmd_len": unsafe.Offsetof(sg.CmdLen), "sg_io_hdr.mx_sb_len": unsafe.Offsetof(sg.MxSbLen),
		"sg_io_hdr.iovec_count": unsafe.Offsetof(sg.IovecCount), "sg_io_hdr.dxfer_len": unsafe.Offsetof(sg.DxferLen),
		"sg_io_hdr.dxferp": unsafe.Offsetof(sg.Dxferp), "sg_io_hdr.cmdp": unsafe.Offsetof(sg.Cmdp),
		"sg_io_hdr.sbp": unsafe.Offsetof(sg.Sbp), "sg_io_hdr.timeout": unsafe.Offsetof(sg.Timeout),
		"sg_io_hdr.flags": unsafe.Offsetof(sg.Flags), "sg_io_hdr.pack_id": unsafe.Offsetof(sg.PackID),
		"sg_io_hdr.usr_ptr": unsafe.Offsetof(sg.UsrPtr), "sg_io_hdr.status": unsafe.Offsetof(sg.Status),
		"sg_io_hdr.masked_status": unsafe.Offsetof(sg.MaskedStatus), "sg_io_hdr.msg_status": unsafe.Offsetof(sg.MsgStatus),
		"sg_io_hdr.sb_len_wr": unsafe.Offsetof(sg.SbLenWr), "sg_io_hdr.host_status": unsafe.Offsetof(sg.HostStatus),
		"sg_io_hdr.driver_status": unsafe.Offsetof(sg.DriverStatus), "sg_io_hdr.resid": unsafe.Offsetof(sg.Resid),
		"sg_io_hdr.duration": unsafe.Offsetof(sg.Duration), "sg_io_hdr.info": unsafe.Offsetof(sg.Info),
		"nvme_admin_cmd": unsafe.Sizeof(nv), "NVME_IOCTL_ADMIN_CMD": uintptr(nvmeIoctlAdminCmd),
		"nvme_admin_cmd.opcode": unsafe.Offsetof(nv.Opcode), "nvme_admin_cmd.flags": unsafe.Offsetof(nv.Flags),
		"nvme_admin_cmd.nsid": unsafe.Offsetof(nv.NSID), "nvme_admin_cmd.cdw2": unsafe.Offsetof(nv.Cdw2),
		"nvme_admin_cmd.cdw3": unsafe.Offsetof(nv.Cdw3), "nvme_admin_cmd.metadata": unsafe.Offsetof(nv.Metadata),
		"nvme_admin_cmd.addr": unsafe.Offsetof(nv.Addr), "nvme_admin_cmd.metadata_len": unsafe.Offsetof(nv.MetadataLen),
		"nvme_admin_cmd.data_len": unsafe.Offsetof(nv.DataLen), "nvme_admin_cmd.cdw10": unsafe.Offsetof(nv.Cdw10),
		"nvme_admin_cmd.cdw11": unsafe.Offsetof(nv.Cdw11), "nvme_admin_cmd.cdw12": unsafe.Offsetof(nv.Cdw12),
		"nvme_admin_cmd.cdw13": unsafe.Offsetof(nv.Cdw13), "nvme_admin_cmd.cdw14": unsafe.Offsetof(nv.Cdw14),
		"nvme_admin_cmd.cdw15": unsafe.Offsetof(nv.Cdw15), "nvme_admin_cmd.timeout_ms": unsafe.Offsetof(nv.TimeoutMs),
		"nvme_admin_cmd.result": unsafe.Offsetof(nv.Result),
	}
	w := map[string]uint64{}
	for k, v := range want {
		w[k] = uint64(v)
	}
	testutil.CompareValues(t, c, w)
}
