package testtcmu

import (
	"testing"

	"github.com/encblk/encblk/internal/testutil"
)

// TestLayout compiles a C program against <linux/target_core_user.h>
// (linux-libc-dev) and compares the offsets of the packed mailbox and
// command entry fields with the constants the ring code reads them at.
func TestLayout(t *testing.T) {
	t.Parallel()
	src := `#include <stdio.h>
#include <stddef.h>
#include <linux/target_core_user.h>
#define F(n, s, f) printf(n " %zu\n", offsetof(struct s, f))
int main(void) {
	F("mbVersion", tcmu_mailbox, version); F("mbFlags", tcmu_mailbox, flags);
	F("mbCmdrOff", tcmu_mailbox, cmdr_off); F("mbCmdrSize", tcmu_mailbox, cmdr_size);
	F("mbCmdHead", tcmu_mailbox, cmd_head); F("mbCmdTail", tcmu_mailbox, cmd_tail);
	F("entLenOp", tcmu_cmd_entry, hdr.len_op); F("entCmdID", tcmu_cmd_entry, hdr.cmd_id);
	F("entKflags", tcmu_cmd_entry, hdr.kflags); F("entUflags", tcmu_cmd_entry, hdr.uflags);
	F("entIovCnt", tcmu_cmd_entry, req.iov_cnt); F("entBidiCnt", tcmu_cmd_entry, req.iov_bidi_cnt);
	F("entDifCnt", tcmu_cmd_entry, req.iov_dif_cnt); F("entCdbOff", tcmu_cmd_entry, req.cdb_off);
	F("entIov", tcmu_cmd_entry, req.iov); F("entStatus", tcmu_cmd_entry, rsp.scsi_status);
	F("entReadLen", tcmu_cmd_entry, rsp.read_len); F("entSense", tcmu_cmd_entry, rsp.sense_buffer);
	printf("iovecSize %zu\n", sizeof(struct iovec));
	printf("senseBufLen %d\n", TCMU_SENSE_BUFFERSIZE);
	printf("opPad %d\nopCmd %d\nopTmr %d\nopMask %d\n", TCMU_OP_PAD, TCMU_OP_CMD, TCMU_OP_TMR, TCMU_OP_MASK);
	printf("uflagUnknownOp %d\nuflagReadLen %d\ncapReadLen %d\n", TCMU_UFLAG_UNKNOWN_OP, TCMU_UFLAG_READ_LEN, TCMU_MAILBOX_FLAG_CAP_READ_LEN);
	printf("mailboxVersion %d\n", TCMU_MAILBOX_VERSION);
	return 0;
}
`
	c := testutil.CValues(t, src, map[string]string{"/usr/include/linux/target_core_user.h": "linux-libc-dev"})
	if c == nil {
		return
	}
	want := map[string]uint64{
		"mbVersion": uint64(mbVersion), "mbFlags": uint64(mbFlags), "mbCmdrOff": uint64(mbCmdrOff), "mbCmdrSize": uint64(mbCmdrSize),
		"mbCmdHead": uint64(mbCmdHead), "mbCmdTail": uint64(mbCmdTail),
		"entLenOp": uint64(entLenOp), "entCmdID": uint64(entCmdID), "entKflags": uint64(entKflags), "entUflags": uint64(entUflags),
		"entIovCnt": uint64(entIovCnt), "entBidiCnt": uint64(entBidiCnt), "entDifCnt": uint64(entDifCnt), "entCdbOff": uint64(entCdbOff),
		"entIov": uint64(entIov), "entStatus": uint64(entStatus), "entReadLen": uint64(entReadLen), "entSense": uint64(entSense),
		"iovecSize": uint64(iovecSize), "senseBufLen": uint64(senseBufLen),
		"opPad": uint64(opPad), "opCmd": uint64(opCmd), "opTmr": uint64(opTmr), "opMask": uint64(opMask),
		"uflagUnknownOp": uint64(uflagUnknownOp), "uflagReadLen": uint64(uflagReadLen), "capReadLen": uint64(capReadLen),
		"mailboxVersion": uint64(mailboxVersion),
	}
	testutil.CompareValues(t, c, want)
}
