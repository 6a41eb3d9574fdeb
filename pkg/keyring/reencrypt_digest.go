package keyring

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
)

// The reencryption verification digest (cryptsetup 2.4.3+, CVE-2021-4122)
// is a pbkdf2 digest, bound to the reencrypt keyslot and no segment, of
// this byte string:
//
//	'v' '0'+version          "v2"; "v3" for a decryption with a data shift
//	                         (cryptsetup 2.6's online-reencrypt-v3)
//	old key                  when the old side is encrypted (not for encrypt)
//	new key                  when the new side is encrypted and its digest differs
//	reencrypt keyslot        mode, direction, area type, area offset, area size,
//	                         then by area type: checksum: hash, sector_size;
//	                         datashift: shift_size; datashift-checksum: hash,
//	                         sector_size, shift_size
//	backup-previous          segment fields (below)
//	backup-final
//	backup-moved-segment     when present
//
// Fields are serialized without separators: strings as their bytes (at most
// 64), 64-bit numbers (JSON decimal strings) as 8 bytes big-endian, a
// "dynamic" size as the 7 bytes "dynamic", 32-bit numbers (JSON numbers) as
// 4 bytes big-endian. A crypt segment is type, offset, size, iv_tweak,
// encryption, sector_size; a linear segment type, offset, size. Anything
// else (a missing field, another segment type) makes the metadata invalid.
//
// Someone who can write the header but holds no key cannot produce it, so
// cryptsetup (and encblk) refuse to act on reencryption metadata that does
// not verify.

type fieldKind int

const (
	fieldStr fieldKind = iota
	fieldU64
	fieldSize // u64 or "dynamic"
	fieldU32
)

type serialField struct {
	kind fieldKind
	name string
}

const maxSerialStr = 64

// serializeFields appends obj's fields to buf as described above.
func serializeFields(buf []byte, obj json.RawMessage, fields []serialField) ([]byte, error) {
	var o map[string]json.RawMessage
	if err := json.Unmarshal(obj, &o); err != nil || o == nil {
		return nil, fmt.Errorf("not a JSON object")
	}
	for _, f := range fields {
		raw, ok := o[f.name]
		if !ok {
			return nil, fmt.Errorf("field %q missing", f.name)
		}
		switch f.kind {
		case fieldStr:
			var s string
			if json.Unmarshal(raw, &s) != nil || len(s) == 0 || len(s) > maxSerialStr {
				return nil, fmt.Errorf("field %q is not a short string", f.name)
			}
			buf = append(buf, s...)
		case fieldU64, fieldSize:
			var s string
			if json.Unmarshal(raw, &s) != nil {
				return nil, fmt.Errorf("field %q is not a string", f.name)
			}
			if f.kind == fieldSize && s == "dynamic" {
				buf = append(buf, s...)
				continue
			}
			n, err := parseDecimal(s)
			if err != nil {
				return nil, fmt.Errorf("field %q: %v", f.name, err)
			}
			buf = binary.BigEndian.AppendUint64(buf, n)
		case fieldU32:
			var n json.Number
			if json.Unmarshal(raw, &n) != nil {
				return nil, fmt.Errorf("field %q is not a number", f.name)
			}
			v, err := strconv.ParseUint(n.String(), 10, 32)
			if err != nil {
				return nil, fmt.Errorf("field %q: %v", f.name, err)
			}
			buf = binary.BigEndian.AppendUint32(buf, uint32(v))
		}
	}
	return buf, nil
}

var (
	serialCrypt  = []serialField{{fieldStr, "type"}, {fieldU64, "offset"}, {fieldSize, "size"}, {fieldU64, "iv_tweak"}, {fieldStr, "encryption"}, {fieldU32, "sector_size"}}
	serialLinear = []serialField{{fieldStr, "type"}, {fieldU64, "offset"}, {fieldSize, "size"}}
)

func serializeSegment(buf []byte, s *Segment) ([]byte, error) {
	switch s.Type {
	case "crypt":
		return serializeFields(buf, s.Raw, serialCrypt)
	case "linear":
		return serializeFields(buf, s.Raw, serialLinear)
	}
	return nil, fmt.Errorf("segment %d of type %q cannot be part of a reencryption", s.ID, s.Type)
}

// serializeReencryptKeyslot appends the reencrypt keyslot's fields.
func serializeReencryptKeyslot(buf []byte, raw json.RawMessage) ([]byte, error) {
	var ks struct {
		Area json.RawMessage `json:"area"`
	}
	if err := json.Unmarshal(raw, &ks); err != nil || ks.Area == nil {
		return nil, fmt.Errorf("reencrypt keyslot has no area")
	}
	var area struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(ks.Area, &area); err != nil {
		return nil, fmt.Errorf("reencrypt keyslot area: %v", err)
	}
	buf, err := serializeFields(buf, raw, []serialField{{fieldStr, "mode"}, {fieldStr, "direction"}})
	if err != nil {
		return nil, err
	}
	fields := []serialField{{fieldStr, "type"}, {fieldU64, "offset"}, {fieldU64, "size"}}
	switch area.Type {
	case "datashift-checksum":
		fields = append(fields, serialField{fieldStr, "hash"}, serialField{fieldU32, "sector_size"}, serialField{fieldU64, "shift_size"})
	case "datashift", "datashift-journal":
		fields = append(fields, serialField{fieldU64, "shift_size"})
	case "checksum":
		fields = append(fields, serialField{fieldStr, "hash"}, serialField{fieldU32, "sector_size"})
	}
	return serializeFields(buf, ks.Area, fields)
}

// reencryptVerificationData builds the string the verification digest
// covers. oldKey is nil when r.OldDigest < 0, newKey when r.NewDigest < 0.
func (m *metadata) reencryptVerificationData(r *Reencryption, version int, oldKey, newKey []byte) ([]byte, error) {
	buf := []byte{'v', byte('0' + version)}
	if r.OldDigest >= 0 {
		if oldKey == nil {
			return nil, fmt.Errorf("the old volume key is needed")
		}
		buf = append(buf, oldKey...)
	}
	if r.NewDigest >= 0 && r.NewDigest != r.OldDigest {
		if newKey == nil {
			return nil, fmt.Errorf("the new volume key is needed")
		}
		buf = append(buf, newKey...)
	}
	if len(buf) == 2 {
		return nil, fmt.Errorf("neither side of the reencryption has a key")
	}
	buf, err := serializeReencryptKeyslot(buf, m.keyslots[strconv.Itoa(r.Keyslot)])
	if err != nil {
		return nil, err
	}
	for _, s := range []*Segment{r.Old, r.New, r.Moved} {
		if s == nil {
			continue
		}
		if buf, err = serializeSegment(buf, s); err != nil {
			return nil, err
		}
	}
	return buf, nil
}

// verifyReencryptDigest checks the verification digest against the keys.
// It fails with ErrCorrupt when the metadata was not made by a holder of
// the keys (or was damaged).
func (m *metadata) verifyReencryptDigest(r *Reencryption, oldKey, newKey []byte) error {
	data, err := m.reencryptVerificationData(r, m.reencryptVersion(), oldKey, newKey)
	if err != nil {
		return fmt.Errorf("%w: reencryption metadata: %v", ErrCorrupt, err)
	}
	defer clear(data)
	d := m.keyslotDigest(r.Keyslot)
	if d == nil {
		return fmt.Errorf("%w: reencryption metadata has no verification digest (cryptsetup repair adds one)", ErrCorrupt)
	}
	if len(d.Segments) != 0 {
		return fmt.Errorf("%w: reencryption verification digest %d is bound to segments", ErrCorrupt, d.ID)
	}
	ok, err := d.verify(data)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: reencryption metadata does not match its verification digest (changed without the keys?)", ErrCorrupt)
	}
	return nil
}

// reencryptDigest returns a new verification digest object for e (bound
// to the reencrypt keyslot) over the keys, of the version e's requirement
// names.
func (e *metadata) reencryptDigest(r *Reencryption, oldKey, newKey []byte, iterations int) (json.RawMessage, error) {
	data, err := e.reencryptVerificationData(r, e.reencryptVersion(), oldKey, newKey)
	if err != nil {
		return nil, err
	}
	defer clear(data)
	return newDigest(data, iterations, []int{r.Keyslot}, nil)
}
