package sed

import (
	"encoding/binary"
	"fmt"
)

// UID is an 8-byte TCG object or method identifier (Core 5.1.2): the first
// four bytes name a table, the last four a row in it.
type UID [8]byte

// Uint64 returns the UID as a big-endian integer.
func (u UID) Uint64() uint64 { return binary.BigEndian.Uint64(u[:]) }

// Value is the UID as a byte-string atom, the form it takes on the wire.
func (u UID) Value() Bytes { return Bytes(u[:]) }

// uidOf builds a UID from its integer form.
func uidOf(v uint64) UID {
	var u UID
	binary.BigEndian.PutUint64(u[:], v)
	return u
}

// UIDFromBytes converts a byte-string atom into a UID.
func UIDFromBytes(b []byte) (UID, error) {
	var u UID
	if len(b) != len(u) {
		return u, fmt.Errorf("%w: UID of %d bytes, want 8", ErrMalformed, len(b))
	}
	copy(u[:], b)
	return u, nil
}

// Invoking UIDs, authorities, tables and rows used by Opal 2 (Core 2.01
// section 6.3 "Assigned UIDs"; Opal SSC 2.01 sections 4.2 and 4.3, where
// the Admin SP and Locking SP tables are listed with their rows).
var (
	// Session manager and the "this SP" shorthand.
	SMUID  = uidOf(0x00000000000000FF)
	ThisSP = uidOf(0x0000000000000001)

	// Security providers (rows of the Admin SP's SP table).
	AdminSP   = uidOf(0x0000020500000001)
	LockingSP = uidOf(0x0000020500000002)

	// Authorities.
	AuthorityAnybody      = uidOf(0x0000000900000001)
	AuthorityAdmins       = uidOf(0x0000000900000002)
	AuthorityMakers       = uidOf(0x0000000900000003)
	AuthoritySID          = uidOf(0x0000000900000006)
	AuthorityAdminSPAdmin = uidOf(0x0000000900000201) // Admin1 of the Admin SP
	AuthorityPSID         = uidOf(0x000000090001FF01)
	AuthorityAdmin1       = uidOf(0x0000000900010001) // Admin1 of the Locking SP
	AuthorityUser1        = uidOf(0x0000000900030001)

	// C_PIN rows.
	CPINSID    = uidOf(0x0000000B00000001)
	CPINMSID   = uidOf(0x0000000B00008402)
	CPINAdmin1 = uidOf(0x0000000B00010001) // Locking SP
	CPINUser1  = uidOf(0x0000000B00030001)

	// Locking SP objects.
	LockingInfo        = uidOf(0x0000080100000001)
	LockingGlobalRange = uidOf(0x0000080200000001)
	MBRControl         = uidOf(0x0000080300000001)
	MBRTable           = uidOf(0x0000080400000000)
	KAES256GlobalRange = uidOf(0x0000080600000001)
)

// Method UIDs (Core 2.01 section 6.3, table 241).
var (
	MethodProperties   = uidOf(0x000000000000FF01)
	MethodStartSession = uidOf(0x000000000000FF02)
	MethodSyncSession  = uidOf(0x000000000000FF03)
	MethodCloseSession = uidOf(0x000000000000FF06)
	MethodNext         = uidOf(0x0000000600000008)
	MethodGetACL       = uidOf(0x000000060000000D)
	MethodGenKey       = uidOf(0x0000000600000010)
	MethodRevertSP     = uidOf(0x0000000600000011)
	MethodGet          = uidOf(0x0000000600000016)
	MethodSet          = uidOf(0x0000000600000017)
	MethodAuthenticate = uidOf(0x000000060000001C)
	MethodRevert       = uidOf(0x0000000600000202)
	MethodActivate     = uidOf(0x0000000600000203)
	MethodRandom       = uidOf(0x0000000600000601)
	MethodErase        = uidOf(0x0000000600000803)
)

// MaxLockingRange is the highest non-global range number encoded in the
// last byte of a range UID; Opal 2 drives support at least 8.
const MaxLockingRange = 0xFF

// LockingRange returns the Locking table row of range n: 0 is the global
// range, 1..255 are Locking_Range1.. (Opal SSC 2.01 table 35).
func LockingRange(n uint8) UID {
	if n == 0 {
		return LockingGlobalRange
	}
	return uidOf(0x0000080200030000 | uint64(n))
}

// RangeKey returns the K_AES_256 row that is the media key of range n.
func RangeKey(n uint8) UID {
	if n == 0 {
		return KAES256GlobalRange
	}
	return uidOf(0x0000080600030000 | uint64(n))
}

// User returns the Locking SP authority UserN (n >= 1).
func User(n uint8) UID { return uidOf(0x0000000900030000 | uint64(n)) }

// Admin returns the Locking SP authority AdminN (n >= 1).
func Admin(n uint8) UID { return uidOf(0x0000000900010000 | uint64(n)) }

// CPINOf returns the C_PIN row that holds the PIN of a Locking SP or Admin
// SP authority (Opal SSC 2.01 keeps the row numbers of Authority and C_PIN
// tables in step).
func CPINOf(authority UID) UID {
	if authority == AuthoritySID {
		return CPINSID
	}
	if authority == AuthorityPSID {
		return uidOf(0x0000000B0001FF01)
	}
	return uidOf(0x0000000B00000000 | authority.Uint64()&0xFFFFFFFF)
}

// ACESetRdLocked and ACESetWrLocked return the ACEs that govern setting
// ReadLocked / WriteLocked on range n (Opal SSC 2.01 table 29).
func ACESetRdLocked(n uint8) UID { return uidOf(0x000000080003E000 | uint64(n)) }

// ACESetWrLocked is the WriteLocked counterpart of ACESetRdLocked.
func ACESetWrLocked(n uint8) UID { return uidOf(0x000000080003E800 | uint64(n)) }

// ACEGetRange returns ACE_Locking_RangeN_Get_RangeStartToActiveKey (Opal
// SSC 2.01 table 37; N = 0 is the global range): who may read the range's
// columns RangeStart to ActiveKey. The kernel's IOC_OPAL_ADD_USR_TO_LR
// grants it to the user next to Admin1.
func ACEGetRange(n uint8) UID { return uidOf(0x000000080003D000 | uint64(n)) }

// Table columns (Core 2.01 section 5; Opal SSC 2.01 section 4).
const (
	ColCPINPIN      = 3
	ColCPINTryLimit = 5
	ColCPINTries    = 6

	ColRangeStart       = 3
	ColRangeLength      = 4
	ColReadLockEnabled  = 5
	ColWriteLockEnabled = 6
	ColReadLocked       = 7
	ColWriteLocked      = 8
	ColLockOnReset      = 9
	ColActiveKey        = 10

	ColMBREnable = 1
	ColMBRDone   = 2

	ColSPLifeCycle = 6

	ColAuthorityEnabled = 5

	ColLockingInfoMaxRanges = 4
)

// Life cycle states of an SP (Opal SSC 2.01 section 5.1.2.2.1.1).
const (
	LifeCycleIssued               = 0x00
	LifeCycleManufacturedInactive = 0x08
	LifeCycleManufactured         = 0x09
)

// Named parameters of Get's Cellblock and Set's Where/Values.
const (
	CellStartColumn = 3
	CellEndColumn   = 4
	SetValues       = 1
)

var uidNames = map[UID]string{
	SMUID: "SMUID", ThisSP: "ThisSP", AdminSP: "AdminSP", LockingSP: "LockingSP",
	AuthorityAnybody: "Anybody", AuthorityAdmins: "Admins", AuthorityMakers: "Makers",
	AuthoritySID: "SID", AuthorityAdminSPAdmin: "AdminSP.Admin1", AuthorityPSID: "PSID",
	CPINSID: "C_PIN_SID", CPINMSID: "C_PIN_MSID", LockingInfo: "LockingInfo",
	LockingGlobalRange: "Locking_GlobalRange", MBRControl: "MBRControl", MBRTable: "MBR",
	KAES256GlobalRange: "K_AES_256_GlobalRange",
	MethodProperties:   "Properties", MethodStartSession: "StartSession", MethodSyncSession: "SyncSession",
	MethodCloseSession: "CloseSession", MethodNext: "Next", MethodGetACL: "GetACL",
	MethodGenKey: "GenKey", MethodRevertSP: "RevertSP", MethodGet: "Get", MethodSet: "Set",
	MethodAuthenticate: "Authenticate", MethodRevert: "Revert", MethodActivate: "Activate",
	MethodRandom: "Random", MethodErase: "Erase",
}

// String names well-known UIDs and prints others in hex.
func (u UID) String() string {
	if n, ok := uidNames[u]; ok {
		return n
	}
	v := u.Uint64()
	switch v &^ 0xFFFF {
	case 0x0000000900010000:
		return fmt.Sprintf("Admin%d", v&0xFFFF)
	case 0x0000000900030000:
		return fmt.Sprintf("User%d", v&0xFFFF)
	case 0x0000000B00010000:
		return fmt.Sprintf("C_PIN_Admin%d", v&0xFFFF)
	case 0x0000000B00030000:
		return fmt.Sprintf("C_PIN_User%d", v&0xFFFF)
	case 0x0000080200030000:
		return fmt.Sprintf("Locking_Range%d", v&0xFFFF)
	case 0x0000080600030000:
		return fmt.Sprintf("K_AES_256_Range%d", v&0xFFFF)
	}
	return fmt.Sprintf("UID(%016x)", v)
}
