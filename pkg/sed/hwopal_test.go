package sed_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/encblk/encblk/pkg/sed"
	"github.com/encblk/encblk/pkg/sed/sedsim"
)

// TestHWOpalRange runs cryptsetup 2.7's locking-range life cycle against
// the simulated drive: setup on a fresh drive, lock/unlock with the range
// key, key rotation, a second range, and setup over an existing range
// (which crypto-erases it).
func TestHWOpalRange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sim := newSim(t, sedsim.Options{})
	dev := open(t, sim)
	adminKey, rangeKey := pin(t), pin(t)
	r1 := sed.OpalRange{Segment: 1, StartBlock: 256, LengthBlocks: 1024}
	must(t, dev.SetupRange(ctx, adminKey, rangeKey, r1))

	off := int64(r1.StartBlock) * 512
	buf := make([]byte, 4096)
	if _, err := sim.ReadAt(buf, off); !errors.Is(err, sedsim.ErrLocked) {
		t.Fatalf("range readable after setup: %v", err)
	}
	// The user is User2 (segment + 1), as cryptsetup and the kernel use.
	wantStatus(t, dev.SetLock(ctx, sed.Credential{Authority: sed.AuthorityUser1, PIN: rangeKey}, 1, sed.Unlocked), sed.StatusNotAuthorized)
	wantStatus(t, dev.UnlockRange(ctx, 1, pin(t)), sed.StatusNotAuthorized)
	must(t, dev.UnlockRange(ctx, 1, rangeKey))
	// The range user reads the range's state, as cryptsetup 2.7's open
	// does through the kernel (IOC_OPAL_GET_LR_STATUS as User2): found by
	// test/vm's sed-nvme-opal, where cryptsetup 2.7.5 refused an
	// encblk-made volume ("OPAL GET_LR_STATUS failed: not authorized").
	if rs, err := dev.Range(ctx, sed.Credential{Authority: sed.RangeUser(1), PIN: rangeKey}, 1); err != nil ||
		rs.Start != r1.StartBlock || rs.Length != r1.LengthBlocks || rs.ReadLocked {
		t.Fatalf("range 1 as its user: %+v %v", rs, err)
	}
	data := bytes.Repeat([]byte("hw-opal!"), 512)
	if _, err := sim.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
	must(t, dev.LockRange(ctx, 1, rangeKey))
	if _, err := sim.WriteAt(data, off); !errors.Is(err, sedsim.ErrLocked) {
		t.Fatalf("write after lock: %v", err)
	}

	// Rotate the range key: the old one stops working, data stays.
	newKey := pin(t)
	must(t, dev.RotateRangeKey(ctx, 1, rangeKey, newKey))
	wantStatus(t, dev.UnlockRange(ctx, 1, rangeKey), sed.StatusNotAuthorized)
	must(t, dev.UnlockRange(ctx, 1, newKey))
	if _, err := sim.ReadAt(buf, off); err != nil || !bytes.Equal(buf, data) {
		t.Fatalf("data after rotation: %v", err)
	}

	// A second range next to the first; an overlapping one is refused.
	must(t, dev.SetupRange(ctx, adminKey, pin(t), sed.OpalRange{Segment: 2, StartBlock: 1280, LengthBlocks: 256}))
	wantStatus(t, dev.SetupRange(ctx, adminKey, pin(t), sed.OpalRange{Segment: 3, StartBlock: 1000, LengthBlocks: 100}), sed.StatusInvalidParameter)
	// A wrong admin key is refused before anything changes.
	wantStatus(t, dev.SetupRange(ctx, pin(t), pin(t), r1), sed.StatusNotAuthorized)
	if _, err := sim.ReadAt(buf, off); err != nil || !bytes.Equal(buf, data) {
		t.Fatalf("data after refused setup: %v", err)
	}

	// Setting range 1 up again erases it.
	again := pin(t)
	must(t, dev.SetupRange(ctx, adminKey, again, r1))
	must(t, dev.UnlockRange(ctx, 1, again))
	if _, err := sim.ReadAt(buf, off); err != nil || bytes.Equal(buf, data) {
		t.Fatalf("data survived re-setup: %v", err)
	}
	if err := dev.SetupRange(ctx, adminKey, again, sed.OpalRange{Segment: 0}); err == nil {
		t.Fatal("global range accepted as an opal segment")
	}
}
