package ublk

import (
	"testing"
	"unsafe"

	"github.com/encblk/encblk/internal/testutil"
)

// TestStructLayouts checks the Go mirrors of the ublk structs and
// constants against <linux/ublk_cmd.h> (linux-libc-dev), and the
// ioctl-encoded opcodes against <linux/ioctl.h>'s _IOR/_IOWR.
func TestStructLayouts(t *testing.T) {
	t.Parallel()
	src := `#include <stdio.h>
#include <stddef.h>
#include <errno.h>
#include <linux/ioctl.h>
#include <linux/ublk_cmd.h>
#define F(s, f) printf(#s "." #f " %zu\n", offsetof(struct s, f))
#define S(s) printf("sizeof." #s " %zu\n", sizeof(struct s))
#define V(x) printf(#x " %lld\n", (long long)(x))
#define U(x) printf(#x " %llu\n", (unsigned long long)(x))
#define N(n, x) printf(n " %llu\n", (unsigned long long)(x))
int main(void) {
	S(ublksrv_ctrl_cmd); S(ublksrv_ctrl_dev_info); S(ublksrv_io_desc); S(ublksrv_io_cmd);
	S(ublk_param_basic); S(ublk_param_discard);
	F(ublksrv_ctrl_cmd, dev_id); F(ublksrv_ctrl_cmd, queue_id); F(ublksrv_ctrl_cmd, len);
	F(ublksrv_ctrl_cmd, addr); F(ublksrv_ctrl_cmd, data);
	F(ublksrv_ctrl_dev_info, nr_hw_queues); F(ublksrv_ctrl_dev_info, queue_depth); F(ublksrv_ctrl_dev_info, state);
	F(ublksrv_ctrl_dev_info, max_io_buf_bytes); F(ublksrv_ctrl_dev_info, dev_id); F(ublksrv_ctrl_dev_info, ublksrv_pid);
	F(ublksrv_ctrl_dev_info, flags); F(ublksrv_ctrl_dev_info, ublksrv_flags);
	F(ublksrv_io_desc, op_flags); F(ublksrv_io_desc, nr_sectors); F(ublksrv_io_desc, start_sector); F(ublksrv_io_desc, addr);
	F(ublksrv_io_cmd, q_id); F(ublksrv_io_cmd, tag); F(ublksrv_io_cmd, result); F(ublksrv_io_cmd, addr);
	F(ublk_param_basic, attrs); F(ublk_param_basic, logical_bs_shift); F(ublk_param_basic, physical_bs_shift);
	F(ublk_param_basic, io_opt_shift); F(ublk_param_basic, io_min_shift); F(ublk_param_basic, max_sectors);
	F(ublk_param_basic, chunk_sectors); F(ublk_param_basic, dev_sectors); F(ublk_param_basic, virt_boundary_mask);
	F(ublk_param_discard, discard_alignment); F(ublk_param_discard, discard_granularity);
	F(ublk_param_discard, max_discard_sectors); F(ublk_param_discard, max_write_zeroes_sectors);
	F(ublk_param_discard, max_discard_segments);
	F(ublk_params, len); F(ublk_params, types); F(ublk_params, basic); F(ublk_params, discard);
	V(UBLK_CMD_GET_DEV_INFO); V(UBLK_CMD_ADD_DEV); V(UBLK_CMD_DEL_DEV); V(UBLK_CMD_START_DEV); V(UBLK_CMD_STOP_DEV);
	V(UBLK_CMD_SET_PARAMS); V(UBLK_CMD_GET_PARAMS); V(UBLK_CMD_START_USER_RECOVERY); V(UBLK_CMD_END_USER_RECOVERY);
	V(UBLK_IO_FETCH_REQ); V(UBLK_IO_COMMIT_AND_FETCH_REQ); V(UBLK_IO_RES_OK); U(UBLK_IO_RES_ABORT);
	V(UBLK_IO_OP_READ); V(UBLK_IO_OP_WRITE); V(UBLK_IO_OP_FLUSH); V(UBLK_IO_OP_DISCARD); V(UBLK_IO_OP_WRITE_ZEROES);
	V(UBLK_IO_F_FUA); V(UBLK_IO_F_NOUNMAP); V(UBLK_MAX_QUEUE_DEPTH);
	V(UBLK_F_USER_RECOVERY); V(UBLK_F_USER_RECOVERY_REISSUE);
	V(UBLK_S_DEV_DEAD); V(UBLK_S_DEV_LIVE); V(UBLK_S_DEV_QUIESCED);
	V(UBLK_PARAM_TYPE_BASIC); V(UBLK_PARAM_TYPE_DISCARD);
	V(UBLK_ATTR_READ_ONLY); V(UBLK_ATTR_VOLATILE_CACHE); V(UBLK_ATTR_FUA);
	/* The ioctl encodings of newer headers (UBLK_U_*), spelt as they define them. */
	N("UBLK_U_CMD_GET_FEATURES", _IOR('u', 0x13, struct ublksrv_ctrl_cmd));
	N("UBLK_U_CMD_GET_DEV_INFO", _IOR('u', UBLK_CMD_GET_DEV_INFO, struct ublksrv_ctrl_cmd));
	N("UBLK_U_CMD_ADD_DEV", _IOWR('u', UBLK_CMD_ADD_DEV, struct ublksrv_ctrl_cmd));
	N("UBLK_U_CMD_START_DEV", _IOWR('u', UBLK_CMD_START_DEV, struct ublksrv_ctrl_cmd));
	N("UBLK_U_CMD_DEL_DEV_ASYNC", _IOR('u', 0x14, struct ublksrv_ctrl_cmd));
	N("UBLK_U_IO_FETCH_REQ", _IOWR('u', UBLK_IO_FETCH_REQ, struct ublksrv_io_cmd));
	N("UBLK_U_IO_COMMIT_AND_FETCH_REQ", _IOWR('u', UBLK_IO_COMMIT_AND_FETCH_REQ, struct ublksrv_io_cmd));
	return 0;
}
`
	c := testutil.CValues(t, src, map[string]string{"/usr/include/linux/ublk_cmd.h": "linux-libc-dev"})
	var cc ctrlCmd
	var di DevInfo
	var d ioDesc
	var io ioCmd
	var p params
	u := func(v uintptr) uint64 { return uint64(v) }
	neg := func(v int64) uint64 { return uint64(v) }
	testutil.CompareValues(t, c, map[string]uint64{
		"sizeof.ublksrv_ctrl_cmd": u(unsafe.Sizeof(cc)), "sizeof.ublksrv_ctrl_dev_info": u(unsafe.Sizeof(di)),
		"sizeof.ublksrv_io_desc": u(unsafe.Sizeof(d)), "sizeof.ublksrv_io_cmd": u(unsafe.Sizeof(io)),
		"sizeof.ublk_param_basic": u(unsafe.Sizeof(p.Basic)), "sizeof.ublk_param_discard": u(unsafe.Sizeof(p.Discard)),
		"ublksrv_ctrl_cmd.dev_id": u(unsafe.Offsetof(cc.DevID)), "ublksrv_ctrl_cmd.queue_id": u(unsafe.Offsetof(cc.QueueID)),
		"ublksrv_ctrl_cmd.len": u(unsafe.Offsetof(cc.Len)), "ublksrv_ctrl_cmd.addr": u(unsafe.Offsetof(cc.Addr)),
		"ublksrv_ctrl_cmd.data":              u(unsafe.Offsetof(cc.Data)),
		"ublksrv_ctrl_dev_info.nr_hw_queues": u(unsafe.Offsetof(di.NrHWQueues)), "ublksrv_ctrl_dev_info.queue_depth": u(unsafe.Offsetof(di.QueueDepth)),
		"ublksrv_ctrl_dev_info.state": u(unsafe.Offsetof(di.State)), "ublksrv_ctrl_dev_info.max_io_buf_bytes": u(unsafe.Offsetof(di.MaxIOBufBytes)),
		"ublksrv_ctrl_dev_info.dev_id": u(unsafe.Offsetof(di.DevID)), "ublksrv_ctrl_dev_info.ublksrv_pid": u(unsafe.Offsetof(di.ServerPID)),
		"ublksrv_ctrl_dev_info.flags": u(unsafe.Offsetof(di.Flags)), "ublksrv_ctrl_dev_info.ublksrv_flags": u(unsafe.Offsetof(di.ServerFlags)),
		"ublksrv_io_desc.op_flags": u(unsafe.Offsetof(d.OpFlags)), "ublksrv_io_desc.nr_sectors": u(unsafe.Offsetof(d.NrSectors)),
		"ublksrv_io_desc.start_sector": u(unsafe.Offsetof(d.StartSector)), "ublksrv_io_desc.addr": u(unsafe.Offsetof(d.Addr)),
		"ublksrv_io_cmd.q_id": u(unsafe.Offsetof(io.QID)), "ublksrv_io_cmd.tag": u(unsafe.Offsetof(io.Tag)),
		"ublksrv_io_cmd.result": u(unsafe.Offsetof(io.Result)), "ublksrv_io_cmd.addr": u(unsafe.Offsetof(io.Addr)),
		"ublk_param_basic.attrs": u(unsafe.Offsetof(p.Basic.Attrs)), "ublk_param_basic.logical_bs_shift": u(unsafe.Offsetof(p.Basic.LogicalBSShift)),
		"ublk_param_basic.physical_bs_shift": u(unsafe.Offsetof(p.Basic.PhysicalBSShift)), "ublk_param_basic.io_opt_shift": u(unsafe.Offsetof(p.Basic.IOOptShift)),
		"ublk_param_basic.io_min_shift": u(unsafe.Offsetof(p.Basic.IOMinShift)), "ublk_param_basic.max_sectors": u(unsafe.Offsetof(p.Basic.MaxSectors)),
		"ublk_param_basic.chunk_sectors": u(unsafe.Offsetof(p.Basic.ChunkSectors)), "ublk_param_basic.dev_sectors": u(unsafe.Offsetof(p.Basic.DevSectors)),
		"ublk_param_basic.virt_boundary_mask":  u(unsafe.Offsetof(p.Basic.VirtBoundaryMask)),
		"ublk_param_discard.discard_alignment": u(unsafe.Offsetof(p.Discard.DiscardAlignment)), "ublk_param_discard.discard_granularity": u(unsafe.Offsetof(p.Discard.DiscardGranularity)),
		"ublk_param_discard.max_discard_sectors": u(unsafe.Offsetof(p.Discard.MaxDiscardSectors)), "ublk_param_discard.max_write_zeroes_sectors": u(unsafe.Offsetof(p.Discard.MaxWriteZeroesSectors)),
		"ublk_param_discard.max_discard_segments": u(unsafe.Offsetof(p.Discard.MaxDiscardSegments)),
		"ublk_params.len":                         u(unsafe.Offsetof(p.Len)), "ublk_params.types": u(unsafe.Offsetof(p.Types)),
		"ublk_params.basic": u(unsafe.Offsetof(p.Basic)), "ublk_params.discard": u(unsafe.Offsetof(p.Discard)),
		"UBLK_CMD_GET_DEV_INFO": cmdGetDevInfo, "UBLK_CMD_ADD_DEV": cmdAddDev, "UBLK_CMD_DEL_DEV": cmdDelDev,
		"UBLK_CMD_START_DEV": cmdStartDev, "UBLK_CMD_STOP_DEV": cmdStopDev, "UBLK_CMD_SET_PARAMS": cmdSetParams,
		"UBLK_CMD_GET_PARAMS": cmdGetParams, "UBLK_CMD_START_USER_RECOVERY": cmdStartRecovery,
		"UBLK_CMD_END_USER_RECOVERY": cmdEndRecovery, "UBLK_IO_FETCH_REQ": ioFetchReq,
		"UBLK_IO_COMMIT_AND_FETCH_REQ": ioCommitFetchReq, "UBLK_IO_RES_OK": ioResOK, "UBLK_IO_RES_ABORT": neg(ioResAbort),
		"UBLK_IO_OP_READ": opRead, "UBLK_IO_OP_WRITE": opWrite, "UBLK_IO_OP_FLUSH": opFlush, "UBLK_IO_OP_DISCARD": opDiscard,
		"UBLK_IO_OP_WRITE_ZEROES": opWriteZeroes, "UBLK_IO_F_FUA": ioFlagFUA, "UBLK_IO_F_NOUNMAP": ioFlagNoUnmap,
		"UBLK_MAX_QUEUE_DEPTH": maxQueueDepth, "UBLK_F_USER_RECOVERY": FlagUserRecovery,
		"UBLK_F_USER_RECOVERY_REISSUE": FlagUserRecoveryReissue,
		"UBLK_S_DEV_DEAD":              StateDead, "UBLK_S_DEV_LIVE": StateLive, "UBLK_S_DEV_QUIESCED": StateQuiesced,
		"UBLK_PARAM_TYPE_BASIC": paramTypeBasic, "UBLK_PARAM_TYPE_DISCARD": paramTypeDiscard,
		"UBLK_ATTR_READ_ONLY": attrReadOnly, "UBLK_ATTR_VOLATILE_CACHE": attrVolatileCache, "UBLK_ATTR_FUA": attrFUA,
		"UBLK_U_CMD_GET_FEATURES":        uint64(ctrlOp(cmdGetFeatures)),
		"UBLK_U_CMD_GET_DEV_INFO":        uint64(ctrlOp(cmdGetDevInfo)),
		"UBLK_U_CMD_ADD_DEV":             uint64(ctrlOp(cmdAddDev)),
		"UBLK_U_CMD_START_DEV":           uint64(ctrlOp(cmdStartDev)),
		"UBLK_U_CMD_DEL_DEV_ASYNC":       uint64(ctrlOp(cmdDelDevAsync)),
		"UBLK_U_IO_FETCH_REQ":            uint64(ioOp(ioFetchReq)),
		"UBLK_U_IO_COMMIT_AND_FETCH_REQ": uint64(ioOp(ioCommitFetchReq)),
	})
}
