package keyring

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
)

// The LUKS2 JSON metadata has five sections, each an object keyed by a
// decimal id ("0" … "31"), except config:
//
//	{"keyslots":{…}, "tokens":{…}, "segments":{…}, "digests":{…}, "config":{…}}
//
// 64-bit quantities (offsets, sizes, iv_tweak, json_size, keyslots_size)
// are JSON strings of decimal digits; small integers are JSON numbers.
//
// metadata keeps every object as raw JSON, so fields and objects encblk does
// not know (tokens of other tools, future fields) survive a rewrite, and
// keeps validated typed views beside them. A change edits the raw objects
// and re-parses the result, so the typed views always describe exactly
// what will be written.
type metadata struct {
	top      map[string]json.RawMessage
	keyslots map[string]json.RawMessage
	tokens   map[string]json.RawMessage
	segments map[string]json.RawMessage
	digests  map[string]json.RawMessage
	config   map[string]json.RawMessage

	Keyslots map[int]*Keyslot
	Tokens   map[int]*Token
	Segments map[int]*Segment
	Digests  map[int]*digest
	Config   Config
}

// maxObjects is the number of keyslots, tokens, segments and digests LUKS2
// allows (ids 0 … 31).
const maxObjects = 32

// Keyslot describes one keyslot: a copy of the DEK wrapped by one KEK.
type Keyslot struct {
	ID       int
	Type     string // "luks2" ("luks1" for a LUKS1 volume's slots); others (e.g. "reencrypt") are kept but not opened
	KeySize  int    // bytes of the volume key it wraps
	Priority int    // 0 ignored, 1 normal, 2 preferred

	KDF KDF

	AFType    string // "luks1"
	AFStripes int
	AFHash    string

	AreaType       string // "raw"
	AreaOffset     uint64 // bytes from the start of the header device
	AreaSize       uint64
	AreaEncryption string // e.g. "aes-xts-plain64"
	AreaKeySize    int    // bytes of the key the KDF derives

	// Tokens are the tokens bound to this keyslot, in id order: what an
	// external KEK (KMIP, TPM) needs to produce the keyslot's secret.
	Tokens []Token
}

// KDF is a keyslot's key-derivation function and its parameters.
type KDF struct {
	Type       string // "pbkdf2", "argon2i" or "argon2id"
	Hash       string // pbkdf2 only: "sha256", "sha512", …
	Iterations int    // pbkdf2 iterations, or argon2 time cost
	MemoryKiB  int    // argon2 only
	Parallel   int    // argon2 only: lanes/threads
	Salt       []byte
}

// Segment describes one data segment.
type Segment struct {
	ID         int
	Type       string // "crypt", "hw-opal", "hw-opal-crypt", "linear", …
	Offset     uint64 // bytes from the start of the data device
	Size       uint64 // bytes; 0 when Dynamic
	Dynamic    bool   // size "dynamic": up to the end of the device
	IVTweak    uint64 // first sector's tweak, in 512-byte units
	Encryption string // e.g. "aes-xts-plain64"; empty for hw-opal
	SectorSize int
	Integrity  bool // dm-integrity (authenticated) segment
	// IntegrityType is the integrity object's type ("hmac(sha256)",
	// "aead", …), as luksDump prints it; "" when it has none.
	IntegrityType string
	Flags         []string

	// OPAL fields ("hw-opal", "hw-opal-crypt").
	OpalSegmentNumber int
	OpalKeySize       int
	OpalSegmentSize   uint64

	// Raw is the segment object as stored.
	Raw json.RawMessage
}

// Token is a LUKS2 token: metadata of an external unlock method (a KMIP
// key id, a TPM policy, …) bound to keyslots. encblk's tokens have a type
// starting with "encblk-"; others are kept as they are.
type Token struct {
	ID       int
	Type     string
	Keyslots []int
	// Raw is the whole token object as stored.
	Raw json.RawMessage
}

// digest is a volume-key digest: it says which keyslots open which
// segments and lets an unwrapped key be checked.
type digest struct {
	ID         int
	Type       string
	Keyslots   []int
	Segments   []int
	Hash       string
	Iterations int
	Salt       []byte
	Digest     []byte
}

// Config is the config section.
type Config struct {
	JSONSize     uint64
	KeyslotsSize uint64
	// Flags are persistent activation flags such as "allow-discards".
	Flags []string
	// Requirements are config.requirements.mandatory: features a tool
	// must understand before it may open or change the volume.
	Requirements []string
}

// u64 is a 64-bit integer stored as a JSON string of decimal digits.
type u64 uint64

func (v *u64) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a decimal string, got %s", clip(b))
	}
	n, err := parseDecimal(s)
	if err != nil {
		return err
	}
	*v = u64(n)
	return nil
}

func parseDecimal(s string) (uint64, error) {
	if s == "" || len(s) > 20 {
		return 0, fmt.Errorf("bad number %q", clip([]byte(s)))
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("bad number %q", clip([]byte(s)))
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad number %q", clip([]byte(s)))
	}
	return n, nil
}

// clip shortens b for error messages.
func clip(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "…"
	}
	return string(b)
}

// ids is a JSON array of decimal id strings.
type ids []int

func (v *ids) UnmarshalJSON(b []byte) error {
	var ss []string
	if err := json.Unmarshal(b, &ss); err != nil {
		return fmt.Errorf("want an array of id strings, got %s", clip(b))
	}
	out := make([]int, 0, len(ss))
	for _, s := range ss {
		id, err := parseID(s)
		if err != nil {
			return err
		}
		out = append(out, id)
	}
	*v = out
	return nil
}

func parseID(s string) (int, error) {
	n, err := parseDecimal(s)
	if err != nil || n >= maxObjects || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("bad id %q (want 0 … %d)", clip([]byte(s)), maxObjects-1)
	}
	return int(n), nil
}

func idStrings(v []int) []string {
	out := make([]string, len(v))
	for i, id := range v {
		out[i] = strconv.Itoa(id)
	}
	return out
}

type jsonKDF struct {
	Type       string `json:"type"`
	Hash       string `json:"hash"`
	Iterations int    `json:"iterations"`
	Time       int    `json:"time"`
	Memory     int    `json:"memory"`
	CPUs       int    `json:"cpus"`
	Salt       []byte `json:"salt"`
}

type jsonKeyslot struct {
	Type     string `json:"type"`
	KeySize  *int   `json:"key_size"`
	Priority *int   `json:"priority"`
	AF       *struct {
		Type    string `json:"type"`
		Stripes int    `json:"stripes"`
		Hash    string `json:"hash"`
	} `json:"af"`
	Area *struct {
		Type       string `json:"type"`
		Offset     *u64   `json:"offset"`
		Size       *u64   `json:"size"`
		Encryption string `json:"encryption"`
		KeySize    int    `json:"key_size"`
	} `json:"area"`
	KDF *jsonKDF `json:"kdf"`
}

type jsonSegment struct {
	Type              string          `json:"type"`
	Offset            *u64            `json:"offset"`
	Size              *string         `json:"size"`
	IVTweak           *u64            `json:"iv_tweak"`
	Encryption        *string         `json:"encryption"`
	SectorSize        *int            `json:"sector_size"`
	Integrity         json.RawMessage `json:"integrity"`
	Flags             []string        `json:"flags"`
	OpalSegmentNumber *int            `json:"opal_segment_number"`
	OpalKeySize       *int            `json:"opal_key_size"`
	OpalSegmentSize   *u64            `json:"opal_segment_size"`
}

type jsonDigest struct {
	Type       string `json:"type"`
	Keyslots   *ids   `json:"keyslots"`
	Segments   *ids   `json:"segments"`
	Hash       string `json:"hash"`
	Iterations int    `json:"iterations"`
	Salt       []byte `json:"salt"`
	Digest     []byte `json:"digest"`
}

type jsonToken struct {
	Type     *string `json:"type"`
	Keyslots *ids    `json:"keyslots"`
}

type jsonConfig struct {
	JSONSize     *u64     `json:"json_size"`
	KeyslotsSize *u64     `json:"keyslots_size"`
	Flags        []string `json:"flags"`
	Requirements *struct {
		Mandatory []string `json:"mandatory"`
	} `json:"requirements"`
}

// extractJSON returns the JSON text of a JSON area: it must start with '{'
// and everything after the text must be NUL bytes.
func extractJSON(area []byte) ([]byte, error) {
	if len(area) == 0 || area[0] != '{' {
		return nil, fmt.Errorf("%w: JSON area does not start with '{'", ErrCorrupt)
	}
	end := bytes.IndexByte(area, 0)
	if end < 0 {
		return nil, fmt.Errorf("%w: JSON area has no terminating NUL byte", ErrCorrupt)
	}
	for _, c := range area[end:] {
		if c != 0 {
			return nil, fmt.Errorf("%w: bytes other than NUL after the JSON text", ErrCorrupt)
		}
	}
	return area[:end], nil
}

// parseMetadata decodes and validates the JSON text of a header whose
// hdr_size is hdrSize.
func parseMetadata(text []byte, hdrSize uint64) (*metadata, error) {
	m, err := decodeMetadata(text, hdrSize)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return m, nil
}

func decodeMetadata(text []byte, hdrSize uint64) (*metadata, error) {
	if uint64(len(text)) > maxHdrSize {
		return nil, fmt.Errorf("JSON metadata is too large (%d bytes)", len(text))
	}
	m := &metadata{}
	if err := json.Unmarshal(text, &m.top); err != nil || m.top == nil {
		return nil, fmt.Errorf("JSON metadata is not a JSON object: %v", jsonErr(err))
	}
	sections := []struct {
		name string
		dst  *map[string]json.RawMessage
	}{
		{"keyslots", &m.keyslots}, {"tokens", &m.tokens}, {"segments", &m.segments},
		{"digests", &m.digests}, {"config", &m.config},
	}
	for _, s := range sections {
		raw, ok := m.top[s.name]
		if !ok {
			return nil, fmt.Errorf("missing %q section", s.name)
		}
		if err := json.Unmarshal(raw, s.dst); err != nil || *s.dst == nil {
			return nil, fmt.Errorf("%q section is not a JSON object", s.name)
		}
		if s.name != "config" && len(*s.dst) > maxObjects {
			return nil, fmt.Errorf("%q section has %d entries (at most %d)", s.name, len(*s.dst), maxObjects)
		}
	}
	if err := m.parseConfig(hdrSize); err != nil {
		return nil, err
	}
	if err := m.parseKeyslots(hdrSize); err != nil {
		return nil, err
	}
	if err := m.parseSegments(); err != nil {
		return nil, err
	}
	if err := m.parseDigests(); err != nil {
		return nil, err
	}
	if err := m.parseTokens(); err != nil {
		return nil, err
	}
	if err := m.parseReencrypt(); err != nil {
		return nil, err
	}
	return m, nil
}

func jsonErr(err error) string {
	if err == nil {
		return "null"
	}
	return err.Error()
}

func (m *metadata) parseConfig(hdrSize uint64) error {
	var c jsonConfig
	if err := json.Unmarshal(m.top["config"], &c); err != nil {
		return fmt.Errorf("config: %v", err)
	}
	if c.JSONSize == nil || c.KeyslotsSize == nil {
		return fmt.Errorf("config: json_size and keyslots_size are required")
	}
	if uint64(*c.JSONSize) != hdrSize-binHeaderSize {
		return fmt.Errorf("config: json_size %d does not match header size %d", *c.JSONSize, hdrSize)
	}
	if *c.KeyslotsSize%4096 != 0 || *c.KeyslotsSize > maxKeyslotsSize {
		return fmt.Errorf("config: keyslots_size %d is not a multiple of 4096 up to 128 MiB", *c.KeyslotsSize)
	}
	m.Config = Config{JSONSize: uint64(*c.JSONSize), KeyslotsSize: uint64(*c.KeyslotsSize), Flags: c.Flags}
	if c.Requirements != nil {
		m.Config.Requirements = c.Requirements.Mandatory
	}
	return nil
}

// maxKeyslotsSize is the largest keyslots area LUKS2 allows.
const maxKeyslotsSize = 128 << 20

func (m *metadata) parseKeyslots(hdrSize uint64) error {
	m.Keyslots = make(map[int]*Keyslot, len(m.keyslots))
	areaStart, areaEnd := 2*hdrSize, 2*hdrSize+m.Config.KeyslotsSize
	for key, raw := range m.keyslots {
		id, err := parseID(key)
		if err != nil {
			return fmt.Errorf("keyslots: %v", err)
		}
		var j jsonKeyslot
		if err := json.Unmarshal(raw, &j); err != nil {
			return fmt.Errorf("keyslot %d: %v", id, err)
		}
		if j.Type == "" || j.KeySize == nil || j.Area == nil || j.Area.Offset == nil || j.Area.Size == nil {
			return fmt.Errorf("keyslot %d: type, key_size and area offset/size are required", id)
		}
		ks := &Keyslot{ID: id, Type: j.Type, KeySize: *j.KeySize, Priority: 1,
			AreaType: j.Area.Type, AreaOffset: uint64(*j.Area.Offset), AreaSize: uint64(*j.Area.Size),
			AreaEncryption: j.Area.Encryption, AreaKeySize: j.Area.KeySize}
		if j.Priority != nil {
			if *j.Priority < 0 || *j.Priority > 2 {
				return fmt.Errorf("keyslot %d: priority %d (want 0, 1 or 2)", id, *j.Priority)
			}
			ks.Priority = *j.Priority
		}
		if ks.KeySize < 0 || ks.KeySize > maxKeySize {
			return fmt.Errorf("keyslot %d: key_size %d out of range", id, ks.KeySize)
		}
		if ks.AreaOffset%4096 != 0 || ks.AreaSize%4096 != 0 || ks.AreaOffset < areaStart ||
			ks.AreaSize > areaEnd || ks.AreaOffset > areaEnd-ks.AreaSize {
			return fmt.Errorf("keyslot %d: area [%d, +%d) is outside the keyslots area [%d, %d)", id, ks.AreaOffset, ks.AreaSize, areaStart, areaEnd)
		}
		if j.Type == "luks2" {
			if j.AF == nil || j.KDF == nil {
				return fmt.Errorf("keyslot %d: af and kdf are required", id)
			}
			ks.AFType, ks.AFStripes, ks.AFHash = j.AF.Type, j.AF.Stripes, j.AF.Hash
			if ks.AFStripes < 1 || ks.AFStripes > afStripes {
				return fmt.Errorf("keyslot %d: %d AF stripes (want 1 … %d)", id, ks.AFStripes, afStripes)
			}
			if ks.KeySize == 0 || afSectors(ks.KeySize, ks.AFStripes)*sectorSize512 > ks.AreaSize {
				return fmt.Errorf("keyslot %d: area of %d bytes cannot hold a %d-byte key in %d stripes", id, ks.AreaSize, ks.KeySize, ks.AFStripes)
			}
			if ks.AreaKeySize <= 0 || ks.AreaKeySize > maxKeySize {
				return fmt.Errorf("keyslot %d: area key_size %d out of range", id, ks.AreaKeySize)
			}
			ks.KDF = KDF{Type: j.KDF.Type, Hash: j.KDF.Hash, Salt: j.KDF.Salt}
			switch j.KDF.Type {
			case "pbkdf2":
				ks.KDF.Iterations = j.KDF.Iterations
			case "argon2i", "argon2id":
				ks.KDF.Iterations, ks.KDF.MemoryKiB, ks.KDF.Parallel = j.KDF.Time, j.KDF.Memory, j.KDF.CPUs
			}
		}
		m.Keyslots[id] = ks
	}
	// Keyslot areas must not overlap.
	list := slices.SortedFunc(maps.Values(m.Keyslots), func(a, b *Keyslot) int { return cmpU64(a.AreaOffset, b.AreaOffset) })
	for i := 1; i < len(list); i++ {
		if list[i-1].AreaOffset+list[i-1].AreaSize > list[i].AreaOffset {
			return fmt.Errorf("keyslots %d and %d have overlapping areas", list[i-1].ID, list[i].ID)
		}
	}
	return nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// maxKeySize bounds key sizes in the metadata (cryptsetup's volume keys are
// at most 512 bytes).
const maxKeySize = 512

func (m *metadata) parseSegments() error {
	m.Segments = make(map[int]*Segment, len(m.segments))
	for key, raw := range m.segments {
		id, err := parseID(key)
		if err != nil {
			return fmt.Errorf("segments: %v", err)
		}
		var j jsonSegment
		if err := json.Unmarshal(raw, &j); err != nil {
			return fmt.Errorf("segment %d: %v", id, err)
		}
		if j.Type == "" || j.Offset == nil || j.Size == nil {
			return fmt.Errorf("segment %d: type, offset and size are required", id)
		}
		s := &Segment{ID: id, Type: j.Type, Offset: uint64(*j.Offset), Flags: j.Flags, Raw: raw,
			Integrity: len(j.Integrity) > 0 && string(j.Integrity) != "null"}
		if s.Integrity {
			var integrity struct {
				Type string `json:"type"`
			}
			// Shown, never used: a segment with integrity is not served.
			_ = json.Unmarshal(j.Integrity, &integrity)
			s.IntegrityType = integrity.Type
		}
		if *j.Size == "dynamic" {
			s.Dynamic = true
		} else if s.Size, err = parseDecimal(*j.Size); err != nil {
			return fmt.Errorf("segment %d: size: %v", id, err)
		}
		if j.Type == "crypt" || j.Type == "hw-opal-crypt" {
			if j.IVTweak == nil || j.Encryption == nil || j.SectorSize == nil {
				return fmt.Errorf("segment %d: iv_tweak, encryption and sector_size are required", id)
			}
			s.IVTweak, s.Encryption, s.SectorSize = uint64(*j.IVTweak), *j.Encryption, *j.SectorSize
			switch s.SectorSize {
			case 512, 1024, 2048, 4096:
			default:
				return fmt.Errorf("segment %d: sector_size %d (want 512, 1024, 2048 or 4096)", id, s.SectorSize)
			}
			if s.Offset%uint64(s.SectorSize) != 0 {
				return fmt.Errorf("segment %d: offset %d is not a multiple of the sector size", id, s.Offset)
			}
		}
		if j.Type == "hw-opal" || j.Type == "hw-opal-crypt" {
			if j.OpalSegmentNumber == nil || j.OpalKeySize == nil || j.OpalSegmentSize == nil {
				return fmt.Errorf("segment %d: opal_segment_number, opal_key_size and opal_segment_size are required", id)
			}
			s.OpalSegmentNumber, s.OpalKeySize, s.OpalSegmentSize = *j.OpalSegmentNumber, *j.OpalKeySize, uint64(*j.OpalSegmentSize)
		}
		m.Segments[id] = s
	}
	return nil
}

func (m *metadata) parseDigests() error {
	m.Digests = make(map[int]*digest, len(m.digests))
	for key, raw := range m.digests {
		id, err := parseID(key)
		if err != nil {
			return fmt.Errorf("digests: %v", err)
		}
		var j jsonDigest
		if err := json.Unmarshal(raw, &j); err != nil {
			return fmt.Errorf("digest %d: %v", id, err)
		}
		if j.Type == "" || j.Keyslots == nil || j.Segments == nil {
			return fmt.Errorf("digest %d: type, keyslots and segments are required", id)
		}
		d := &digest{ID: id, Type: j.Type, Keyslots: *j.Keyslots, Segments: *j.Segments,
			Hash: j.Hash, Iterations: j.Iterations, Salt: j.Salt, Digest: j.Digest}
		for _, k := range d.Keyslots {
			if m.Keyslots[k] == nil {
				return fmt.Errorf("digest %d: names keyslot %d, which does not exist", id, k)
			}
		}
		for _, s := range d.Segments {
			if m.Segments[s] == nil {
				return fmt.Errorf("digest %d: names segment %d, which does not exist", id, s)
			}
		}
		if d.Type == "pbkdf2" && (d.Iterations < 1 || len(d.Salt) != digestSaltLen || len(d.Digest) < 20 || len(d.Digest) > 64) {
			return fmt.Errorf("digest %d: bad pbkdf2 parameters", id)
		}
		m.Digests[id] = d
	}
	return nil
}

func (m *metadata) parseTokens() error {
	m.Tokens = make(map[int]*Token, len(m.tokens))
	for key, raw := range m.tokens {
		id, err := parseID(key)
		if err != nil {
			return fmt.Errorf("tokens: %v", err)
		}
		var j jsonToken
		if err := json.Unmarshal(raw, &j); err != nil {
			return fmt.Errorf("token %d: %v", id, err)
		}
		if j.Type == nil || j.Keyslots == nil {
			return fmt.Errorf("token %d: type and keyslots are required", id)
		}
		t := &Token{ID: id, Type: *j.Type, Keyslots: *j.Keyslots, Raw: raw}
		for _, k := range t.Keyslots {
			ks := m.Keyslots[k]
			if ks == nil {
				return fmt.Errorf("token %d: names keyslot %d, which does not exist", id, k)
			}
			ks.Tokens = append(ks.Tokens, *t)
		}
		m.Tokens[id] = t
	}
	for _, ks := range m.Keyslots {
		slices.SortFunc(ks.Tokens, func(a, b Token) int { return a.ID - b.ID })
	}
	return nil
}

// marshal encodes the metadata as compact JSON.
func (m *metadata) marshal() ([]byte, error) {
	top := maps.Clone(m.top)
	for name, sec := range map[string]map[string]json.RawMessage{
		"keyslots": m.keyslots, "tokens": m.tokens, "segments": m.segments,
		"digests": m.digests, "config": m.config,
	} {
		b, err := json.Marshal(sec)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", name, err)
		}
		top[name] = b
	}
	return json.Marshal(top)
}

// clone returns a deep copy that can be edited without touching m.
func (m *metadata) clone() *metadata {
	return &metadata{
		top: maps.Clone(m.top), keyslots: maps.Clone(m.keyslots), tokens: maps.Clone(m.tokens),
		segments: maps.Clone(m.segments), digests: maps.Clone(m.digests), config: maps.Clone(m.config),
	}
}

// setField sets one field of a raw JSON object.
func setField(obj json.RawMessage, field string, value any) (json.RawMessage, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(obj, &fields); err != nil {
		return nil, err
	}
	v, err := json.Marshal(value)
	if err != nil {
		return nil, err
	}
	fields[field] = v
	return json.Marshal(fields)
}

// reparse validates an edited copy and fills its typed views.
func (m *metadata) reparse(hdrSize uint64) (*metadata, error) {
	text, err := m.marshal()
	if err != nil {
		return nil, err
	}
	n, err := parseMetadata(text, hdrSize)
	if err != nil {
		return nil, fmt.Errorf("internal error: edited metadata does not validate: %w", err)
	}
	return n, nil
}

// segmentDigest returns the digest assigned to segment seg.
func (m *metadata) segmentDigest(seg int) *digest {
	for _, id := range slices.Sorted(maps.Keys(m.Digests)) {
		if slices.Contains(m.Digests[id].Segments, seg) {
			return m.Digests[id]
		}
	}
	return nil
}

// keyslotDigest returns the digest that checks keys from keyslot ks.
func (m *metadata) keyslotDigest(ks int) *digest {
	for _, id := range slices.Sorted(maps.Keys(m.Digests)) {
		if slices.Contains(m.Digests[id].Keyslots, ks) {
			return m.Digests[id]
		}
	}
	return nil
}

func (t Token) clone() Token {
	t.Keyslots = slices.Clone(t.Keyslots)
	t.Raw = slices.Clone(t.Raw)
	return t
}
