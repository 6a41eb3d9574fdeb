package sed

import (
	"errors"
	"fmt"
	"strings"
)

// The token stream of the TCG Core Specification 2.01, section 3.2.2
// ("Data Stream Encoding"). Atoms carry integers and byte strings; single
// bytes above the atom ranges are control tokens.
//
//	tiny atom    0b0sdddddd                 6-bit integer (s: signed)
//	short atom   0b10bsllll + 0..15 bytes   (b: byte string, s: signed)
//	medium atom  0b110bslll llllllll + 0..2047 bytes
//	long atom    0b111000bs + 3-byte length + 0..16M-1 bytes
//	0xF0 StartList  0xF1 EndList  0xF2 StartName  0xF3 EndName
//	0xF8 Call  0xF9 EndOfData  0xFA EndOfSession
//	0xFB StartTransaction  0xFC EndTransaction  0xFF Empty
//
// When b is set, s marks a "continued" byte string; this package neither
// sends nor accepts continued atoms (Opal does not need them).

// Token is a control token of the data stream.
type Token byte

// Control tokens (Core 3.2.2.3, table 04).
const (
	TokenStartList        Token = 0xF0
	TokenEndList          Token = 0xF1
	TokenStartName        Token = 0xF2
	TokenEndName          Token = 0xF3
	TokenCall             Token = 0xF8
	TokenEndOfData        Token = 0xF9
	TokenEndOfSession     Token = 0xFA
	TokenStartTransaction Token = 0xFB
	TokenEndTransaction   Token = 0xFC
	TokenEmpty            Token = 0xFF
)

// Atom header bytes and limits.
const (
	tinyAtomMax   = 0x7F
	shortAtomMax  = 0xBF
	mediumAtomMax = 0xDF
	longAtomMax   = 0xE3

	shortAtomLenMax  = 15
	mediumAtomLenMax = 2047
	longAtomLenMax   = 1<<24 - 1
)

// Value is one item of a token stream: Uint, Int, Bytes, List, Name, or a
// control Token (Call, EndOfData, ...) at the top level of a stream.
type Value interface {
	appendTo(b []byte) ([]byte, error)
	String() string
}

// Uint is an unsigned integer atom.
type Uint uint64

// Int is a signed integer atom.
type Int int64

// Bytes is a byte-string atom.
type Bytes []byte

// List is a StartList ... EndList sequence.
type List []Value

// Name is a StartName name value EndName pair (a named parameter, a column
// number and its value, a property name and its value).
type Name struct {
	Name  Value
	Value Value
}

// ErrEncode is returned when a value cannot be encoded.
var ErrEncode = errors.New("sed: cannot encode token")

func (u Uint) appendTo(b []byte) ([]byte, error) {
	if u <= 0x3F {
		return append(b, byte(u)), nil
	}
	n := 1
	for v := uint64(u) >> 8; v != 0; v >>= 8 {
		n++
	}
	b = append(b, 0x80|byte(n))
	for i := n - 1; i >= 0; i-- {
		b = append(b, byte(uint64(u)>>(8*i)))
	}
	return b, nil
}

func (u Uint) String() string { return fmt.Sprintf("%d", uint64(u)) }

func (v Int) appendTo(b []byte) ([]byte, error) {
	if v >= -32 && v <= 31 {
		return append(b, 0x40|byte(v)&0x3F), nil
	}
	// Smallest two's-complement width that holds v.
	n := 1
	for ; n < 8; n++ {
		lo, hi := -(int64(1) << (8*n - 1)), int64(1)<<(8*n-1)-1
		if int64(v) >= lo && int64(v) <= hi {
			break
		}
	}
	b = append(b, 0x90|byte(n))
	for i := n - 1; i >= 0; i-- {
		b = append(b, byte(uint64(v)>>(8*i)))
	}
	return b, nil
}

func (v Int) String() string { return fmt.Sprintf("%+d", int64(v)) }

func (s Bytes) appendTo(b []byte) ([]byte, error) {
	n := len(s)
	switch {
	case n <= shortAtomLenMax:
		b = append(b, 0xA0|byte(n))
	case n <= mediumAtomLenMax:
		b = append(b, 0xD0|byte(n>>8), byte(n))
	case n <= longAtomLenMax:
		b = append(b, 0xE2, byte(n>>16), byte(n>>8), byte(n))
	default:
		return nil, fmt.Errorf("%w: byte string of %d bytes exceeds a long atom", ErrEncode, n)
	}
	return append(b, s...), nil
}

// String prints printable byte strings as text and others as hex. Callers
// never format credentials; the encoder does not know which bytes are one.
func (s Bytes) String() string {
	printable := len(s) > 0
	for _, c := range s {
		if c < 0x20 || c > 0x7E {
			printable = false
			break
		}
	}
	if printable {
		return fmt.Sprintf("%q", string(s))
	}
	return fmt.Sprintf("0x%x", []byte(s))
}

func (l List) appendTo(b []byte) ([]byte, error) {
	b = append(b, byte(TokenStartList))
	var err error
	for _, v := range l {
		if v == nil {
			return nil, fmt.Errorf("%w: nil value in list", ErrEncode)
		}
		if b, err = v.appendTo(b); err != nil {
			return nil, err
		}
	}
	return append(b, byte(TokenEndList)), nil
}

func (l List) String() string {
	parts := make([]string, len(l))
	for i, v := range l {
		parts[i] = v.String()
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func (n Name) appendTo(b []byte) ([]byte, error) {
	if n.Name == nil || n.Value == nil {
		return nil, fmt.Errorf("%w: incomplete named value", ErrEncode)
	}
	if !isAtom(n.Name) {
		return nil, fmt.Errorf("%w: a name must be an atom", ErrEncode)
	}
	b = append(b, byte(TokenStartName))
	b, err := n.Name.appendTo(b)
	if err != nil {
		return nil, err
	}
	if b, err = n.Value.appendTo(b); err != nil {
		return nil, err
	}
	return append(b, byte(TokenEndName)), nil
}

func (n Name) String() string { return "{" + n.Name.String() + ": " + n.Value.String() + "}" }

func (t Token) appendTo(b []byte) ([]byte, error) {
	switch t {
	case TokenCall, TokenEndOfData, TokenEndOfSession, TokenStartTransaction, TokenEndTransaction, TokenEmpty:
		return append(b, byte(t)), nil
	}
	return nil, fmt.Errorf("%w: %v is structural, use List or Name", ErrEncode, t)
}

func (t Token) String() string {
	switch t {
	case TokenStartList:
		return "StartList"
	case TokenEndList:
		return "EndList"
	case TokenStartName:
		return "StartName"
	case TokenEndName:
		return "EndName"
	case TokenCall:
		return "Call"
	case TokenEndOfData:
		return "EndOfData"
	case TokenEndOfSession:
		return "EndOfSession"
	case TokenStartTransaction:
		return "StartTransaction"
	case TokenEndTransaction:
		return "EndTransaction"
	case TokenEmpty:
		return "Empty"
	}
	return fmt.Sprintf("Token(0x%02x)", byte(t))
}

func isAtom(v Value) bool {
	switch v.(type) {
	case Uint, Int, Bytes, Secret:
		return true
	}
	return false
}

// Encode appends the encoding of each value to a new token stream.
func Encode(values ...Value) ([]byte, error) {
	var b []byte
	var err error
	for _, v := range values {
		if v == nil {
			return nil, fmt.Errorf("%w: nil value", ErrEncode)
		}
		if b, err = v.appendTo(b); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// Secret is a byte-string atom that holds a credential (a PIN, a
// HostChallenge). It encodes exactly like Bytes but never prints its
// contents, so a method call that carries one can be logged safely.
type Secret []byte

func (s Secret) appendTo(b []byte) ([]byte, error) { return Bytes(s).appendTo(b) }

// String returns a fixed placeholder; the secret is never formatted.
func (s Secret) String() string { return "<redacted>" }
