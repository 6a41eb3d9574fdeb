package sed_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/encblk/encblk/pkg/sed"
	"github.com/encblk/encblk/pkg/sed/sedsim"
)

// TestATASecurity walks the ATA Security states of ACS-3 4.18 on the
// simulated SATA drive: set a user password, lock at power-on, wrong and
// right unlock, attempt counter expiry, freeze, master password at High and
// Maximum level, disable, and secure erase.
func TestATASecurity(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sata.img")
	if err := os.WriteFile(path, make([]byte, 64<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	drv, err := sedsim.NewATA(path, []byte("factory-master"))
	if err != nil {
		t.Fatal(err)
	}
	defer drv.Close()
	a := sed.ATASecurityDevice{C: drv}
	user := pin(t)

	st, err := a.Status(ctx)
	must(t, err)
	if st.Enabled || st.Locked || st.Frozen || !st.EnhancedErase || st.MasterIdentifier != 0xFFFE {
		t.Fatalf("factory state %+v", st)
	}
	must(t, a.SetPassword(ctx, sed.ATAUserPassword, user, false))
	data := bytes.Repeat([]byte{9}, 512)
	if _, err := drv.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}

	// Power-on: locked until UNLOCK with the user password.
	drv.PowerCycle()
	if st, _ = a.Status(ctx); !st.Enabled || !st.Locked {
		t.Fatalf("after power cycle %+v", st)
	}
	if _, err := drv.ReadAt(make([]byte, 512), 0); !errors.Is(err, sedsim.ErrLocked) {
		t.Fatalf("read while locked: %v", err)
	}
	if err := a.SetPassword(ctx, sed.ATAUserPassword, pin(t), false); !errors.Is(err, sed.ErrATASecurityState) {
		t.Fatalf("set password while locked: %v", err)
	}
	if err := a.Unlock(ctx, sed.ATAUserPassword, pin(t)); !errors.Is(err, sed.ErrATAAborted) {
		t.Fatalf("wrong unlock: %v", err)
	}
	must(t, a.Unlock(ctx, sed.ATAUserPassword, user))
	buf := make([]byte, 512)
	if _, err := drv.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, data) {
		t.Fatalf("read after unlock: %v", err)
	}

	// Five failures expire the counter: even the right password fails
	// until the next power cycle.
	drv.PowerCycle()
	for i := 0; i < 5; i++ {
		if err := a.Unlock(ctx, sed.ATAUserPassword, pin(t)); !errors.Is(err, sed.ErrATAAborted) {
			t.Fatal(err)
		}
	}
	if st, _ = a.Status(ctx); !st.CountExpired {
		t.Fatalf("count not expired %+v", st)
	}
	if err := a.Unlock(ctx, sed.ATAUserPassword, user); !errors.Is(err, sed.ErrATAAborted) {
		t.Fatalf("unlock with expired counter: %v", err)
	}
	drv.PowerCycle()
	// High security: the master password unlocks too.
	must(t, a.Unlock(ctx, sed.ATAMasterPassword, []byte("factory-master")))

	// Frozen: no security command until power cycle.
	must(t, a.Freeze(ctx))
	if err := a.SetPassword(ctx, sed.ATAUserPassword, pin(t), false); !errors.Is(err, sed.ErrATASecurityState) {
		t.Fatalf("set password while frozen: %v", err)
	}
	if err := a.DisablePassword(ctx, sed.ATAUserPassword, user); !errors.Is(err, sed.ErrATAAborted) {
		t.Fatalf("disable while frozen: %v", err)
	}
	drv.PowerCycle()
	must(t, a.Unlock(ctx, sed.ATAUserPassword, user))

	// Maximum security: the master password no longer unlocks, but erases.
	must(t, a.SetPassword(ctx, sed.ATAUserPassword, user, true))
	drv.PowerCycle()
	if err := a.Unlock(ctx, sed.ATAMasterPassword, []byte("factory-master")); !errors.Is(err, sed.ErrATAAborted) {
		t.Fatalf("master unlock at maximum: %v", err)
	}
	must(t, a.Erase(ctx, sed.ATAMasterPassword, []byte("factory-master"), true))
	if st, _ = a.Status(ctx); st.Enabled || st.Locked {
		t.Fatalf("after erase %+v", st)
	}
	if _, err := drv.ReadAt(buf, 0); err != nil || bytes.Equal(buf, data) {
		t.Fatalf("data after erase: %v", err)
	}

	// Disable: set a password, then remove it while unlocked.
	must(t, a.SetPassword(ctx, sed.ATAUserPassword, user, false))
	if err := a.DisablePassword(ctx, sed.ATAUserPassword, pin(t)); !errors.Is(err, sed.ErrATAAborted) {
		t.Fatalf("disable with wrong password: %v", err)
	}
	must(t, a.DisablePassword(ctx, sed.ATAUserPassword, user))
	drv.PowerCycle()
	if st, _ = a.Status(ctx); st.Enabled || st.Locked {
		t.Fatalf("after disable %+v", st)
	}
	if err := a.SetPassword(ctx, sed.ATAUserPassword, make([]byte, 33), false); !errors.Is(err, sed.ErrATAPassword) {
		t.Fatalf("33-byte password: %v", err)
	}
}

// TestATAStateFile: a simulated ATA drive opened with a state file is the
// same drive in the next process (password, lock, freeze, attempt count);
// the master password given at creation is kept.
func TestATAStateFile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	path, state := filepath.Join(dir, "sata.img"), filepath.Join(dir, "sata.state")
	if err := os.WriteFile(path, make([]byte, 64<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	open := func() (*sedsim.ATADrive, sed.ATASecurityDevice) {
		drv, err := sedsim.OpenATA(path, state, []byte("factory-master"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { drv.Close() })
		return drv, sed.ATASecurityDevice{C: drv}
	}
	user := pin(t)
	drv, a := open()
	must(t, a.SetPassword(ctx, sed.ATAUserPassword, user, true))
	must(t, drv.PowerCycle())
	if err := a.Unlock(ctx, sed.ATAUserPassword, []byte("wrong")); !errors.Is(err, sed.ErrATAAborted) {
		t.Fatalf("wrong password: %v", err)
	}
	_, a = open()
	st, err := a.Status(ctx)
	must(t, err)
	if !st.Enabled || !st.Locked || !st.MasterMaximum {
		t.Fatalf("reopened state %+v", st)
	}
	// At Maximum level the master password erases but does not unlock.
	if err := a.Unlock(ctx, sed.ATAMasterPassword, []byte("factory-master")); !errors.Is(err, sed.ErrATAAborted) {
		t.Fatalf("master unlock at maximum: %v", err)
	}
	must(t, a.Unlock(ctx, sed.ATAUserPassword, user))
	must(t, a.Freeze(ctx))
	_, a = open()
	if st, err := a.Status(ctx); err != nil || !st.Frozen || st.Locked {
		t.Fatalf("frozen state not kept: %+v %v", st, err)
	}
	drv, a = open()
	must(t, drv.PowerCycle())
	must(t, a.Erase(ctx, sed.ATAMasterPassword, []byte("factory-master"), false))
	_, a = open()
	if st, err := a.Status(ctx); err != nil || st.Enabled || st.Locked {
		t.Fatalf("after erase: %+v %v", st, err)
	}
}
