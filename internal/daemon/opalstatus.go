package daemon

// OpalStatus is the drive side of a LUKS2 hw-opal(-crypt) volume: the
// locking range behind its data segment, as the drive reports it.
type OpalStatus struct {
	SegmentType string `json:"segment_type"` // "hw-opal" or "hw-opal-crypt"
	Range       uint8  `json:"range"`        // locking range = opal_segment_number
	KeyBytes    int    `json:"key_bytes"`    // range key: opal_key_size bytes of the volume key
	// LockingEnabled and AnyRangeLocked come from Level 0 Discovery,
	// which needs no credential.
	LockingEnabled bool `json:"locking_enabled"`
	AnyRangeLocked bool `json:"any_range_locked"`
	// RangeRead says whether the range itself was read (it takes the
	// Admin1 key); the fields below are zero otherwise.
	RangeRead bool `json:"range_read"`
	// State: "locked", "read-only" or "unlocked".
	State       string `json:"state,omitempty"`
	StartBlock  uint64 `json:"start_block"`
	LengthBlock uint64 `json:"length_blocks"`
	BlockSize   uint32 `json:"block_size"`
}
