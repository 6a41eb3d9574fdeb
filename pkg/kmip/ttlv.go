package kmip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"time"
	"unicode/utf8"
)

// TTLV (Tag, Type, Length, Value) is KMIP's one mandatory wire encoding
// (KMIP 1.2 specification §9.1). Every item is
//
//	offset 0  3 bytes  tag, big-endian (0x42xxxx defined, 0x54xxxx extensions)
//	offset 3  1 byte   item type (Type)
//	offset 4  4 bytes  length of the value in bytes, big-endian, unpadded
//	offset 8  value, then zero bytes up to the next multiple of 8
//
// so every item starts on an 8-byte boundary. A Structure's value is the
// concatenation of its (padded) children and its length is therefore a
// multiple of 8.

// Type is a TTLV item type (KMIP 1.2 §9.1.1.2).
type Type byte

// The item types of KMIP 1.x.
const (
	TypeStructure   Type = 0x01
	TypeInteger     Type = 0x02 // int32, 4 bytes + 4 padding
	TypeLongInteger Type = 0x03 // int64, 8 bytes
	TypeBigInteger  Type = 0x04 // two's complement, big-endian, multiple of 8 bytes
	TypeEnumeration Type = 0x05 // uint32, 4 bytes + 4 padding
	TypeBoolean     Type = 0x06 // 8 bytes, 0 or 1
	TypeTextString  Type = 0x07 // UTF-8, padded
	TypeByteString  Type = 0x08 // padded
	TypeDateTime    Type = 0x09 // int64 POSIX seconds, 8 bytes
	TypeInterval    Type = 0x0A // uint32 seconds, 4 bytes + 4 padding
)

var typeNames = map[Type]string{
	TypeStructure: "Structure", TypeInteger: "Integer", TypeLongInteger: "LongInteger",
	TypeBigInteger: "BigInteger", TypeEnumeration: "Enumeration", TypeBoolean: "Boolean",
	TypeTextString: "TextString", TypeByteString: "ByteString", TypeDateTime: "DateTime",
	TypeInterval: "Interval",
}

func (t Type) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("Type(0x%02x)", byte(t))
}

// Limits a decoder enforces before it allocates. A peer that is not a KMIP
// server (or is hostile) must not be able to make the client allocate
// without bound, recurse without bound or read forever.
const (
	// DefaultMaxMessageSize caps one message, header included. KEK
	// operations exchange a few hundred bytes; 1 MiB leaves room for
	// certificates and large Query answers.
	DefaultMaxMessageSize = 1 << 20
	// MaxDepth caps nesting: an item may sit inside at most MaxDepth-1
	// structures. KMIP 1.4 messages nest at most ~8
	// deep (message, batch item, payload, template, attribute, value, ...).
	MaxDepth = 16
	// headerLen is the size of tag, type and length.
	headerLen = 8
)

// ErrMalformed is wrapped by every decoding error: the bytes are not a
// well-formed TTLV item within the limits.
var ErrMalformed = errors.New("kmip: malformed TTLV")

// ErrTooLarge is wrapped when a message exceeds the size cap.
var ErrTooLarge = errors.New("kmip: message too large")

// Item is one TTLV item. Value holds, by Type:
//
//	Structure    []Item
//	Integer      int32
//	LongInteger  int64
//	BigInteger   *big.Int
//	Enumeration  uint32
//	Boolean      bool
//	TextString   string
//	ByteString   []byte
//	DateTime     time.Time (whole seconds, UTC)
//	Interval     time.Duration (whole seconds, 0 .. 2^32-1 s)
type Item struct {
	Tag   Tag
	Type  Type
	Value any
}

// Struct returns a Structure item holding children.
func Struct(tag Tag, children ...Item) Item {
	return Item{Tag: tag, Type: TypeStructure, Value: children}
}

// Int returns an Integer item.
func Int(tag Tag, v int32) Item { return Item{tag, TypeInteger, v} }

// Long returns a LongInteger item.
func Long(tag Tag, v int64) Item { return Item{tag, TypeLongInteger, v} }

// BigInt returns a BigInteger item.
func BigInt(tag Tag, v *big.Int) Item { return Item{tag, TypeBigInteger, v} }

// Enum returns an Enumeration item.
func Enum(tag Tag, v uint32) Item { return Item{tag, TypeEnumeration, v} }

// Bool returns a Boolean item.
func Bool(tag Tag, v bool) Item { return Item{tag, TypeBoolean, v} }

// Text returns a TextString item.
func Text(tag Tag, v string) Item { return Item{tag, TypeTextString, v} }

// Bytes returns a ByteString item.
func Bytes(tag Tag, v []byte) Item { return Item{tag, TypeByteString, v} }

// DateTime returns a DateTime item (truncated to whole seconds).
func DateTime(tag Tag, v time.Time) Item { return Item{tag, TypeDateTime, v} }

// Interval returns an Interval item (whole seconds).
func Interval(tag Tag, v time.Duration) Item { return Item{tag, TypeInterval, v} }

// pad8 rounds n up to a multiple of 8.
func pad8(n int) int { return (n + 7) &^ 7 }

// Encode returns the TTLV encoding of it. It fails if a Value does not
// match its Type or a value is out of the encodable range.
func Encode(it Item) ([]byte, error) {
	return appendItem(nil, it, 0)
}

func appendHeader(b []byte, tag Tag, t Type, n int) []byte {
	return append(b, byte(tag>>16), byte(tag>>8), byte(tag), byte(t),
		byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

func appendItem(b []byte, it Item, depth int) ([]byte, error) {
	if depth >= MaxDepth {
		return nil, fmt.Errorf("kmip: encode %v: nesting deeper than %d", it.Tag, MaxDepth)
	}
	if it.Tag > 0xFFFFFF {
		return nil, fmt.Errorf("kmip: encode: tag %#x does not fit in 3 bytes", uint32(it.Tag))
	}
	bad := func() ([]byte, error) {
		return nil, fmt.Errorf("kmip: encode %v: %v item holds %T", it.Tag, it.Type, it.Value)
	}
	switch it.Type {
	case TypeStructure:
		children, ok := it.Value.([]Item)
		if !ok && it.Value != nil {
			return bad()
		}
		start := len(b)
		b = appendHeader(b, it.Tag, it.Type, 0)
		for _, c := range children {
			var err error
			if b, err = appendItem(b, c, depth+1); err != nil {
				return nil, err
			}
		}
		n := len(b) - start - headerLen
		if n > math.MaxInt32 {
			return nil, fmt.Errorf("kmip: encode %v: structure too large", it.Tag)
		}
		binary.BigEndian.PutUint32(b[start+4:], uint32(n))
		return b, nil
	case TypeInteger:
		v, ok := it.Value.(int32)
		if !ok {
			return bad()
		}
		b = appendHeader(b, it.Tag, it.Type, 4)
		return binary.BigEndian.AppendUint64(b, uint64(uint32(v))<<32), nil
	case TypeEnumeration:
		v, ok := it.Value.(uint32)
		if !ok {
			return bad()
		}
		b = appendHeader(b, it.Tag, it.Type, 4)
		return binary.BigEndian.AppendUint64(b, uint64(v)<<32), nil
	case TypeInterval:
		v, ok := it.Value.(time.Duration)
		if !ok {
			return bad()
		}
		if v < 0 || v%time.Second != 0 || v/time.Second > math.MaxUint32 {
			return nil, fmt.Errorf("kmip: encode %v: interval %v is not 0..2^32-1 whole seconds", it.Tag, v)
		}
		b = appendHeader(b, it.Tag, it.Type, 4)
		return binary.BigEndian.AppendUint64(b, uint64(v/time.Second)<<32), nil
	case TypeLongInteger:
		v, ok := it.Value.(int64)
		if !ok {
			return bad()
		}
		b = appendHeader(b, it.Tag, it.Type, 8)
		return binary.BigEndian.AppendUint64(b, uint64(v)), nil
	case TypeDateTime:
		v, ok := it.Value.(time.Time)
		if !ok {
			return bad()
		}
		b = appendHeader(b, it.Tag, it.Type, 8)
		return binary.BigEndian.AppendUint64(b, uint64(v.Unix())), nil
	case TypeBoolean:
		v, ok := it.Value.(bool)
		if !ok {
			return bad()
		}
		var u uint64
		if v {
			u = 1
		}
		b = appendHeader(b, it.Tag, it.Type, 8)
		return binary.BigEndian.AppendUint64(b, u), nil
	case TypeBigInteger:
		v, ok := it.Value.(*big.Int)
		if !ok || v == nil {
			return bad()
		}
		raw := bigToTwos(v)
		b = appendHeader(b, it.Tag, it.Type, len(raw))
		return append(b, raw...), nil
	case TypeTextString, TypeByteString:
		var raw []byte
		switch v := it.Value.(type) {
		case string:
			if it.Type != TypeTextString {
				return bad()
			}
			if !utf8.ValidString(v) {
				return nil, fmt.Errorf("kmip: encode %v: text is not valid UTF-8", it.Tag)
			}
			raw = []byte(v)
		case []byte:
			if it.Type != TypeByteString {
				return bad()
			}
			raw = v
		default:
			return bad()
		}
		if len(raw) > math.MaxInt32-8 {
			return nil, fmt.Errorf("kmip: encode %v: value too large", it.Tag)
		}
		b = appendHeader(b, it.Tag, it.Type, len(raw))
		b = append(b, raw...)
		return append(b, make([]byte, pad8(len(raw))-len(raw))...), nil
	default:
		return nil, fmt.Errorf("kmip: encode %v: unknown item type %v", it.Tag, it.Type)
	}
}

// bigToTwos returns v in big-endian two's complement, sign-extended to a
// multiple of 8 bytes (at least 8), as §9.1.1.4 requires.
func bigToTwos(v *big.Int) []byte {
	n := pad8(v.BitLen()/8 + 1) // +1 byte leaves room for the sign bit
	if n == 0 {
		n = 8
	}
	out := make([]byte, n)
	if v.Sign() >= 0 {
		v.FillBytes(out)
		return out
	}
	// Two's complement of a negative v: 2^(8n) + v.
	m := new(big.Int).Lsh(big.NewInt(1), uint(8*n))
	m.Add(m, v)
	m.FillBytes(out)
	return out
}

func twosToBig(raw []byte) *big.Int {
	v := new(big.Int).SetBytes(raw)
	if len(raw) > 0 && raw[0]&0x80 != 0 {
		v.Sub(v, new(big.Int).Lsh(big.NewInt(1), uint(8*len(raw))))
	}
	return v
}

// Decode parses exactly one TTLV item occupying all of b. The size of a
// message is capped where it is read (ReadMessage); Decode caps nesting and
// allocates at most one child per 8 input bytes.
func Decode(b []byte) (Item, error) {
	it, n, err := decodeItem(b, 0)
	if err != nil {
		return Item{}, err
	}
	if n != len(b) {
		return Item{}, fmt.Errorf("%w: %d trailing bytes after the item", ErrMalformed, len(b)-n)
	}
	return it, nil
}

func malformed(tag Tag, format string, args ...any) error {
	return fmt.Errorf("%w: %v: %s", ErrMalformed, tag, fmt.Sprintf(format, args...))
}

// decodeItem parses the item at the start of b and returns it with the
// number of bytes it occupies, padding included.
func decodeItem(b []byte, depth int) (Item, int, error) {
	if len(b) < headerLen {
		return Item{}, 0, fmt.Errorf("%w: truncated item header (%d bytes)", ErrMalformed, len(b))
	}
	tag := Tag(uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]))
	if depth >= MaxDepth {
		return Item{}, 0, malformed(tag, "items nested deeper than %d levels", MaxDepth)
	}
	if b[0] != 0x42 && b[0] != 0x54 {
		return Item{}, 0, malformed(tag, "tag outside the KMIP (0x42xxxx) and extension (0x54xxxx) ranges")
	}
	typ := Type(b[3])
	n := binary.BigEndian.Uint32(b[4:8])
	if uint64(n) > uint64(len(b)-headerLen) {
		return Item{}, 0, malformed(tag, "length %d exceeds the %d bytes left", n, len(b)-headerLen)
	}
	total := headerLen + pad8(int(n))
	if total > len(b) {
		return Item{}, 0, malformed(tag, "padding of a %d-byte value is truncated", n)
	}
	val, pad := b[headerLen:headerLen+int(n)], b[headerLen+int(n):total]
	for _, p := range pad {
		if p != 0 {
			return Item{}, 0, malformed(tag, "non-zero padding")
		}
	}
	fixed := func(want uint32) error {
		if n != want {
			return malformed(tag, "%v length %d, want %d", typ, n, want)
		}
		return nil
	}
	it := Item{Tag: tag, Type: typ}
	switch typ {
	case TypeStructure:
		children := []Item{}
		for off := 0; off < len(val); {
			c, cn, err := decodeItem(val[off:], depth+1)
			if err != nil {
				return Item{}, 0, err
			}
			children = append(children, c)
			off += cn
		}
		it.Value = children
	case TypeInteger:
		if err := fixed(4); err != nil {
			return Item{}, 0, err
		}
		it.Value = int32(binary.BigEndian.Uint32(val))
	case TypeEnumeration:
		if err := fixed(4); err != nil {
			return Item{}, 0, err
		}
		it.Value = binary.BigEndian.Uint32(val)
	case TypeInterval:
		if err := fixed(4); err != nil {
			return Item{}, 0, err
		}
		it.Value = time.Duration(binary.BigEndian.Uint32(val)) * time.Second
	case TypeLongInteger:
		if err := fixed(8); err != nil {
			return Item{}, 0, err
		}
		it.Value = int64(binary.BigEndian.Uint64(val))
	case TypeDateTime:
		if err := fixed(8); err != nil {
			return Item{}, 0, err
		}
		it.Value = time.Unix(int64(binary.BigEndian.Uint64(val)), 0).UTC()
	case TypeBoolean:
		if err := fixed(8); err != nil {
			return Item{}, 0, err
		}
		switch binary.BigEndian.Uint64(val) {
		case 0:
			it.Value = false
		case 1:
			it.Value = true
		default:
			return Item{}, 0, malformed(tag, "Boolean value is neither 0 nor 1")
		}
	case TypeBigInteger:
		if n == 0 || n%8 != 0 {
			return Item{}, 0, malformed(tag, "BigInteger length %d is not a positive multiple of 8", n)
		}
		it.Value = twosToBig(val)
	case TypeTextString:
		if !utf8.Valid(val) {
			return Item{}, 0, malformed(tag, "TextString is not valid UTF-8")
		}
		it.Value = string(val)
	case TypeByteString:
		it.Value = append([]byte{}, val...)
	default:
		return Item{}, 0, malformed(tag, "unknown item type 0x%02x", byte(typ))
	}
	return it, total, nil
}

// ReadMessage reads one TTLV message from r: the 8-byte header, then the
// value it announces, refusing anything larger than maxSize bytes in all
// before reading it. The message is not decoded.
func ReadMessage(r io.Reader, maxSize int) ([]byte, error) {
	var hdr [headerLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("kmip: reading message header: %w", err)
	}
	if hdr[3] != byte(TypeStructure) {
		return nil, fmt.Errorf("%w: message is a %v, not a Structure", ErrMalformed, Type(hdr[3]))
	}
	n := binary.BigEndian.Uint32(hdr[4:])
	if n%8 != 0 {
		return nil, fmt.Errorf("%w: message length %d is not a multiple of 8", ErrMalformed, n)
	}
	if uint64(n)+headerLen > uint64(maxSize) {
		return nil, fmt.Errorf("%w: %d bytes announced, limit %d", ErrTooLarge, uint64(n)+headerLen, maxSize)
	}
	msg := make([]byte, headerLen+int(n))
	copy(msg, hdr[:])
	if _, err := io.ReadFull(r, msg[headerLen:]); err != nil {
		return nil, fmt.Errorf("kmip: reading %d-byte message body: %w", n, err)
	}
	return msg, nil
}
