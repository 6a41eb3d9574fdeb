package sed

import (
	"errors"
	"fmt"
)

// ErrMalformed is wrapped by every error about a token stream, packet or
// discovery response that does not follow the specification.
var ErrMalformed = errors.New("sed: malformed data from device")

// DecodeLimits bound the work and memory a token stream may cost. Devices
// are not trusted: a hostile or broken one must not make the host allocate
// without limit or recurse without end.
type DecodeLimits struct {
	MaxDepth  int // nesting of lists and names
	MaxItems  int // values and tokens in the whole stream
	MaxAtom   int // bytes in one atom
	MaxStream int // bytes in the whole stream
}

// DefaultDecodeLimits are generous for Opal (whose responses are a few
// kilobytes) and small enough to be harmless.
var DefaultDecodeLimits = DecodeLimits{
	MaxDepth:  16,
	MaxItems:  16384,
	MaxAtom:   1 << 20,
	MaxStream: 1 << 22,
}

// Decode parses a token stream into its top-level values. Lists and names
// come back nested; control tokens (Call, EndOfData, EndOfSession,
// StartTransaction, EndTransaction) appear as Token values at the top level
// only. Empty tokens are dropped, as the Core Specification requires of a
// receiver. Integers wider than 64 bits, continued atoms and reserved token
// values are rejected.
func Decode(b []byte) ([]Value, error) {
	return DecodeWithLimits(b, DefaultDecodeLimits)
}

// DecodeWithLimits is Decode with explicit limits.
func DecodeWithLimits(b []byte, lim DecodeLimits) ([]Value, error) {
	if len(b) > lim.MaxStream {
		return nil, fmt.Errorf("%w: token stream of %d bytes exceeds %d", ErrMalformed, len(b), lim.MaxStream)
	}
	d := &decoder{b: b, lim: lim}
	var out []Value
	for {
		d.skipEmpty()
		if d.pos >= len(d.b) {
			return out, nil
		}
		c := d.b[d.pos]
		if c >= byte(TokenCall) && c <= byte(TokenEndTransaction) {
			d.pos++
			if err := d.count(); err != nil {
				return nil, err
			}
			out = append(out, Token(c))
			continue
		}
		v, err := d.value(0)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
}

type decoder struct {
	b     []byte
	pos   int
	items int
	lim   DecodeLimits
}

func (d *decoder) errf(format string, args ...any) error {
	return fmt.Errorf("%w: token stream offset %d: %s", ErrMalformed, d.pos, fmt.Sprintf(format, args...))
}

func (d *decoder) count() error {
	d.items++
	if d.items > d.lim.MaxItems {
		return d.errf("more than %d tokens", d.lim.MaxItems)
	}
	return nil
}

func (d *decoder) skipEmpty() {
	for d.pos < len(d.b) && d.b[d.pos] == byte(TokenEmpty) {
		d.pos++
	}
}

// value parses one value (atom, list or name) at depth.
func (d *decoder) value(depth int) (Value, error) {
	d.skipEmpty()
	if d.pos >= len(d.b) {
		return nil, d.errf("stream ends where a value was expected")
	}
	if err := d.count(); err != nil {
		return nil, err
	}
	c := d.b[d.pos]
	switch {
	case c <= longAtomMax:
		return d.atom()
	case c == byte(TokenStartList):
		if depth >= d.lim.MaxDepth {
			return d.tooDeep()
		}
		d.pos++
		l := List{}
		for {
			d.skipEmpty()
			if d.pos >= len(d.b) {
				return nil, d.errf("list not closed")
			}
			if d.b[d.pos] == byte(TokenEndList) {
				d.pos++
				return l, nil
			}
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
	case c == byte(TokenStartName):
		if depth >= d.lim.MaxDepth {
			return d.tooDeep()
		}
		d.pos++
		d.skipEmpty()
		if d.pos >= len(d.b) || d.b[d.pos] > longAtomMax {
			return nil, d.errf("a name must start with an atom")
		}
		if err := d.count(); err != nil {
			return nil, err
		}
		name, err := d.atom()
		if err != nil {
			return nil, err
		}
		val, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		d.skipEmpty()
		if d.pos >= len(d.b) || d.b[d.pos] != byte(TokenEndName) {
			return nil, d.errf("name %v: expected EndName after one value", name)
		}
		d.pos++
		return Name{Name: name, Value: val}, nil
	}
	return nil, d.errf("unexpected token 0x%02x", c)
}

func (d *decoder) tooDeep() (Value, error) {
	return nil, d.errf("nesting deeper than %d", d.lim.MaxDepth)
}

// atom parses the atom at d.pos.
func (d *decoder) atom() (Value, error) {
	c := d.b[d.pos]
	var hdr, n int
	var isBytes, signed bool
	switch {
	case c <= tinyAtomMax:
		d.pos++
		if c&0x40 != 0 {
			return Int(int64(c&0x3F) - int64(c&0x20)<<1), nil
		}
		return Uint(c & 0x3F), nil
	case c <= shortAtomMax:
		hdr, n = 1, int(c&0x0F)
		isBytes, signed = c&0x20 != 0, c&0x10 != 0
	case c <= mediumAtomMax:
		if d.pos+2 > len(d.b) {
			return nil, d.errf("medium atom header truncated")
		}
		hdr, n = 2, int(c&0x07)<<8|int(d.b[d.pos+1])
		isBytes, signed = c&0x10 != 0, c&0x08 != 0
	case c <= longAtomMax:
		if d.pos+4 > len(d.b) {
			return nil, d.errf("long atom header truncated")
		}
		hdr, n = 4, int(d.b[d.pos+1])<<16|int(d.b[d.pos+2])<<8|int(d.b[d.pos+3])
		isBytes, signed = c&0x02 != 0, c&0x01 != 0
	default:
		return nil, d.errf("0x%02x is not an atom", c)
	}
	if n > d.lim.MaxAtom {
		return nil, d.errf("atom of %d bytes exceeds %d", n, d.lim.MaxAtom)
	}
	if len(d.b)-d.pos-hdr < n {
		return nil, d.errf("atom of %d bytes runs past the end of the stream", n)
	}
	data := d.b[d.pos+hdr : d.pos+hdr+n]
	if isBytes && signed {
		return nil, d.errf("continued byte strings are not supported")
	}
	if isBytes {
		d.pos += hdr + n
		return Bytes(append([]byte{}, data...)), nil
	}
	if n == 0 {
		return nil, d.errf("integer atom without data")
	}
	if n > 8 {
		return nil, d.errf("integer of %d bytes exceeds 64 bits", n)
	}
	var u uint64
	for _, x := range data {
		u = u<<8 | uint64(x)
	}
	d.pos += hdr + n
	if signed {
		shift := 64 - 8*uint(n)
		return Int(int64(u<<shift) >> shift), nil
	}
	return Uint(u), nil
}
