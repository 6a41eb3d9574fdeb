package iouring

// The kernel's structures, from <linux/io_uring.h>. Offsets are checked
// against the header by TestStructLayouts.

// params is struct io_uring_params (120 bytes), filled in by
// io_uring_setup(2).
//
//	off  size  field
//	  0     4  sq_entries
//	  4     4  cq_entries
//	  8     4  flags
//	 12     4  sq_thread_cpu
//	 16     4  sq_thread_idle
//	 20     4  features
//	 24     4  wq_fd
//	 28    12  resv[3]
//	 40    40  sq_off (struct io_sqring_offsets)
//	 80    40  cq_off (struct io_cqring_offsets)
type params struct {
	SQEntries    uint32
	CQEntries    uint32
	Flags        uint32
	SQThreadCPU  uint32
	SQThreadIdle uint32
	Features     uint32
	WQFd         uint32
	Resv         [3]uint32
	SQOff        sqringOffsets
	CQOff        cqringOffsets
}

// sqringOffsets is struct io_sqring_offsets: where each field of the
// submission queue ring sits in its mmap.
type sqringOffsets struct {
	Head        uint32
	Tail        uint32
	RingMask    uint32
	RingEntries uint32
	Flags       uint32
	Dropped     uint32
	Array       uint32
	Resv1       uint32
	UserAddr    uint64
}

// cqringOffsets is struct io_cqring_offsets.
type cqringOffsets struct {
	Head        uint32
	Tail        uint32
	RingMask    uint32
	RingEntries uint32
	Overflow    uint32
	CQEs        uint32
	Flags       uint32
	Resv1       uint32
	UserAddr    uint64
}

// SQE is struct io_uring_sqe, a submission queue entry (64 bytes; in a
// ring set up with SQE128 each entry is 128 bytes and the command area
// that starts at offset 48 is 80 bytes long).
//
//	off  size  field
//	  0     1  opcode
//	  1     1  flags (IOSQE_*)
//	  2     2  ioprio
//	  4     4  fd
//	  8     8  off / addr2 / {cmd_op u32, pad u32}
//	 16     8  addr
//	 24     4  len
//	 28     4  op flags (rw_flags, uring_cmd_flags ...)
//	 32     8  user_data
//	 40     2  buf_index
//	 42     2  personality
//	 44     4  splice_fd_in / file_index
//	 48    16  addr3, pad / cmd[] (URING_CMD payload)
type SQE struct {
	Opcode      uint8
	Flags       uint8
	IOPrio      uint16
	Fd          int32
	Off         uint64 // for IORING_OP_URING_CMD: the command opcode in the low 32 bits (see SetCmdOp)
	Addr        uint64
	Len         uint32
	OpFlags     uint32
	UserData    uint64
	BufIndex    uint16
	Personality uint16
	SpliceFdIn  int32
	cmd         [16]byte // addr3 and pad; the start of the command area
}

// SetCmdOp sets the command opcode of an IORING_OP_URING_CMD entry (the
// cmd_op field shares its place with off).
func (s *SQE) SetCmdOp(op uint32) { s.Off = uint64(op) }

// CQE is struct io_uring_cqe, a completion queue entry (16 bytes).
type CQE struct {
	UserData uint64
	Res      int32 // the result: >= 0, or a negated errno
	Flags    uint32
}

// Opcodes (enum io_uring_op) this package's users need.
const (
	OpNop         = 0
	OpAsyncCancel = 14 // cancels the request whose user data is in Addr
	OpRead        = 22
	OpUringCmd    = 46
)

// SQE flags (IOSQE_*).
const (
	SQEAsync = 1 << 4 // IOSQE_ASYNC: issue from an io_uring worker thread
)

// Setup flags (IORING_SETUP_*).
const (
	SetupSQE128 = 1 << 10 // 128-byte submission entries (an 80-byte command area)
)

const (
	offSQRing = 0
	offCQRing = 0x8000000
	offSQEs   = 0x10000000

	enterGetEvents = 1 << 0 // IORING_ENTER_GETEVENTS

	featSingleMmap = 1 << 0 // IORING_FEAT_SINGLE_MMAP
)
