package ublk

// The ublk driver's interface, from <linux/ublk_cmd.h>. Layouts are checked
// against the header by TestStructLayouts; the ioctl-encoded opcodes
// (UBLK_U_*) are newer than Debian 12's header and are built here from the
// command numbers with the kernel's _IOR/_IOWR rule, which the test checks
// with <linux/ioctl.h>.

// ctrlCmd is struct ublksrv_ctrl_cmd (32 bytes), the payload of a control
// command in the 80-byte command area of an SQE128 entry.
//
//	off  size  field
//	  0     4  dev_id (0xffffffff at ADD_DEV: any free id)
//	  4     2  queue_id (0xffff: not a queue command)
//	  6     2  len (of the buffer at addr)
//	  8     8  addr (in/out buffer)
//	 16    16  data[2] (inline arguments: the server's pid at START_DEV)
type ctrlCmd struct {
	DevID   uint32
	QueueID uint16
	Len     uint16
	Addr    uint64
	Data    [2]uint64
}

// DevInfo is struct ublksrv_ctrl_dev_info (64 bytes): what ADD_DEV creates
// and GET_DEV_INFO reports.
//
//	off  size  field
//	  0     2  nr_hw_queues
//	  2     2  queue_depth
//	  4     2  state (UBLK_S_DEV_*)
//	  8     4  max_io_buf_bytes
//	 12     4  dev_id
//	 16     4  ublksrv_pid
//	 24     8  flags (UBLK_F_*)
//	 32     8  ublksrv_flags (the server's own; encblk: the owner tag)
//	 40     4  owner_uid (6.5+; reserved before)
//	 44     4  owner_gid
//	 48    16  reserved
type DevInfo struct {
	NrHWQueues    uint16
	QueueDepth    uint16
	State         uint16
	_             uint16
	MaxIOBufBytes uint32
	DevID         uint32
	ServerPID     int32
	_             uint32
	Flags         uint64
	ServerFlags   uint64
	OwnerUID      uint32
	OwnerGID      uint32
	_             [2]uint64
}

// Device states (UBLK_S_DEV_*).
const (
	StateDead     = 0
	StateLive     = 1
	StateQuiesced = 2
)

// ioDesc is struct ublksrv_io_desc (24 bytes), one per tag in the queue's
// read-only mmap of the char device: the request the kernel hands over.
//
//	off  size  field
//	  0     4  op_flags (op in bits 0-7, UBLK_IO_F_* above)
//	  4     4  nr_sectors (512-byte units, whatever the block size)
//	  8     8  start_sector (512-byte units)
//	 16     8  addr (the buffer given at FETCH)
type ioDesc struct {
	OpFlags     uint32
	NrSectors   uint32
	StartSector uint64
	Addr        uint64
}

// ioCmd is struct ublksrv_io_cmd (16 bytes), the payload of FETCH_REQ and
// COMMIT_AND_FETCH_REQ in a 64-byte SQE's command area.
//
//	off  size  field
//	  0     2  q_id
//	  2     2  tag
//	  4     4  result (COMMIT: bytes done or -errno)
//	  8     8  addr (the tag's data buffer)
type ioCmd struct {
	QID    uint16
	Tag    uint16
	Result int32
	Addr   uint64
}

// paramBasic is struct ublk_param_basic (32 bytes).
type paramBasic struct {
	Attrs            uint32
	LogicalBSShift   uint8
	PhysicalBSShift  uint8
	IOOptShift       uint8
	IOMinShift       uint8
	MaxSectors       uint32
	ChunkSectors     uint32
	DevSectors       uint64
	VirtBoundaryMask uint64
}

// paramDiscard is struct ublk_param_discard (20 bytes).
type paramDiscard struct {
	DiscardAlignment      uint32
	DiscardGranularity    uint32
	MaxDiscardSectors     uint32
	MaxWriteZeroesSectors uint32
	MaxDiscardSegments    uint16
	_                     uint16
}

// params is the prefix of struct ublk_params this package sets: the
// header (len, types), basic and discard. The kernel takes len bytes and
// ignores the types it is not told about.
type params struct {
	Len     uint32
	Types   uint32
	Basic   paramBasic
	Discard paramDiscard
}

const (
	paramTypeBasic   = 1 << 0
	paramTypeDiscard = 1 << 1

	attrReadOnly      = 1 << 0
	attrVolatileCache = 1 << 2
	attrFUA           = 1 << 3
)

// Control command numbers (UBLK_CMD_*).
const (
	cmdGetDevInfo    = 0x02
	cmdAddDev        = 0x04
	cmdDelDev        = 0x05
	cmdStartDev      = 0x06
	cmdStopDev       = 0x07
	cmdSetParams     = 0x08
	cmdGetParams     = 0x09
	cmdStartRecovery = 0x10
	cmdEndRecovery   = 0x11
	cmdGetFeatures   = 0x13
	cmdDelDevAsync   = 0x14
)

// I/O command numbers (UBLK_IO_*) and results.
const (
	ioFetchReq       = 0x20
	ioCommitFetchReq = 0x21

	ioResOK    = 0
	ioResAbort = -19 // -ENODEV: the command is cancelled, do not fetch again
)

// I/O operations and flags (UBLK_IO_OP_*, UBLK_IO_F_*).
const (
	opRead        = 0
	opWrite       = 1
	opFlush       = 2
	opDiscard     = 3
	opWriteZeroes = 5

	ioFlagFUA     = 1 << 13
	ioFlagNoUnmap = 1 << 15
)

// Feature flags (UBLK_F_*).
const (
	FlagUserRecovery        = 1 << 3
	FlagUserRecoveryReissue = 1 << 4
	FlagCmdIoctlEncode      = 1 << 6
)

const (
	maxQueueDepth = 4096 // UBLK_MAX_QUEUE_DEPTH: tags are 12 bits
	// cmdBufMax is the mmap offset stride between queues' descriptor
	// arrays: room for UBLK_MAX_QUEUE_DEPTH descriptors, page-rounded.
	cmdBufMax = (maxQueueDepth*24 + 4095) &^ 4095
)

// ioctl encoding (<asm-generic/ioctl.h>): dir<<30 | size<<16 | type<<8 | nr.
func ior(nr, size uint32) uint32  { return 2<<30 | size<<16 | 'u'<<8 | nr }
func iowr(nr, size uint32) uint32 { return 3<<30 | size<<16 | 'u'<<8 | nr }

// ctrlOp is the ioctl-encoded opcode of control command nr (UBLK_U_CMD_*):
// the getters are _IOR, the rest _IOWR, on struct ublksrv_ctrl_cmd.
func ctrlOp(nr uint32) uint32 {
	switch nr {
	case cmdGetDevInfo, cmdGetParams, cmdGetFeatures, cmdDelDevAsync:
		return ior(nr, 32)
	}
	return iowr(nr, 32)
}

// ioOp is the ioctl-encoded opcode of I/O command nr (UBLK_U_IO_*):
// _IOWR on struct ublksrv_io_cmd.
func ioOp(nr uint32) uint32 { return iowr(nr, 16) }
