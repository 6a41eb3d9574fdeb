package keyring

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// The metadata of each step of a forward "reencrypt" (new DEK) run, as
// cryptsetup 2.6 writes it. P is the progress (bytes of data done, from the
// data offset), L the hot zone's length, S the data size:
//
//	start:  0 old (dynamic)                                         + backups
//	hot:    0 new [0,P) | 1 hot [P,P+L) in-reencryption | 2 old [P+L,) + backups
//	post:   0 new [0,P+L) | 1 old [P+L,)                             + backups
//	end:    0 new (dynamic)
//
// (the new part is left out while P is 0, the old part once it is empty;
// the last part is always "dynamic"). The backups follow at the next ids:
// backup-previous (the old segment, old digest), backup-final (the new
// segment, new digest). The hot zone is bound to both digests.

// segmentJSON returns a copy of the segment object tmpl (a backup segment)
// at data offset off with iv_tweak iv, size (nil: "dynamic") and flags.
func segmentJSON(tmpl json.RawMessage, off, iv uint64, size *uint64, flags []string) (json.RawMessage, error) {
	var o map[string]json.RawMessage
	if err := json.Unmarshal(tmpl, &o); err != nil {
		return nil, err
	}
	set := func(k string, v any) {
		b, _ := json.Marshal(v)
		o[k] = b
	}
	set("offset", strconv.FormatUint(off, 10))
	if _, ok := o["iv_tweak"]; ok {
		set("iv_tweak", strconv.FormatUint(iv, 10))
	}
	if size == nil {
		set("size", "dynamic")
	} else {
		set("size", strconv.FormatUint(*size, 10))
	}
	delete(o, "flags")
	if len(flags) > 0 {
		set("flags", flags)
	}
	return json.Marshal(o)
}

// reencryptLayout is what the segments of every step are made from.
type reencryptLayout struct {
	oldTmpl, newTmpl     json.RawMessage // backup-previous / backup-final, as stored
	oldDigest, newDigest int
	dataOffset           uint64 // bytes; the same before and after (no data shift)
	size                 uint64 // data bytes
}

func (m *metadata) layoutOf(r *Reencryption, size uint64) reencryptLayout {
	return reencryptLayout{oldTmpl: r.Old.Raw, newTmpl: r.New.Raw, oldDigest: r.OldDigest, newDigest: r.NewDigest,
		dataOffset: r.New.Offset, size: size}
}

// withSegments returns a copy of m whose segments describe progress p and,
// when hot > 0, a hot zone [p, p+hot); final drops the backups.
func (m *metadata) withSegments(l reencryptLayout, p, hot uint64, final bool) (*metadata, error) {
	e := m.clone()
	e.segments = map[string]json.RawMessage{}
	bind := map[int][]int{l.oldDigest: nil, l.newDigest: nil}
	next := 0
	add := func(raw json.RawMessage, digests ...int) {
		e.segments[strconv.Itoa(next)] = raw
		for _, d := range digests {
			bind[d] = append(bind[d], next)
		}
		next++
	}
	end := p + hot
	u := func(v uint64) *uint64 { return &v }
	if final {
		raw, err := segmentJSON(l.newTmpl, l.dataOffset, 0, nil, nil)
		if err != nil {
			return nil, err
		}
		add(raw, l.newDigest)
	} else {
		if p > 0 {
			var size *uint64
			if hot > 0 || p < l.size {
				size = u(p)
			}
			raw, err := segmentJSON(l.newTmpl, l.dataOffset, 0, size, nil)
			if err != nil {
				return nil, err
			}
			add(raw, l.newDigest)
		}
		if hot > 0 {
			raw, err := segmentJSON(l.newTmpl, l.dataOffset+p, p/512, u(hot), []string{"in-reencryption"})
			if err != nil {
				return nil, err
			}
			add(raw, l.newDigest, l.oldDigest)
		}
		if end < l.size {
			raw, err := segmentJSON(l.oldTmpl, l.dataOffset+end, end/512, nil, nil)
			if err != nil {
				return nil, err
			}
			add(raw, l.oldDigest)
		}
		add(l.oldTmpl, l.oldDigest)
		add(l.newTmpl, l.newDigest)
	}
	for d, segs := range bind {
		key := strconv.Itoa(d)
		if _, ok := e.digests[key]; !ok {
			continue
		}
		var err error
		if e.digests[key], err = setField(e.digests[key], "segments", idStrings(segs)); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// withState returns a copy of m whose segments are segs, numbered in
// this order, with the segments at the indexes bind bound to digest d and
// every other digest bound to none: a state of an encryption or a
// decryption, which has one key. (withSegments, for two keys, binds the
// old and the new digest and leaves any other alone.)
func (m *metadata) withState(segs []json.RawMessage, d int, bind []int) (*metadata, error) {
	e := m.clone()
	e.segments = map[string]json.RawMessage{}
	for i, s := range segs {
		e.segments[strconv.Itoa(i)] = s
	}
	for id := range m.Digests {
		var b []int
		if id == d {
			b = bind
		}
		key := strconv.Itoa(id)
		var err error
		if e.digests[key], err = setField(e.digests[key], "segments", idStrings(b)); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// setRequirement adds (on) or removes the reencryption requirement,
// keeping any other requirement.
func (e *metadata) setRequirement(on bool) error {
	v := 0
	if on {
		v = 2
	}
	return e.setRequirementVersion(v)
}

// setRequirementVersion sets the reencryption requirement to
// online-reencrypt-vN (cryptsetup 2.6: 2, or 3 for a decryption with a
// data shift), or removes it (0), keeping any other requirement.
func (e *metadata) setRequirementVersion(v int) error {
	reqs := slices.DeleteFunc(slices.Clone(e.Config.Requirements), func(r string) bool { return strings.HasPrefix(r, "online-reencrypt") })
	if v > 0 {
		reqs = append(reqs, fmt.Sprintf("online-reencrypt-v%d", v))
	}
	if len(reqs) == 0 {
		delete(e.config, "requirements")
		return nil
	}
	b, err := json.Marshal(map[string][]string{"mandatory": reqs})
	if err != nil {
		return err
	}
	e.config["requirements"] = b
	return nil
}

// maxGap returns the largest free range of the keyslots area.
func (m *metadata) maxGap(hdrSize uint64) (off, size uint64) {
	used := slices.SortedFunc(maps.Values(m.Keyslots), func(a, b *Keyslot) int { return cmpU64(a.AreaOffset, b.AreaOffset) })
	pos, end := 2*hdrSize, 2*hdrSize+m.Config.KeyslotsSize
	for _, ks := range used {
		if ks.AreaOffset > pos && ks.AreaOffset-pos > size {
			off, size = pos, ks.AreaOffset-pos
		}
		pos = max(pos, ks.AreaOffset+ks.AreaSize)
	}
	if end > pos && end-pos > size {
		off, size = pos, end-pos
	}
	return off, size
}

// freeID returns the lowest unused id of a section.
func freeID(sec map[string]json.RawMessage) (int, error) {
	for i := range maxObjects {
		if _, used := sec[strconv.Itoa(i)]; !used {
			return i, nil
		}
	}
	return -1, fmt.Errorf("%w: all %d ids are in use", ErrNoSpace, maxObjects)
}

// progressOf reads the progress of a clean reencryption from its segments:
// the size of the new part that starts at the data offset (0 if none).
func (m *metadata) progressOf(r *Reencryption, size uint64) uint64 {
	for _, id := range slices.Sorted(maps.Keys(m.Segments)) {
		s := m.Segments[id]
		if isBackupSegment(s) || s.Offset != r.New.Offset {
			continue
		}
		if d := m.segmentDigest(id); d == nil || d.ID != r.NewDigest || r.NewDigest == r.OldDigest {
			continue
		}
		if s.Dynamic {
			return size
		}
		return s.Size
	}
	return 0
}
