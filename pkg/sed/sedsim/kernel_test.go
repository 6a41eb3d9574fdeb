package sedsim

import (
	"bytes"
	"context"
	"encoding/hex"
	"testing"

	"github.com/encblk/encblk/pkg/sed"
)

// Token streams the Linux 6.12 kernel's Opal client (block/sed-opal.c)
// sent, captured in test/vm's sed-nvme-opal scenario: test/vm/sednvmet
// -trace logs every Security Send payload while cryptsetup 2.7.5 runs
// `luksFormat --hw-opal-only` through IOC_OPAL_* ioctls. Each is the
// subpacket payload of one ComPacket (the trace's hex, ComPacket, Packet
// and SubPacket headers removed).
const (
	// end_opal_session: EndOfSession followed by EndList, EndOfData and
	// an empty status list.
	kernelEndSession = "fa f1 f9 f0 00 00 00 f1"
	// add_user_to_lr for IOC_OPAL_ADD_USR_TO_LR (User2, range 1): Set of
	// ACE_Locking_Range1_Get_RangeStartToActiveKey's BooleanExpr to
	// Admin1 OR User2.
	kernelSetGetRangeACE = "f8 a8 000000080003d001 a8 0000000600000017 f0 f2 01 f0 f2 03 f0" +
		" f2 a4 00000c05 a8 0000000900010001 f3 f2 a4 00000c05 a8 0000000900030002 f3" +
		" f2 a4 0000040e 01 f3 f1 f3 f1 f3 f1 f9 f0 00 00 00 f1"
)

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(string(bytes.ReplaceAll([]byte(s), []byte(" "), nil)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rawExchange sends tokens in session s and returns the reply's tokens.
func rawExchange(t *testing.T, d *Drive, s *sed.Session, tokens []byte) []byte {
	t.Helper()
	ctx := context.Background()
	out, err := sed.NewComPacket(0x07FE, s.TSN, s.HSN, tokens).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.IFSend(ctx, sed.ProtocolTCG, 0x07FE, out); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	if err := d.IFRecv(ctx, sed.ProtocolTCG, 0x07FE, buf); err != nil {
		t.Fatal(err)
	}
	cp, err := sed.ParseComPacket(buf)
	if err != nil {
		t.Fatal(err)
	}
	_, reply, err := cp.Payload()
	if err != nil {
		t.Fatal(err)
	}
	return reply
}

// TestKernelOpalClient replays the kernel's packets that sedsim used to
// refuse: its EndOfSession (with trailing tokens) was answered with
// INVALID_PARAMETER instead of closing the session, and its Set of the
// Get_RangeStartToActiveKey ACE was refused, so cryptsetup 2.7.5
// luksFormat --hw-opal failed on sedsim ("obsolete").
func TestKernelOpalClient(t *testing.T) {
	ctx := context.Background()
	d := newTestDrive(t)
	dev, err := sed.Open(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	admin, userPIN := []byte("admin"), []byte("user2-pin")
	if err := dev.TakeOwnership(ctx, admin); err != nil {
		t.Fatal(err)
	}
	if err := dev.ActivateLockingSP(ctx, sed.Credential{Authority: sed.AuthoritySID, PIN: admin}); err != nil {
		t.Fatal(err)
	}
	a1 := sed.Credential{Authority: sed.AuthorityAdmin1, PIN: admin}
	if err := dev.SetAuthorityEnabled(ctx, a1, sed.User(2), true); err != nil {
		t.Fatal(err)
	}
	if err := dev.SetPIN(ctx, a1, sed.User(2), userPIN); err != nil {
		t.Fatal(err)
	}
	// Before the ACE is set, User2 may not read range 1.
	if _, err := dev.Range(ctx, sed.Credential{Authority: sed.User(2), PIN: userPIN}, 1); err == nil {
		t.Fatal("User2 read range 1 without the Get ACE")
	}
	s, err := dev.StartSession(ctx, sed.LockingSP, sed.AuthorityAdmin1, admin, true)
	if err != nil {
		t.Fatal(err)
	}
	res, err := sed.ParseMethodResult(rawExchange(t, d, s, mustHex(t, kernelSetGetRangeACE)))
	if err != nil || res.Status != sed.StatusSuccess {
		t.Fatalf("kernel's Set of the Get_RangeStartToActiveKey ACE: %+v %v", res, err)
	}
	if reply := rawExchange(t, d, s, mustHex(t, kernelEndSession)); !bytes.Equal(reply, []byte{byte(sed.TokenEndOfSession)}) {
		t.Fatalf("kernel's EndOfSession answered with % x", reply)
	}
	// The session is closed: a new one starts (one session at a time).
	rs, err := dev.Range(ctx, sed.Credential{Authority: sed.User(2), PIN: userPIN}, 1)
	if err != nil {
		t.Fatalf("User2 reads range 1 after the kernel's ACE: %v", err)
	}
	t.Logf("range 1 as User2: %+v", *rs)
}
