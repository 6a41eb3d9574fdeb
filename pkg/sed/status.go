package sed

import "fmt"

// Status is a method status code (Core 2.01 section 5.1.5, table 166). A
// non-zero Status is an error; compare with errors.Is against the
// constants below, e.g. errors.Is(err, sed.StatusNotAuthorized).
type Status uint8

// Method status codes.
const (
	StatusSuccess             Status = 0x00
	StatusNotAuthorized       Status = 0x01
	StatusSPBusy              Status = 0x03
	StatusSPFailed            Status = 0x04
	StatusSPDisabled          Status = 0x05
	StatusSPFrozen            Status = 0x06
	StatusNoSessionsAvailable Status = 0x07
	StatusUniquenessConflict  Status = 0x08
	StatusInsufficientSpace   Status = 0x09
	StatusInsufficientRows    Status = 0x0A
	StatusInvalidMethod       Status = 0x0B
	StatusInvalidParameter    Status = 0x0C
	StatusInvalidReference    Status = 0x0D
	StatusTPerMalfunction     Status = 0x0F
	StatusTransactionFailure  Status = 0x10
	StatusResponseOverflow    Status = 0x11
	StatusAuthorityLockedOut  Status = 0x12
	StatusFail                Status = 0x3F
)

var statusText = map[Status]string{
	StatusSuccess:             "success",
	StatusNotAuthorized:       "not authorized (wrong PIN or insufficient authority)",
	StatusSPBusy:              "SP busy",
	StatusSPFailed:            "SP failed",
	StatusSPDisabled:          "SP disabled (not activated)",
	StatusSPFrozen:            "SP frozen",
	StatusNoSessionsAvailable: "no sessions available",
	StatusUniquenessConflict:  "uniqueness conflict",
	StatusInsufficientSpace:   "insufficient space",
	StatusInsufficientRows:    "insufficient rows",
	StatusInvalidMethod:       "invalid method",
	StatusInvalidParameter:    "invalid parameter",
	StatusInvalidReference:    "invalid reference",
	StatusTPerMalfunction:     "TPer malfunction",
	StatusTransactionFailure:  "transaction failure",
	StatusResponseOverflow:    "response overflow",
	StatusAuthorityLockedOut:  "authority locked out (too many failed attempts; power-cycle the drive)",
	StatusFail:                "failed",
}

// Error describes the status without any of the method's arguments.
func (s Status) Error() string {
	if t, ok := statusText[s]; ok {
		return fmt.Sprintf("sed: method status 0x%02x: %s", uint8(s), t)
	}
	return fmt.Sprintf("sed: method status 0x%02x: unknown status", uint8(s))
}
