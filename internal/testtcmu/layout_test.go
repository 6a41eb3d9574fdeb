package testtcmu

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/encblk/encblk/internal/testutil"
)

// TestLayout compiles a C program against <linux/target_core_user.h>
// (linux-libc-dev) and compares the offsets of the packed mailbox and
// command entry fields with the constants the ring code reads them at.
func TestLayout(t *testing.T) {
	t.Parallel()
	gcc := testutil.RequireTool(t, "gcc", "gcc")
	testutil.RequireFile(t, "/usr/include/linux/target_core_user.h", "linux-libc-dev")
	dir := t.TempDir()
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
	if err := os.WriteFile(filepath.Join(dir, "layout.c"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "layout")
	if out, err := exec.Command(gcc, "-o", bin, filepath.Join(dir, "layout.c")).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{
		"mbVersion": mbVersion, "mbFlags": mbFlags, "mbCmdrOff": mbCmdrOff, "mbCmdrSize": mbCmdrSize,
		"mbCmdHead": mbCmdHead, "mbCmdTail": mbCmdTail,
		"entLenOp": entLenOp, "entCmdID": entCmdID, "entKflags": entKflags, "entUflags": entUflags,
		"entIovCnt": entIovCnt, "entBidiCnt": entBidiCnt, "entDifCnt": entDifCnt, "entCdbOff": entCdbOff,
		"entIov": entIov, "entStatus": entStatus, "entReadLen": entReadLen, "entSense": entSense,
		"iovecSize": iovecSize, "senseBufLen": senseBufLen,
		"opPad": opPad, "opCmd": opCmd, "opTmr": opTmr, "opMask": opMask,
		"uflagUnknownOp": uflagUnknownOp, "uflagReadLen": uflagReadLen, "capReadLen": capReadLen,
		"mailboxVersion": mailboxVersion,
	}
	got := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		v, err := strconv.Atoi(f[1])
		if err != nil {
			t.Fatal(err)
		}
		got[f[0]] = v
	}
	for k, v := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("%s: not printed by the C program", k)
		} else if g != v {
			t.Errorf("%s: the uapi header says %d, Go has %d", k, g, v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("C printed %d values, checked %d", len(got), len(want))
	}
}
