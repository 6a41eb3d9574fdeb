package iouring

import (
	"testing"
	"unsafe"

	"github.com/encblk/encblk/internal/testutil"
)

// TestStructLayouts checks the Go mirrors of the io_uring structs and
// constants against <linux/io_uring.h> (linux-libc-dev).
func TestStructLayouts(t *testing.T) {
	t.Parallel()
	src := `#include <stdio.h>
#include <stddef.h>
#include <linux/io_uring.h>
#define F(s, f) printf(#s "." #f " %zu\n", offsetof(struct s, f))
#define S(s) printf("sizeof." #s " %zu\n", sizeof(struct s))
#define V(x) printf(#x " %llu\n", (unsigned long long)(x))
int main(void) {
	S(io_uring_params); S(io_sqring_offsets); S(io_cqring_offsets); S(io_uring_sqe); S(io_uring_cqe);
	F(io_uring_params, sq_entries); F(io_uring_params, cq_entries); F(io_uring_params, flags);
	F(io_uring_params, features); F(io_uring_params, wq_fd); F(io_uring_params, sq_off); F(io_uring_params, cq_off);
	F(io_sqring_offsets, head); F(io_sqring_offsets, tail); F(io_sqring_offsets, ring_mask);
	F(io_sqring_offsets, ring_entries); F(io_sqring_offsets, array);
	F(io_cqring_offsets, head); F(io_cqring_offsets, tail); F(io_cqring_offsets, ring_mask); F(io_cqring_offsets, cqes);
	F(io_uring_sqe, opcode); F(io_uring_sqe, flags); F(io_uring_sqe, ioprio); F(io_uring_sqe, fd);
	F(io_uring_sqe, off); F(io_uring_sqe, cmd_op); F(io_uring_sqe, addr); F(io_uring_sqe, len);
	F(io_uring_sqe, uring_cmd_flags); F(io_uring_sqe, user_data); F(io_uring_sqe, buf_index);
	F(io_uring_sqe, personality); F(io_uring_sqe, splice_fd_in); F(io_uring_sqe, cmd);
	F(io_uring_cqe, user_data); F(io_uring_cqe, res); F(io_uring_cqe, flags);
	V(IORING_OP_NOP); V(IORING_OP_READ); V(IORING_OP_URING_CMD); V(IORING_OP_ASYNC_CANCEL); V(IOSQE_ASYNC); V(IORING_SETUP_SQE128);
	V(IORING_OFF_SQ_RING); V(IORING_OFF_CQ_RING); V(IORING_OFF_SQES);
	V(IORING_ENTER_GETEVENTS); V(IORING_FEAT_SINGLE_MMAP);
	return 0;
}
`
	c := testutil.CValues(t, src, map[string]string{"/usr/include/linux/io_uring.h": "linux-libc-dev"})
	var p params
	var s SQE
	var q CQE
	u := func(v uintptr) uint64 { return uint64(v) }
	testutil.CompareValues(t, c, map[string]uint64{
		"sizeof.io_uring_params": u(unsafe.Sizeof(p)), "sizeof.io_sqring_offsets": u(unsafe.Sizeof(p.SQOff)),
		"sizeof.io_cqring_offsets": u(unsafe.Sizeof(p.CQOff)), "sizeof.io_uring_sqe": u(unsafe.Sizeof(s)),
		"sizeof.io_uring_cqe":        u(unsafe.Sizeof(q)),
		"io_uring_params.sq_entries": u(unsafe.Offsetof(p.SQEntries)), "io_uring_params.cq_entries": u(unsafe.Offsetof(p.CQEntries)),
		"io_uring_params.flags": u(unsafe.Offsetof(p.Flags)), "io_uring_params.features": u(unsafe.Offsetof(p.Features)),
		"io_uring_params.wq_fd": u(unsafe.Offsetof(p.WQFd)), "io_uring_params.sq_off": u(unsafe.Offsetof(p.SQOff)),
		"io_uring_params.cq_off": u(unsafe.Offsetof(p.CQOff)),
		"io_sqring_offsets.head": u(unsafe.Offsetof(p.SQOff.Head)), "io_sqring_offsets.tail": u(unsafe.Offsetof(p.SQOff.Tail)),
		"io_sqring_offsets.ring_mask": u(unsafe.Offsetof(p.SQOff.RingMask)), "io_sqring_offsets.ring_entries": u(unsafe.Offsetof(p.SQOff.RingEntries)),
		"io_sqring_offsets.array": u(unsafe.Offsetof(p.SQOff.Array)),
		"io_cqring_offsets.head":  u(unsafe.Offsetof(p.CQOff.Head)), "io_cqring_offsets.tail": u(unsafe.Offsetof(p.CQOff.Tail)),
		"io_cqring_offsets.ring_mask": u(unsafe.Offsetof(p.CQOff.RingMask)), "io_cqring_offsets.cqes": u(unsafe.Offsetof(p.CQOff.CQEs)),
		"io_uring_sqe.opcode": u(unsafe.Offsetof(s.Opcode)), "io_uring_sqe.flags": u(unsafe.Offsetof(s.Flags)),
		"io_uring_sqe.ioprio": u(unsafe.Offsetof(s.IOPrio)), "io_uring_sqe.fd": u(unsafe.Offsetof(s.Fd)),
		"io_uring_sqe.off": u(unsafe.Offsetof(s.Off)), "io_uring_sqe.cmd_op": u(unsafe.Offsetof(s.Off)),
		"io_uring_sqe.addr": u(unsafe.Offsetof(s.Addr)), "io_uring_sqe.len": u(unsafe.Offsetof(s.Len)),
		"io_uring_sqe.uring_cmd_flags": u(unsafe.Offsetof(s.OpFlags)), "io_uring_sqe.user_data": u(unsafe.Offsetof(s.UserData)),
		"io_uring_sqe.buf_index": u(unsafe.Offsetof(s.BufIndex)), "io_uring_sqe.personality": u(unsafe.Offsetof(s.Personality)),
		"io_uring_sqe.splice_fd_in": u(unsafe.Offsetof(s.SpliceFdIn)), "io_uring_sqe.cmd": u(unsafe.Offsetof(s.cmd)),
		"io_uring_cqe.user_data": u(unsafe.Offsetof(q.UserData)), "io_uring_cqe.res": u(unsafe.Offsetof(q.Res)),
		"io_uring_cqe.flags": u(unsafe.Offsetof(q.Flags)),
		"IORING_OP_NOP":      OpNop, "IORING_OP_READ": OpRead, "IORING_OP_URING_CMD": OpUringCmd,
		"IORING_OP_ASYNC_CANCEL": OpAsyncCancel, "IOSQE_ASYNC": SQEAsync,
		"IORING_SETUP_SQE128": SetupSQE128, "IORING_OFF_SQ_RING": offSQRing, "IORING_OFF_CQ_RING": offCQRing,
		"IORING_OFF_SQES": offSQEs, "IORING_ENTER_GETEVENTS": enterGetEvents, "IORING_FEAT_SINGLE_MMAP": featSingleMmap,
	})
}
