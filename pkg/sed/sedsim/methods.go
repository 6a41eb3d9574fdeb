package sedsim

import (
	"bytes"
	"crypto/subtle"
	"time"

	"github.com/encblk/encblk/pkg/sed"
)

// Half-UIDs naming the elements of an ACE's BooleanExpr (Core 2.01 5.1.3.3).
var (
	halfAuthorityObjectRef = []byte{0x00, 0x00, 0x0C, 0x05}
	halfBooleanACE         = []byte{0x00, 0x00, 0x04, 0x0E}
)

// RevertSP's optional KeepGlobalRangeKey parameter (Opal SSC 2.01 5.2.2).
const paramKeepGlobalRangeKey = 0x060000

func result(res sed.List, st sed.Status) []byte {
	b, err := sed.EncodeResult(res, st)
	if err != nil {
		b, _ = sed.EncodeResult(nil, sed.StatusTPerMalfunction)
	}
	return b
}

// parseCall splits a method invocation token stream.
func parseCall(tokens []byte) (inv, meth sed.UID, args sed.List, ok bool) {
	vals, err := sed.Decode(tokens)
	if err != nil || len(vals) != 6 || vals[0] != sed.TokenCall || vals[4] != sed.TokenEndOfData {
		return inv, meth, nil, false
	}
	ib, ok1 := vals[1].(sed.Bytes)
	mb, ok2 := vals[2].(sed.Bytes)
	a, ok3 := vals[3].(sed.List)
	if !ok1 || !ok2 || !ok3 {
		return inv, meth, nil, false
	}
	var err1, err2 error
	inv, err1 = sed.UIDFromBytes(ib)
	meth, err2 = sed.UIDFromBytes(mb)
	return inv, meth, a, err1 == nil && err2 == nil
}

// sessionManager answers Properties and StartSession (Core 2.01 5.2).
func (d *Drive) sessionManager(tokens []byte) []byte {
	inv, meth, args, ok := parseCall(tokens)
	if !ok || inv != sed.SMUID {
		return nil
	}
	switch meth {
	case sed.MethodProperties:
		tper := sed.List{}
		for _, p := range []sed.HostProperty{
			{Name: "MaxComPacketSize", Value: tperMaxComPk}, {Name: "MaxResponseComPacketSize", Value: tperMaxComPk},
			{Name: "MaxPacketSize", Value: tperMaxComPk - 20}, {Name: "MaxIndTokenSize", Value: tperMaxComPk - 56},
			{Name: "MaxPackets", Value: 1}, {Name: "MaxSubpackets", Value: 1}, {Name: "MaxMethods", Value: 1},
			{Name: "MaxSessions", Value: 1}, {Name: "MaxAuthentications", Value: 2},
			{Name: "MaxTransactionLimit", Value: 1}, {Name: "DefSessionTimeout", Value: uint64(d.opt.SessionTimeout / time.Millisecond)},
		} {
			tper = append(tper, sed.Name{Name: sed.Bytes(p.Name), Value: sed.Uint(p.Value)})
		}
		host := sed.List{}
		if len(args) > 0 {
			if nm, ok := args[0].(sed.Name); ok {
				if l, ok := nm.Value.(sed.List); ok {
					host = l
				}
			}
		}
		b, _ := sed.EncodeCallReply(sed.MethodCall{Invoking: sed.SMUID, Method: sed.MethodProperties,
			Args: []sed.Value{tper, sed.Name{Name: sed.Uint(0), Value: host}}}, sed.StatusSuccess)
		return b
	case sed.MethodStartSession:
		return d.startSession(args)
	}
	return result(nil, sed.StatusInvalidMethod)
}

func (d *Drive) startSession(args sed.List) []byte {
	if len(args) < 3 {
		return result(nil, sed.StatusInvalidParameter)
	}
	hsn, ok1 := args[0].(sed.Uint)
	spb, ok2 := args[1].(sed.Bytes)
	wr, ok3 := args[2].(sed.Uint)
	if !ok1 || !ok2 || !ok3 || hsn == 0 || hsn > 0xFFFFFFFF || wr > 1 {
		return result(nil, sed.StatusInvalidParameter)
	}
	sp, err := sed.UIDFromBytes(spb)
	if err != nil || (sp != sed.AdminSP && sp != sed.LockingSP) {
		return result(nil, sed.StatusInvalidParameter)
	}
	if sp == sed.LockingSP && !d.lockingActive {
		// An SP in Manufactured-Inactive cannot be opened.
		return result(nil, sed.StatusInvalidParameter)
	}
	var challenge []byte
	var authority sed.UID
	timeout := d.opt.SessionTimeout
	for _, a := range args[3:] {
		nm, ok := a.(sed.Name)
		if !ok {
			return result(nil, sed.StatusInvalidParameter)
		}
		n, _ := nm.Name.(sed.Uint)
		switch n {
		case sed.ParamHostChallenge:
			b, ok := nm.Value.(sed.Bytes)
			if !ok {
				return result(nil, sed.StatusInvalidParameter)
			}
			challenge = b
		case sed.ParamHostSigningAuthority:
			b, _ := nm.Value.(sed.Bytes)
			if authority, err = sed.UIDFromBytes(b); err != nil {
				return result(nil, sed.StatusInvalidParameter)
			}
		case sed.ParamSessionTimeout:
			ms, ok := nm.Value.(sed.Uint)
			if !ok || ms == 0 {
				return result(nil, sed.StatusInvalidParameter)
			}
			timeout = time.Duration(ms) * time.Millisecond
		default:
			return result(nil, sed.StatusInvalidParameter)
		}
	}
	now := d.opt.Now()
	if d.sess != nil && now.Sub(d.sess.last) > d.sess.timeout {
		d.sess = nil // the idle session timed out
	}
	if d.sess != nil {
		return result(nil, sed.StatusNoSessionsAvailable)
	}
	if authority != (sed.UID{}) && authority != sed.AuthorityAnybody {
		if st := d.authenticate(sp, authority, challenge); st != sed.StatusSuccess {
			return result(nil, st)
		}
	} else {
		authority = sed.UID{}
	}
	tsn := d.nextTSN
	d.nextTSN++
	d.sess = &session{tsn: tsn, hsn: uint32(hsn), sp: sp, authority: authority, write: wr == 1, last: now, timeout: timeout}
	b, _ := sed.EncodeCallReply(sed.MethodCall{Invoking: sed.SMUID, Method: sed.MethodSyncSession,
		Args: []sed.Value{hsn, sed.Uint(tsn)}}, sed.StatusSuccess)
	return b
}

// authorityIn reports whether authority exists in sp.
func authorityIn(sp, a sed.UID) bool {
	v := a.Uint64()
	switch sp {
	case sed.AdminSP:
		return a == sed.AuthoritySID || a == sed.AuthorityPSID
	case sed.LockingSP:
		return (v&^0xFFFF == 0x0000000900010000 && v&0xFFFF >= 1 && v&0xFFFF <= numAdmins) ||
			(v&^0xFFFF == 0x0000000900030000 && v&0xFFFF >= 1 && v&0xFFFF <= numUsers)
	}
	return false
}

// authenticate checks a HostChallenge against the authority's C_PIN,
// counting failures against its TryLimit.
func (d *Drive) authenticate(sp, authority sed.UID, challenge []byte) sed.Status {
	if !authorityIn(sp, authority) {
		return sed.StatusInvalidParameter
	}
	c := d.cpins[sed.CPINOf(authority)]
	if c == nil {
		return sed.StatusInvalidParameter
	}
	if c.tryLimit > 0 && c.tries >= c.tryLimit {
		return sed.StatusAuthorityLockedOut
	}
	if !d.enabled[authority] {
		return sed.StatusNotAuthorized
	}
	if len(challenge) != len(c.pin) || subtle.ConstantTimeCompare(challenge, c.pin) != 1 {
		c.tries++
		return sed.StatusNotAuthorized
	}
	c.tries = 0
	return sed.StatusSuccess
}

// inSession handles a packet of an open session.
func (d *Drive) inSession(tsn, hsn uint32, tokens []byte) []byte {
	s := d.sess
	now := d.opt.Now()
	if s == nil || s.tsn != tsn || s.hsn != hsn {
		return nil // no such session: discard
	}
	if now.Sub(s.last) > s.timeout {
		d.sess = nil // timed out: the TPer closed it; discard
		return nil
	}
	s.last = now
	// An EndOfSession token closes the session (Core 3.2.4.2), whatever
	// follows it: the Linux kernel's Opal client (block/sed-opal.c) sends
	// EndOfSession, EndList, EndOfData and an empty status list.
	if len(tokens) > 0 && tokens[0] == byte(sed.TokenEndOfSession) {
		d.sess = nil
		return []byte{byte(sed.TokenEndOfSession)}
	}
	inv, meth, args, ok := parseCall(tokens)
	if !ok {
		return result(nil, sed.StatusInvalidParameter)
	}
	res, st, endSession := d.method(s, inv, meth, args)
	if endSession && st == sed.StatusSuccess {
		d.sess = nil
	}
	return result(res, st)
}

func (s *session) isAdmin() bool {
	return s.sp == sed.LockingSP && s.authority.Uint64()&^0xFFFF == 0x0000000900010000
}

func (s *session) isSID() bool { return s.sp == sed.AdminSP && s.authority == sed.AuthoritySID }

// rangeOf maps a Locking table row or K_AES_256 row to a range number.
func (d *Drive) rangeOf(u sed.UID, key bool) (int, bool) {
	for i := range d.ranges {
		if (!key && u == sed.LockingRange(uint8(i))) || (key && u == sed.RangeKey(uint8(i))) {
			return i, true
		}
	}
	return 0, false
}

// aceKind is which of a locking range's ACEs a UID names.
type aceKind int

const (
	aceSetRdLocked aceKind = iota
	aceSetWrLocked
	aceGetRange
)

func (d *Drive) aceRange(u sed.UID) (n int, kind aceKind, ok bool) {
	for i := range d.ranges {
		switch u {
		case sed.ACESetRdLocked(uint8(i)):
			return i, aceSetRdLocked, true
		case sed.ACESetWrLocked(uint8(i)):
			return i, aceSetWrLocked, true
		case sed.ACEGetRange(uint8(i)):
			return i, aceGetRange, true
		}
	}
	return 0, 0, false
}

// method dispatches one method call. endSession is set for methods after
// which the TPer closes the session (Revert, RevertSP).
func (d *Drive) method(s *session, inv, meth sed.UID, args sed.List) (res sed.List, st sed.Status, endSession bool) {
	switch meth {
	case sed.MethodGet:
		return d.get(s, inv, args)
	case sed.MethodSet:
		if !s.write {
			return nil, sed.StatusNotAuthorized, false
		}
		return nil, d.set(s, inv, args), false
	case sed.MethodActivate:
		if !s.write || !s.isSID() {
			return nil, sed.StatusNotAuthorized, false
		}
		if inv != sed.LockingSP {
			return nil, sed.StatusInvalidParameter, false
		}
		if !d.lockingActive {
			// Opal SSC 2.01 5.2.1: Admin1's PIN becomes SID's PIN.
			d.lockingActive = true
			d.cpins[sed.CPINAdmin1].pin = append([]byte{}, d.cpins[sed.CPINSID].pin...)
			d.enabled[sed.AuthorityAdmin1] = true
		}
		return nil, sed.StatusSuccess, false
	case sed.MethodRevert:
		if !s.write || s.sp != sed.AdminSP || (s.authority != sed.AuthoritySID && s.authority != sed.AuthorityPSID) {
			return nil, sed.StatusNotAuthorized, false
		}
		if inv != sed.AdminSP {
			return nil, sed.StatusInvalidParameter, false
		}
		if err := d.factoryReset(); err != nil {
			return nil, sed.StatusTPerMalfunction, false
		}
		return nil, sed.StatusSuccess, true
	case sed.MethodRevertSP:
		if !s.write || !s.isAdmin() {
			return nil, sed.StatusNotAuthorized, false
		}
		if inv != sed.ThisSP {
			return nil, sed.StatusInvalidParameter, false
		}
		keep := false
		for _, a := range args {
			nm, ok := a.(sed.Name)
			if !ok || nm.Name != sed.Uint(paramKeepGlobalRangeKey) {
				return nil, sed.StatusInvalidParameter, false
			}
			keep = nm.Value == sed.Uint(1)
		}
		if err := d.resetLockingSP(keep); err != nil {
			return nil, sed.StatusTPerMalfunction, false
		}
		d.lockingActive = false
		return nil, sed.StatusSuccess, true
	case sed.MethodGenKey:
		if !s.write || !s.isAdmin() {
			return nil, sed.StatusNotAuthorized, false
		}
		n, ok := d.rangeOf(inv, true)
		if !ok || len(args) != 0 {
			return nil, sed.StatusInvalidParameter, false
		}
		if err := d.ranges[n].genKey(); err != nil {
			return nil, sed.StatusTPerMalfunction, false
		}
		return nil, sed.StatusSuccess, false
	}
	return nil, sed.StatusInvalidMethod, false
}

// cellblock reads Get's [StartColumn, EndColumn] (both optional).
func cellblock(args sed.List) (first, last uint64, ok bool) {
	first, last = 0, 1<<32
	if len(args) != 1 {
		return 0, 0, false
	}
	l, ok := args[0].(sed.List)
	if !ok {
		return 0, 0, false
	}
	for _, v := range l {
		nm, ok := v.(sed.Name)
		if !ok {
			return 0, 0, false
		}
		n, _ := nm.Name.(sed.Uint)
		u, ok := nm.Value.(sed.Uint)
		if !ok {
			return 0, 0, false
		}
		switch n {
		case sed.CellStartColumn:
			first = uint64(u)
		case sed.CellEndColumn:
			last = uint64(u)
		default:
			return 0, 0, false
		}
	}
	return first, last, first <= last
}

func (d *Drive) get(s *session, inv sed.UID, args sed.List) (sed.List, sed.Status, bool) {
	first, last, ok := cellblock(args)
	if !ok {
		return nil, sed.StatusInvalidParameter, false
	}
	cols := map[uint64]sed.Value{}
	switch {
	case s.sp == sed.AdminSP && inv == sed.CPINMSID:
		cols[0], cols[sed.ColCPINPIN] = inv.Value(), sed.Bytes(d.opt.MSID)
	case s.sp == sed.AdminSP && (inv == sed.LockingSP || inv == sed.AdminSP):
		lc := sed.Uint(sed.LifeCycleManufactured)
		if inv == sed.LockingSP && !d.lockingActive {
			lc = sed.LifeCycleManufacturedInactive
		}
		cols[0], cols[sed.ColSPLifeCycle] = inv.Value(), lc
	case s.sp == sed.LockingSP && inv == sed.LockingInfo:
		cols[0], cols[sed.ColLockingInfoMaxRanges] = inv.Value(), sed.Uint(d.opt.MaxRanges)
	default:
		c := d.cpins[inv]
		n, isRange := d.rangeOf(inv, false)
		switch {
		case c != nil && (s.isSID() && (inv == sed.CPINSID) || s.isAdmin() && authorityIn(sed.LockingSP, cpinAuthority(inv))):
			if first <= sed.ColCPINPIN && last >= sed.ColCPINPIN {
				return nil, sed.StatusNotAuthorized, false // PINs are write-only
			}
			cols[0], cols[sed.ColCPINTryLimit], cols[sed.ColCPINTries] = inv.Value(), sed.Uint(c.tryLimit), sed.Uint(c.tries)
		case isRange && (s.isAdmin() || d.ranges[n].getACE[s.authority] && first >= sed.ColRangeStart && last <= sed.ColActiveKey):
			r := d.ranges[n]
			cols[0] = inv.Value()
			cols[sed.ColRangeStart], cols[sed.ColRangeLength] = sed.Uint(r.start), sed.Uint(r.length)
			if n == 0 {
				cols[sed.ColRangeLength] = sed.Uint(d.sectors)
			}
			cols[sed.ColReadLockEnabled], cols[sed.ColWriteLockEnabled] = sed.Bool(r.rle), sed.Bool(r.wle)
			cols[sed.ColReadLocked], cols[sed.ColWriteLocked] = sed.Bool(r.rl), sed.Bool(r.wl)
			lor := sed.List{}
			if r.lockOnReset {
				lor = sed.List{sed.Uint(0)}
			}
			cols[sed.ColLockOnReset], cols[sed.ColActiveKey] = lor, sed.RangeKey(uint8(n)).Value()
		case inv == sed.MBRControl && s.isAdmin():
			cols[0], cols[sed.ColMBREnable], cols[sed.ColMBRDone] = inv.Value(), sed.Bool(d.mbrEnable), sed.Bool(d.mbrDone)
		case s.isAdmin() && authorityIn(sed.LockingSP, inv):
			cols[0], cols[sed.ColAuthorityEnabled] = inv.Value(), sed.Bool(d.enabled[inv])
		case c != nil || isRange || inv == sed.MBRControl:
			return nil, sed.StatusNotAuthorized, false
		default:
			return nil, sed.StatusInvalidParameter, false
		}
	}
	row := sed.List{}
	for c := first; c <= last && c <= 16; c++ {
		if v, ok := cols[c]; ok {
			row = append(row, sed.Name{Name: sed.Uint(c), Value: v})
		}
	}
	return sed.List{row}, sed.StatusSuccess, false
}

func cpinAuthority(cpinRow sed.UID) sed.UID {
	return sed.UID{0, 0, 0, 0x09, cpinRow[4], cpinRow[5], cpinRow[6], cpinRow[7]}
}

// setValues reads Set's [Values = [ {col: value} ... ]].
func setValues(args sed.List) (map[uint64]sed.Value, bool) {
	if len(args) != 1 {
		return nil, false
	}
	nm, ok := args[0].(sed.Name)
	if !ok || nm.Name != sed.Uint(sed.SetValues) {
		return nil, false
	}
	l, ok := nm.Value.(sed.List)
	if !ok {
		return nil, false
	}
	vals := map[uint64]sed.Value{}
	for _, v := range l {
		c, ok := v.(sed.Name)
		if !ok {
			return nil, false
		}
		n, ok := c.Name.(sed.Uint)
		if !ok {
			return nil, false
		}
		vals[uint64(n)] = c.Value
	}
	return vals, true
}

func boolOf(v sed.Value) (bool, bool) {
	u, ok := v.(sed.Uint)
	if !ok || u > 1 {
		return false, false
	}
	return u == 1, true
}

func (d *Drive) set(s *session, inv sed.UID, args sed.List) sed.Status {
	vals, ok := setValues(args)
	if !ok {
		return sed.StatusInvalidParameter
	}
	if c := d.cpins[inv]; c != nil {
		owner := cpinAuthority(inv)
		allowed := (s.isSID() && inv == sed.CPINSID) ||
			(s.isAdmin() && authorityIn(sed.LockingSP, owner)) ||
			(s.sp == sed.LockingSP && s.authority == owner)
		if !allowed {
			return sed.StatusNotAuthorized
		}
		for col, v := range vals {
			switch col {
			case sed.ColCPINPIN:
				b, ok := v.(sed.Bytes)
				if !ok || len(b) > 32 {
					return sed.StatusInvalidParameter
				}
				c.pin = append([]byte{}, b...)
			case sed.ColCPINTryLimit:
				u, ok := v.(sed.Uint)
				if !ok || !s.isAdmin() && !s.isSID() {
					return sed.StatusInvalidParameter
				}
				c.tryLimit = uint64(u)
			default:
				return sed.StatusInvalidParameter
			}
		}
		return sed.StatusSuccess
	}
	if n, ok := d.rangeOf(inv, false); ok && s.sp == sed.LockingSP {
		return d.setRange(s, n, vals)
	}
	if n, kind, ok := d.aceRange(inv); ok && s.sp == sed.LockingSP {
		if !s.isAdmin() {
			return sed.StatusNotAuthorized
		}
		return d.setACE(n, kind, vals)
	}
	if inv == sed.MBRControl && s.sp == sed.LockingSP {
		if !s.isAdmin() {
			return sed.StatusNotAuthorized
		}
		for col, v := range vals {
			b, ok := boolOf(v)
			if !ok {
				return sed.StatusInvalidParameter
			}
			switch col {
			case sed.ColMBREnable:
				d.mbrEnable = b
			case sed.ColMBRDone:
				d.mbrDone = b
			default:
				return sed.StatusInvalidParameter
			}
		}
		return sed.StatusSuccess
	}
	if authorityIn(sed.LockingSP, inv) && s.sp == sed.LockingSP {
		if !s.isAdmin() {
			return sed.StatusNotAuthorized
		}
		for col, v := range vals {
			b, ok := boolOf(v)
			if !ok || col != sed.ColAuthorityEnabled {
				return sed.StatusInvalidParameter
			}
			d.enabled[inv] = b
		}
		return sed.StatusSuccess
	}
	return sed.StatusInvalidParameter
}

func (d *Drive) setRange(s *session, n int, vals map[uint64]sed.Value) sed.Status {
	r := d.ranges[n]
	next := *r
	for col, v := range vals {
		// Users may only lock and unlock, and only where an ACE lets them.
		if !s.isAdmin() {
			switch {
			case col == sed.ColReadLocked && r.rdACE[s.authority]:
			case col == sed.ColWriteLocked && r.wrACE[s.authority]:
			default:
				return sed.StatusNotAuthorized
			}
		}
		switch col {
		case sed.ColRangeStart, sed.ColRangeLength:
			u, ok := v.(sed.Uint)
			if !ok || n == 0 {
				return sed.StatusInvalidParameter
			}
			if col == sed.ColRangeStart {
				next.start = uint64(u)
			} else {
				next.length = uint64(u)
			}
		case sed.ColReadLockEnabled, sed.ColWriteLockEnabled, sed.ColReadLocked, sed.ColWriteLocked:
			b, ok := boolOf(v)
			if !ok {
				return sed.StatusInvalidParameter
			}
			switch col {
			case sed.ColReadLockEnabled:
				next.rle = b
			case sed.ColWriteLockEnabled:
				next.wle = b
			case sed.ColReadLocked:
				next.rl = b
			default:
				next.wl = b
			}
		case sed.ColLockOnReset:
			l, ok := v.(sed.List)
			if !ok {
				return sed.StatusInvalidParameter
			}
			next.lockOnReset = false
			for _, e := range l {
				if e == sed.Uint(0) {
					next.lockOnReset = true
				}
			}
		default:
			return sed.StatusInvalidParameter
		}
	}
	if n != 0 && next.length > 0 {
		if next.start >= d.sectors || next.length > d.sectors-next.start {
			return sed.StatusInvalidParameter
		}
		// Opal SSC 2.01 4.3.5.2: non-global ranges must not overlap.
		for i, o := range d.ranges {
			if i == 0 || i == n || o.length == 0 {
				continue
			}
			if next.start < o.start+o.length && o.start < next.start+next.length {
				return sed.StatusInvalidParameter
			}
		}
	}
	*r = next
	return sed.StatusSuccess
}

// setACE stores the authorities of an ACE's BooleanExpr: a list of
// Authority_object_ref elements joined by OR.
func (d *Drive) setACE(n int, kind aceKind, vals map[uint64]sed.Value) sed.Status {
	expr, ok := vals[3]
	if !ok || len(vals) != 1 {
		return sed.StatusInvalidParameter
	}
	l, ok := expr.(sed.List)
	if !ok {
		return sed.StatusInvalidParameter
	}
	auths := map[sed.UID]bool{}
	for _, e := range l {
		nm, ok := e.(sed.Name)
		if !ok {
			return sed.StatusInvalidParameter
		}
		key, _ := nm.Name.(sed.Bytes)
		switch {
		case bytes.Equal(key, halfAuthorityObjectRef):
			b, _ := nm.Value.(sed.Bytes)
			a, err := sed.UIDFromBytes(b)
			if err != nil || !authorityIn(sed.LockingSP, a) {
				return sed.StatusInvalidParameter
			}
			auths[a] = true
		case bytes.Equal(key, halfBooleanACE):
			if nm.Value != sed.Uint(1) { // only OR
				return sed.StatusInvalidParameter
			}
		default:
			return sed.StatusInvalidParameter
		}
	}
	switch kind {
	case aceSetRdLocked:
		d.ranges[n].rdACE = auths
	case aceSetWrLocked:
		d.ranges[n].wrACE = auths
	case aceGetRange:
		d.ranges[n].getACE = auths
	}
	return sed.StatusSuccess
}
