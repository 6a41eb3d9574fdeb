package sed_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/encblk/encblk/pkg/sed"
	"github.com/encblk/encblk/pkg/sed/sedsim"
)

const simSectors = 2048 // 1 MiB

func newSim(t *testing.T, opt sedsim.Options) *sedsim.Drive {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, make([]byte, simSectors*512), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := sedsim.New(path, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func open(t *testing.T, tr sed.Transport) *sed.Device {
	t.Helper()
	dev, err := sed.Open(context.Background(), tr)
	if err != nil {
		t.Fatal(err)
	}
	dev.Poll = sed.PollPolicy{Interval: time.Microsecond, Timeout: 20 * time.Millisecond}
	return dev
}

func pin(t *testing.T) []byte {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantStatus(t *testing.T, err error, st sed.Status) {
	t.Helper()
	if !errors.Is(err, st) {
		t.Fatalf("got %v, want %v", err, st)
	}
}

// noSecret fails if err's text contains any of the secrets.
func noSecret(t *testing.T, err error, secrets ...[]byte) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range secrets {
		if len(s) > 0 && (strings.Contains(err.Error(), string(s)) || strings.Contains(err.Error(), string(bytesHex(s)))) {
			t.Fatalf("error leaks a secret: %v", err)
		}
	}
}

func bytesHex(b []byte) []byte {
	const hx = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, hx[c>>4], hx[c&15])
	}
	return out
}

// owned returns a drive whose SID and Admin1 PINs are set and whose
// Locking SP is active.
func owned(t *testing.T, opt sedsim.Options) (*sedsim.Drive, *sed.Device, sed.Credential, sed.Credential) {
	t.Helper()
	ctx := context.Background()
	sim := newSim(t, opt)
	dev := open(t, sim)
	sid := sed.Credential{Authority: sed.AuthoritySID, PIN: pin(t)}
	must(t, dev.TakeOwnership(ctx, sid.PIN))
	must(t, dev.ActivateLockingSP(ctx, sid))
	admin := sed.Credential{Authority: sed.AuthorityAdmin1, PIN: pin(t)}
	// Admin1 starts with SID's PIN; give it its own.
	must(t, dev.SetPIN(ctx, sed.Credential{Authority: sed.AuthorityAdmin1, PIN: sid.PIN}, sed.AuthorityAdmin1, admin.PIN))
	return sim, dev, sid, admin
}

func TestOpalLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sim := newSim(t, sedsim.Options{})
	dev := open(t, sim)

	if ssc, comID, _ := dev.Discovery.SSC(); ssc != sed.SSCOpalV2 || comID != 0x07FE || dev.ComID != 0x07FE {
		t.Fatalf("discovery: %v %x", ssc, comID)
	}
	if dev.TPerProperties["MaxComPacketSize"] != 2048 {
		t.Fatalf("properties %v", dev.TPerProperties)
	}
	msid, err := dev.ReadMSID(ctx)
	must(t, err)
	if !bytes.Equal(msid, sim.MSID()) {
		t.Fatalf("MSID %q, want %q", msid, sim.MSID())
	}

	// Take ownership; a second time fails because SID is no longer MSID.
	sid := sed.Credential{Authority: sed.AuthoritySID, PIN: pin(t)}
	must(t, dev.TakeOwnership(ctx, sid.PIN))
	if err := dev.TakeOwnership(ctx, pin(t)); !errors.Is(err, sed.ErrOwned) {
		t.Fatalf("second TakeOwnership: %v", err)
	}

	// Before activation the Locking SP cannot be opened.
	err = dev.SetLock(ctx, sed.Credential{Authority: sed.AuthorityAdmin1, PIN: sid.PIN}, 0, sed.Locked)
	if !errors.Is(err, sed.ErrLockingSPInactive) {
		t.Fatalf("locking SP before activation: %v", err)
	}
	lc, err := dev.LockingSPLifeCycle(ctx, sid)
	must(t, err)
	if lc != sed.LifeCycleManufacturedInactive {
		t.Fatalf("life cycle %#x", lc)
	}
	must(t, dev.ActivateLockingSP(ctx, sid))
	must(t, dev.ActivateLockingSP(ctx, sid)) // idempotent
	if lc, _ := dev.LockingSPLifeCycle(ctx, sid); lc != sed.LifeCycleManufactured {
		t.Fatalf("life cycle after activate %#x", lc)
	}

	// Admin1's PIN starts as SID's; rotate it.
	admin := sed.Credential{Authority: sed.AuthorityAdmin1, PIN: pin(t)}
	must(t, dev.SetPIN(ctx, sed.Credential{Authority: sed.AuthorityAdmin1, PIN: sid.PIN}, sed.AuthorityAdmin1, admin.PIN))
	err = dev.SetLock(ctx, sed.Credential{Authority: sed.AuthorityAdmin1, PIN: sid.PIN}, 1, sed.Locked)
	wantStatus(t, err, sed.StatusNotAuthorized)
	noSecret(t, err, sid.PIN)

	// Range 1: LBAs 1024..1535, read and write locking enabled.
	must(t, dev.SetupLockingRange(ctx, admin, sed.RangeConfig{Range: 1, Start: 1024, Length: 512, ReadLockEnabled: true, WriteLockEnabled: true}))
	data := bytes.Repeat([]byte("encblk-sed-range"), 64) // 1024 bytes
	off := int64(1024 * 512)
	if _, err := sim.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
	rs, err := dev.Range(ctx, admin, 1)
	must(t, err)
	if rs.Start != 1024 || rs.Length != 512 || !rs.ReadLockEnabled || !rs.WriteLockEnabled || rs.ReadLocked || rs.ActiveKey != sed.RangeKey(1) {
		t.Fatalf("range %+v", rs)
	}

	must(t, dev.SetLock(ctx, admin, 1, sed.Locked))
	buf := make([]byte, len(data))
	if _, err := sim.ReadAt(buf, off); !errors.Is(err, sedsim.ErrLocked) {
		t.Fatalf("read of locked range: %v", err)
	}
	if _, err := sim.WriteAt(buf, off); !errors.Is(err, sedsim.ErrLocked) {
		t.Fatalf("write of locked range: %v", err)
	}
	if _, err := sim.ReadAt(buf, 0); err != nil { // global range stays open
		t.Fatalf("read outside the range: %v", err)
	}
	if d0, err := sed.Discover(ctx, sim); err != nil || !d0.Locking.Locked || !d0.Locking.LockingEnabled {
		t.Fatalf("discovery after lock: %+v %v", d0.Locking, err)
	}

	must(t, dev.SetLock(ctx, admin, 1, sed.ReadOnly))
	if _, err := sim.ReadAt(buf, off); err != nil || !bytes.Equal(buf, data) {
		t.Fatalf("read-only range: %v", err)
	}
	if _, err := sim.WriteAt(buf, off); !errors.Is(err, sedsim.ErrLocked) {
		t.Fatalf("write of read-only range: %v", err)
	}

	// Power loss locks the range again (LockOnReset = PowerCycle).
	must(t, dev.SetLock(ctx, admin, 1, sed.Unlocked))
	sim.PowerCycle()
	if _, err := sim.ReadAt(buf, off); !errors.Is(err, sedsim.ErrLocked) {
		t.Fatalf("read after power cycle: %v", err)
	}

	// User1: enabled, given a PIN and the right to lock range 1, but no more.
	user := sed.Credential{Authority: sed.AuthorityUser1, PIN: pin(t)}
	must(t, dev.SetAuthorityEnabled(ctx, admin, sed.AuthorityUser1, true))
	must(t, dev.SetPIN(ctx, admin, sed.AuthorityUser1, user.PIN))
	wantStatus(t, dev.SetLock(ctx, user, 1, sed.Unlocked), sed.StatusNotAuthorized)
	must(t, dev.GrantRange(ctx, admin, 1, sed.AuthorityUser1))
	must(t, dev.SetLock(ctx, user, 1, sed.Unlocked))
	if _, err := sim.ReadAt(buf, off); err != nil || !bytes.Equal(buf, data) {
		t.Fatalf("read after user unlock: %v", err)
	}
	wantStatus(t, dev.SetLock(ctx, user, 2, sed.Unlocked), sed.StatusNotAuthorized)
	wantStatus(t, dev.SetupLockingRange(ctx, user, sed.RangeConfig{Range: 1, Start: 0, Length: 8}), sed.StatusNotAuthorized)
	// A user rotates its own PIN.
	newUser := sed.Credential{Authority: sed.AuthorityUser1, PIN: pin(t)}
	must(t, dev.SetPIN(ctx, user, sed.AuthorityUser1, newUser.PIN))
	wantStatus(t, dev.SetLock(ctx, user, 1, sed.Unlocked), sed.StatusNotAuthorized)
	must(t, dev.SetLock(ctx, newUser, 1, sed.Unlocked))

	// Crypto-erase: the range's data is gone (reads return other bytes).
	must(t, dev.EraseRange(ctx, admin, 1))
	if _, err := sim.ReadAt(buf, off); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(buf, data) {
		t.Fatal("data readable after GenKey")
	}

	// RevertSP: the Locking SP is inactive again, its PINs are gone.
	must(t, dev.RevertLockingSP(ctx, admin, false))
	if lc, _ := dev.LockingSPLifeCycle(ctx, sid); lc != sed.LifeCycleManufacturedInactive {
		t.Fatalf("life cycle after RevertSP %#x", lc)
	}
	if err := dev.SetLock(ctx, admin, 0, sed.Locked); !errors.Is(err, sed.ErrLockingSPInactive) {
		t.Fatalf("after RevertSP: %v", err)
	}

	// Revert as SID: factory state, SID = MSID again.
	must(t, dev.RevertTPer(ctx, sid))
	must(t, dev.TakeOwnership(ctx, sid.PIN))
}

func TestOpalPSIDRevert(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sim, dev, _, admin := owned(t, sedsim.Options{})
	data := bytes.Repeat([]byte{0x5A}, 512)
	if _, err := sim.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	wrong := sed.Credential{Authority: sed.AuthorityPSID, PIN: []byte("not-the-psid")}
	wantStatus(t, dev.RevertTPer(ctx, wrong), sed.StatusNotAuthorized)
	must(t, dev.RevertTPer(ctx, sed.Credential{Authority: sed.AuthorityPSID, PIN: sim.PSID()}))
	buf := make([]byte, 512)
	if _, err := sim.ReadAt(buf, 0); err != nil || bytes.Equal(buf, data) {
		t.Fatalf("data after PSID revert: %v", err)
	}
	if err := dev.SetLock(ctx, admin, 0, sed.Locked); !errors.Is(err, sed.ErrLockingSPInactive) {
		t.Fatalf("after PSID revert: %v", err)
	}
	must(t, dev.TakeOwnership(ctx, pin(t)))
}

func TestOpalWrongPINLockout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sim, dev, sid, admin := owned(t, sedsim.Options{TryLimit: 3})
	bad := sed.Credential{Authority: sed.AuthorityAdmin1, PIN: pin(t)}
	for i := 0; i < 3; i++ {
		err := dev.SetLock(ctx, bad, 0, sed.Unlocked)
		wantStatus(t, err, sed.StatusNotAuthorized)
		noSecret(t, err, bad.PIN, admin.PIN)
	}
	// Locked out: even the right PIN fails now.
	err := dev.SetLock(ctx, admin, 0, sed.Unlocked)
	wantStatus(t, err, sed.StatusAuthorityLockedOut)
	noSecret(t, err, admin.PIN)
	// Other authorities are not affected.
	must(t, dev.ActivateLockingSP(ctx, sid))
	// A power cycle resets the count.
	sim.PowerCycle()
	must(t, dev.SetLock(ctx, admin, 0, sed.Unlocked))
}

func TestOpalRangeOverlap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, dev, _, admin := owned(t, sedsim.Options{})
	must(t, dev.SetupLockingRange(ctx, admin, sed.RangeConfig{Range: 1, Start: 100, Length: 100}))
	wantStatus(t, dev.SetupLockingRange(ctx, admin, sed.RangeConfig{Range: 2, Start: 150, Length: 100}), sed.StatusInvalidParameter)
	wantStatus(t, dev.SetupLockingRange(ctx, admin, sed.RangeConfig{Range: 2, Start: 50, Length: 51}), sed.StatusInvalidParameter)
	must(t, dev.SetupLockingRange(ctx, admin, sed.RangeConfig{Range: 2, Start: 200, Length: 100}))
	wantStatus(t, dev.SetupLockingRange(ctx, admin, sed.RangeConfig{Range: 3, Start: simSectors - 10, Length: 11}), sed.StatusInvalidParameter)
	wantStatus(t, dev.SetupLockingRange(ctx, admin, sed.RangeConfig{Range: 9, Start: 0, Length: 1}), sed.StatusInvalidParameter)
	// Shrinking range 1 and moving range 2 into the gap is fine.
	must(t, dev.SetupLockingRange(ctx, admin, sed.RangeConfig{Range: 1, Start: 100, Length: 50}))
	must(t, dev.SetupLockingRange(ctx, admin, sed.RangeConfig{Range: 2, Start: 150, Length: 100}))
}

func TestOpalShadowMBR(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sim, dev, _, admin := owned(t, sedsim.Options{})
	data := bytes.Repeat([]byte{0xA5}, 512)
	if _, err := sim.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	must(t, dev.SetMBR(ctx, admin, true, false))
	buf := make([]byte, 512)
	if _, err := sim.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, make([]byte, 512)) {
		t.Fatalf("shadowed read: %x %v", buf[:4], err)
	}
	if _, err := sim.WriteAt(data, 0); !errors.Is(err, sedsim.ErrLocked) {
		t.Fatalf("shadowed write: %v", err)
	}
	d0, err := sed.Discover(ctx, sim)
	must(t, err)
	if !d0.Locking.MBREnabled || d0.Locking.MBRDone {
		t.Fatalf("discovery %+v", d0.Locking)
	}
	// Shadow MBR disable.
	must(t, dev.SetMBR(ctx, admin, false, true))
	if _, err := sim.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, data) {
		t.Fatalf("read after MBR disable: %v", err)
	}
}

func TestOpalSessionTimeout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	_, dev, sid, admin := owned(t, sedsim.Options{SessionTimeout: 30 * time.Second, Now: clock})

	// A host opens a session and goes away without closing it.
	stale, err := dev.StartSession(ctx, sed.LockingSP, admin.Authority, admin.PIN, true)
	must(t, err)
	// Everyone else is shut out while it lives...
	wantStatus(t, dev.SetLock(ctx, admin, 0, sed.Unlocked), sed.StatusNoSessionsAvailable)
	advance(20 * time.Second)
	wantStatus(t, dev.ActivateLockingSP(ctx, sid), sed.StatusNoSessionsAvailable)
	// ...until it has been idle longer than the timeout.
	advance(31 * time.Second)
	must(t, dev.SetLock(ctx, admin, 0, sed.Unlocked))
	// The TPer discards the stale session's packets.
	if _, err := stale.Call(ctx, sed.GetCall(sed.LockingRange(0), 3, 4)); !errors.Is(err, sed.ErrNoResponse) {
		t.Fatalf("call in expired session: %v", err)
	}
}

// recorder wraps a Transport and counts what is sent.
type recorder struct {
	sed.Transport
	mu    sync.Mutex
	sends int
	recvs int
}

func (r *recorder) IFRecv(ctx context.Context, p sed.SecurityProtocol, c uint16, b []byte) error {
	r.mu.Lock()
	r.recvs++
	r.mu.Unlock()
	return r.Transport.IFRecv(ctx, p, c, b)
}

func (r *recorder) IFSend(ctx context.Context, p sed.SecurityProtocol, c uint16, b []byte) error {
	r.mu.Lock()
	r.sends++
	r.mu.Unlock()
	return r.Transport.IFSend(ctx, p, c, b)
}

// notSED answers every security command as a disk without security
// protocol support does: with an error.
type notSED struct{}

func (notSED) IFRecv(context.Context, sed.SecurityProtocol, uint16, []byte) error {
	return errors.New("ILLEGAL REQUEST: invalid command operation code")
}

func (notSED) IFSend(context.Context, sed.SecurityProtocol, uint16, []byte) error {
	return errors.New("ILLEGAL REQUEST: invalid command operation code")
}

func TestOpalNotSupported(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	pyrite := &recorder{Transport: newSim(t, sedsim.Options{NoOpal: true})}
	_, err := sed.Open(ctx, pyrite)
	if !errors.Is(err, sed.ErrNotSupported) || !errors.Is(err, sed.ErrNotOpal) || !strings.Contains(err.Error(), "Pyrite 2") {
		t.Fatalf("pyrite drive: %v", err)
	}
	if pyrite.sends != 0 || pyrite.recvs != 1 {
		t.Fatalf("sent %d, received %d: only discovery allowed", pyrite.sends, pyrite.recvs)
	}

	plain := &recorder{Transport: notSED{}}
	_, err = sed.Open(ctx, plain)
	if !errors.Is(err, sed.ErrNotSupported) || !strings.Contains(err.Error(), "no TCG/ATA security support") {
		t.Fatalf("plain disk: %v", err)
	}
	if plain.sends != 0 || plain.recvs != 1 {
		t.Fatalf("sent %d, received %d: only discovery allowed", plain.sends, plain.recvs)
	}
}

// TestSimStatePersists: a drive reopened from its state file is the same
// drive: still owned, same range, same media key.
func TestSimStatePersists(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(img, make([]byte, simSectors*512), 0o600); err != nil {
		t.Fatal(err)
	}
	opt := sedsim.Options{StatePath: filepath.Join(dir, "disk.state")}
	sim, err := sedsim.New(img, opt)
	must(t, err)
	dev := open(t, sim)
	adminKey, rangeKey := pin(t), pin(t)
	must(t, dev.SetupRange(ctx, adminKey, rangeKey, sed.OpalRange{Segment: 1, StartBlock: 0, LengthBlocks: 64}))
	must(t, dev.UnlockRange(ctx, 1, rangeKey))
	data := bytes.Repeat([]byte{7}, 512)
	if _, err := sim.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	must(t, sim.Close())

	sim, err = sedsim.New(img, opt)
	must(t, err)
	defer sim.Close()
	dev = open(t, sim)
	buf := make([]byte, 512)
	if _, err := sim.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, data) {
		t.Fatalf("after reopen: %v", err)
	}
	if err := dev.TakeOwnership(ctx, pin(t)); !errors.Is(err, sed.ErrOwned) {
		t.Fatalf("ownership lost: %v", err)
	}
	must(t, dev.LockRange(ctx, 1, rangeKey))
	if st, err := os.Stat(opt.StatePath); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v %v", st.Mode(), err)
	}
}

func TestRangeStateState(t *testing.T) {
	for _, tc := range []struct {
		rs   sed.RangeState
		want sed.LockState
	}{
		{sed.RangeState{}, sed.Unlocked},
		{sed.RangeState{ReadLocked: true, WriteLocked: true}, sed.Unlocked}, // locks not enabled
		{sed.RangeState{ReadLockEnabled: true, WriteLockEnabled: true}, sed.Unlocked},
		{sed.RangeState{ReadLockEnabled: true, WriteLockEnabled: true, ReadLocked: true, WriteLocked: true}, sed.Locked},
		{sed.RangeState{ReadLockEnabled: true, WriteLockEnabled: true, WriteLocked: true}, sed.ReadOnly},
		{sed.RangeState{WriteLockEnabled: true, ReadLocked: true, WriteLocked: true}, sed.ReadOnly},
	} {
		if got := tc.rs.State(); got != tc.want {
			t.Errorf("%+v: %v, want %v", tc.rs, got, tc.want)
		}
	}
}
