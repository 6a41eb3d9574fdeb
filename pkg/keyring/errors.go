package keyring

import "errors"

// Sentinel errors. Callers test them with errors.Is; the messages wrapping
// them say which copy, keyslot or field is at fault, never a secret.
var (
	// ErrNoMatchingKeyslot means no keyslot opened with the given KEK: a
	// wrong passphrase or key file, or a KEK that belongs to another
	// volume. An Identity returns it (wrapped) for "not mine, try the next".
	ErrNoMatchingKeyslot = errors.New("no key slot matches")

	// ErrUnavailable means a keyslot's KEK source cannot give its secret
	// now (a key server down or refusing, a TPM whose PCRs changed). An
	// Identity returns it (wrapped) for "mine, but not now: try the next
	// and report why"; an unlock that opened nothing and met it returns a
	// *LockedError wrapping it. The volume stays locked.
	ErrUnavailable = errors.New("volume stays locked")

	// ErrNotLUKS means neither header copy carries a LUKS magic.
	ErrNotLUKS = errors.New("not a LUKS volume")

	// ErrCorrupt means the metadata is damaged or inconsistent: bad
	// checksum, malformed JSON, fields out of range.
	ErrCorrupt = errors.New("corrupt LUKS metadata")

	// ErrUnsupported means the metadata is valid but uses something encblk
	// does not serve: a cipher, KDF, segment type or mandatory requirement.
	ErrUnsupported = errors.New("unsupported LUKS feature")

	// ErrIO wraps read, write and sync failures of the header device.
	ErrIO = errors.New("I/O error")

	// ErrKeyslotNotFound means a keyslot number names no keyslot.
	ErrKeyslotNotFound = errors.New("keyslot not found")

	// ErrNoSpace means the keyslots area (or the JSON area) is full.
	ErrNoSpace = errors.New("no space left in LUKS2 metadata")

	// ErrStale means another process (cryptsetup, a second encblk)
	// changed the header since this keyring read it; nothing was written.
	// Reload and retry.
	ErrStale = errors.New("LUKS header changed on disk since it was read")

	// ErrReadOnly means the keyring was opened read-only, or the volume's
	// metadata (LUKS1) is one encblk only reads.
	ErrReadOnly = errors.New("metadata is read-only")
)
