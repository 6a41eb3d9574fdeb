package keyring

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// LUKS2 reencryption metadata, as cryptsetup 2.6 writes it.
//
// While the data key (DEK) is being replaced, or data encrypted or
// decrypted in place, the header holds:
//
//   - a keyslot of type "reencrypt" (priority 0, key_size 1) that opens
//     nothing: it holds the state of the operation,
//
//     {"type":"reencrypt", "key_size":1, "priority":0,
//     "mode":"reencrypt"|"encrypt"|"decrypt", "direction":"forward"|"backward",
//     "area":{"type":"checksum"|"journal"|"datashift"|"none", "offset", "size",
//     "hash" and "sector_size" (checksum), "shift_size" (datashift)}}
//
//     its area (in the keyslots area) is the resilience area: for checksum
//     resilience, the hash of every sector_size block of the hot zone as it
//     was before the zone was rewritten;
//   - the data segments as they are now, in device order: the part done
//     (new key), at most one hot zone flagged "in-reencryption" (being
//     rewritten: some blocks old, some new), the part to do (old key);
//   - three backup segments that never map data: "backup-previous" (the
//     volume before), "backup-final" (the volume after) and, for encryption
//     that moves the first data segment, "backup-moved-segment";
//   - digests: the old key's (old keyslots, old segments, backup-previous),
//     the new key's (new keyslots, new segments, backup-final), the hot zone
//     in both; and a digest bound to the reencrypt keyslot only, the
//     verification digest (CVE-2021-4122): PBKDF2 over both keys and the
//     serialized reencrypt keyslot and backup segments, so that metadata
//     changed by someone without the keys is refused;
//   - config.requirements.mandatory "online-reencrypt-v2": a LUKS2 reader
//     that does not know reencryption must refuse the volume (encblk's
//     unlock does, and so does cryptsetup before 2.2).
//
// A volume is "clean" when no segment is in-reencryption (interrupted
// between zones: resume continues) and "crashed" otherwise (the hot zone
// must first be recovered from the resilience area).

// Reencryption modes and directions, as stored.
const (
	ReencryptModeReencrypt = "reencrypt"
	ReencryptModeEncrypt   = "encrypt"
	ReencryptModeDecrypt   = "decrypt"
)

// reencryptRequirement is the mandatory requirement of reencryption
// metadata format version 2 (cryptsetup 2.4.3 and later).
const reencryptRequirement = "online-reencrypt-v2"

// Reencryption describes a reencryption recorded in a volume's metadata.
type Reencryption struct {
	Keyslot   int    // id of the "reencrypt" keyslot
	Mode      string // "reencrypt", "encrypt" or "decrypt"
	Direction string // "forward" or "backward"

	// Resilience is the area type: "checksum", "journal", "datashift",
	// "datashift-checksum", "datashift-journal" or "none".
	Resilience string
	Hash       string // checksum: hash of each block
	HashBlock  int    // checksum: block size hashed, bytes
	ShiftSize  uint64 // datashift: bytes the data moves

	AreaOffset uint64 // resilience area, bytes from the header start
	AreaSize   uint64

	// Old and New are the backup-previous and backup-final segments; Moved
	// is backup-moved-segment (nil unless encryption moved data).
	Old, New, Moved *Segment
	// OldDigest and NewDigest are the digest ids of the old and new keys;
	// -1 when that side is plaintext (encrypt: old; decrypt: new).
	OldDigest, NewDigest int

	// Hot is the segment flagged in-reencryption, nil when the volume is
	// clean (stopped between zones).
	Hot *Segment
}

// Crashed reports whether a hot zone must be recovered before anything
// else: the operation stopped in the middle of rewriting it.
func (r *Reencryption) Crashed() bool { return r.Hot != nil }

// segmentFlagged returns the segment carrying flag, or nil.
func (m *metadata) segmentFlagged(flag string) *Segment {
	for _, id := range slices.Sorted(maps.Keys(m.Segments)) {
		if slices.Contains(m.Segments[id].Flags, flag) {
			return m.Segments[id]
		}
	}
	return nil
}

// isBackupSegment reports whether s only records state (never maps data).
func isBackupSegment(s *Segment) bool {
	for _, f := range s.Flags {
		if strings.HasPrefix(f, "backup-") {
			return true
		}
	}
	return false
}

// reencryptKeyslot returns the id of the keyslot of type "reencrypt", or -1.
func (m *metadata) reencryptKeyslot() int {
	for _, id := range slices.Sorted(maps.Keys(m.Keyslots)) {
		if m.Keyslots[id].Type == "reencrypt" {
			return id
		}
	}
	return -1
}

type jsonReencryptKeyslot struct {
	Mode      *string `json:"mode"`
	Direction *string `json:"direction"`
	Area      struct {
		Type       string `json:"type"`
		Hash       string `json:"hash"`
		SectorSize *int   `json:"sector_size"`
		ShiftSize  *u64   `json:"shift_size"`
	} `json:"area"`
}

// parseReencrypt validates the reencrypt keyslot, if any, as cryptsetup
// does when it loads a header: at most one, mode and direction known,
// checksum parameters present, a shift that is whole sectors. Resilience
// types it does not know are left for reencryption() to refuse, so that
// dump still shows such a volume.
func (m *metadata) parseReencrypt() error {
	n := 0
	for _, id := range slices.Sorted(maps.Keys(m.Keyslots)) {
		if m.Keyslots[id].Type != "reencrypt" {
			continue
		}
		if n++; n > 1 {
			return fmt.Errorf("keyslot %d: a second reencrypt keyslot", id)
		}
		var j jsonReencryptKeyslot
		if err := json.Unmarshal(m.keyslots[fmt.Sprint(id)], &j); err != nil {
			return fmt.Errorf("keyslot %d: %v", id, err)
		}
		if j.Mode == nil || j.Direction == nil {
			return fmt.Errorf("keyslot %d: reencrypt keyslot without mode or direction", id)
		}
		switch *j.Mode {
		case ReencryptModeReencrypt, ReencryptModeEncrypt, ReencryptModeDecrypt:
		default:
			return fmt.Errorf("keyslot %d: reencrypt mode %q", id, clip([]byte(*j.Mode)))
		}
		if *j.Direction != "forward" && *j.Direction != "backward" {
			return fmt.Errorf("keyslot %d: reencrypt direction %q", id, clip([]byte(*j.Direction)))
		}
		switch j.Area.Type {
		case "checksum", "datashift-checksum":
			if j.Area.Hash == "" || j.Area.SectorSize == nil {
				return fmt.Errorf("keyslot %d: checksum resilience without hash or sector_size", id)
			}
			if ss := *j.Area.SectorSize; ss < 512 || ss > 1<<20 || ss&(ss-1) != 0 {
				return fmt.Errorf("keyslot %d: checksum sector_size %d", id, ss)
			}
		}
		if strings.HasPrefix(j.Area.Type, "datashift") {
			if j.Area.ShiftSize == nil || *j.Area.ShiftSize == 0 || *j.Area.ShiftSize%512 != 0 {
				return fmt.Errorf("keyslot %d: datashift resilience without a shift_size in whole sectors", id)
			}
		}
	}
	hot := 0
	for _, s := range m.Segments {
		if slices.Contains(s.Flags, "in-reencryption") {
			hot++
		}
	}
	if hot > 1 {
		return fmt.Errorf("%d segments flagged in-reencryption", hot)
	}
	return nil
}

// reencryptVersion returns the version of the reencryption requirement
// ("online-reencrypt" is 1, "online-reencrypt-vN" is N), or 0 without one.
func (m *metadata) reencryptVersion() int {
	for _, r := range m.Config.Requirements {
		if r == "online-reencrypt" {
			return 1
		}
		if v, ok := strings.CutPrefix(r, "online-reencrypt-v"); ok {
			n, err := parseDecimal(v)
			if err != nil || n > 200 {
				return -1
			}
			return int(n)
		}
	}
	return 0
}

// reencryption returns the reencryption state, or nil when none is
// recorded. It refuses (ErrUnsupported) what encblk cannot continue: a
// requirement version other than 2, a mode or resilience it does not
// implement, other requirements it does not know.
func (m *metadata) reencryption() (*Reencryption, error) {
	id := m.reencryptKeyslot()
	if id < 0 {
		if m.reencryptVersion() != 0 {
			return nil, fmt.Errorf("%w: reencryption requirement without a reencrypt keyslot", ErrCorrupt)
		}
		return nil, nil
	}
	switch v := m.reencryptVersion(); v {
	case 2, 3:
	case 0:
		return nil, fmt.Errorf("%w: reencrypt keyslot %d without the online-reencrypt requirement", ErrCorrupt, id)
	default:
		return nil, fmt.Errorf("%w: reencryption metadata version %d (encblk knows versions 2 and 3; cryptsetup repair converts version 1)", ErrUnsupported, v)
	}
	for _, r := range m.Config.Requirements {
		if !strings.HasPrefix(r, "online-reencrypt") && !slices.Contains(knownRequirements, r) {
			return nil, fmt.Errorf("%w: mandatory requirement %q", ErrUnsupported, r)
		}
	}
	var j jsonReencryptKeyslot
	if err := json.Unmarshal(m.keyslots[fmt.Sprint(id)], &j); err != nil {
		return nil, fmt.Errorf("%w: keyslot %d: %v", ErrCorrupt, id, err)
	}
	ks := m.Keyslots[id]
	r := &Reencryption{Keyslot: id, Mode: *j.Mode, Direction: *j.Direction, Resilience: j.Area.Type,
		Hash: j.Area.Hash, AreaOffset: ks.AreaOffset, AreaSize: ks.AreaSize,
		Old: m.segmentFlagged("backup-previous"), New: m.segmentFlagged("backup-final"),
		Moved: m.segmentFlagged("backup-moved-segment"), Hot: m.segmentFlagged("in-reencryption"),
		OldDigest: -1, NewDigest: -1}
	if j.Area.SectorSize != nil {
		r.HashBlock = *j.Area.SectorSize
	}
	if j.Area.ShiftSize != nil {
		r.ShiftSize = uint64(*j.Area.ShiftSize)
	}
	if r.Old == nil || r.New == nil {
		return nil, fmt.Errorf("%w: reencryption without backup-previous and backup-final segments", ErrCorrupt)
	}
	if d := m.segmentDigest(r.Old.ID); d != nil {
		r.OldDigest = d.ID
	}
	if d := m.segmentDigest(r.New.ID); d != nil {
		r.NewDigest = d.ID
	}
	return r, nil
}

// Reencryption returns the reencryption recorded in the metadata, or nil
// when there is none. An error (wrapping ErrUnsupported or ErrCorrupt)
// says why encblk cannot continue the one recorded.
func (k *Keyring) Reencryption() (*Reencryption, error) {
	k.mu.Lock()
	m := k.meta
	k.mu.Unlock()
	return m.reencryption()
}

// ReencryptProgress returns how far the recorded reencryption r is: bytes
// of data under the new key (the start of the hot zone after a crash) and
// the data size, for a data device of dataEnd bytes.
func (k *Keyring) ReencryptProgress(r *Reencryption, dataEnd uint64) (done, total uint64) {
	if r == nil || r.New == nil || dataEnd <= r.New.Offset {
		return 0, 0
	}
	total = dataEnd - r.New.Offset
	if r.Hot != nil {
		return min(r.Hot.Offset-min(r.Hot.Offset, r.New.Offset), total), total
	}
	k.mu.Lock()
	m := k.meta
	k.mu.Unlock()
	return min(m.progressOf(r, total), total), total
}
