package kmip

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"
)

// unhex decodes hex written with spaces and '|' separators, as the KMIP
// specification prints its examples.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	s = strings.NewReplacer(" ", "", "|", "", "\n", "", "\t", "").Replace(s)
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func bigFromString(s string) *big.Int {
	v, _ := new(big.Int).SetString(s, 10)
	return v
}

// specExamples are the TTLV examples of the KMIP 1.2 specification,
// §9.1.2 ("Examples"), all with the placeholder tag 0x420020.
var specExamples = []struct {
	name string
	item Item
	hex  string
}{
	{"Integer 8", Int(0x420020, 8), "42 00 20 | 02 | 00 00 00 04 | 00 00 00 08 00 00 00 00"},
	{"Long Integer 123456789000000000", Long(0x420020, 123456789000000000), "42 00 20 | 03 | 00 00 00 08 | 01 B6 9B 4B A5 74 92 00"},
	{"Big Integer 1234567890000000000000000000", BigInt(0x420020, bigFromString("1234567890000000000000000000")),
		"42 00 20 | 04 | 00 00 00 10 | 00 00 00 00 03 FD 35 EB 6B C2 DF 46 18 08 00 00"},
	{"Enumeration 255", Enum(0x420020, 255), "42 00 20 | 05 | 00 00 00 04 | 00 00 00 FF 00 00 00 00"},
	{"Boolean True", Bool(0x420020, true), "42 00 20 | 06 | 00 00 00 08 | 00 00 00 00 00 00 00 01"},
	{"Text String Hello World", Text(0x420020, "Hello World"), "42 00 20 | 07 | 00 00 00 0B | 48 65 6C 6C 6F 20 57 6F 72 6C 64 00 00 00 00 00"},
	{"Byte String 010203", Bytes(0x420020, []byte{1, 2, 3}), "42 00 20 | 08 | 00 00 00 03 | 01 02 03 00 00 00 00 00"},
	{"Date-Time 2008-03-14 11:56:40 GMT", DateTime(0x420020, time.Date(2008, 3, 14, 11, 56, 40, 0, time.UTC)),
		"42 00 20 | 09 | 00 00 00 08 | 00 00 00 00 47 DA 67 F8"},
	{"Interval 10 days", Interval(0x420020, 10*24*time.Hour), "42 00 20 | 0A | 00 00 00 04 | 00 0D 2F 00 00 00 00 00"},
	{"Structure", Struct(0x420020, Enum(0x420004, 254), Int(0x420005, 255)),
		"42 00 20 | 01 | 00 00 00 20 | 42 00 04 | 05 | 00 00 00 04 | 00 00 00 FE 00 00 00 00 | 42 00 05 | 02 | 00 00 00 04 | 00 00 00 FF 00 00 00 00"},
}

func TestSpecExamples(t *testing.T) {
	t.Parallel()
	for _, tc := range specExamples {
		t.Run(tc.name, func(t *testing.T) {
			want := unhex(t, tc.hex)
			got, err := Encode(tc.item)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("Encode:\n got %x\nwant %x", got, want)
			}
			dec, err := Decode(want)
			if err != nil {
				t.Fatal(err)
			}
			if !itemsEqual(dec, tc.item) {
				t.Fatalf("Decode = %#v, want %#v", dec, tc.item)
			}
		})
	}
}

// itemsEqual compares items by value (big.Int and time.Time need care).
func itemsEqual(a, b Item) bool {
	if a.Tag != b.Tag || a.Type != b.Type {
		return false
	}
	switch av := a.Value.(type) {
	case *big.Int:
		bv, ok := b.Value.(*big.Int)
		return ok && av.Cmp(bv) == 0
	case time.Time:
		bv, ok := b.Value.(time.Time)
		return ok && av.Equal(bv)
	case []Item:
		bv, _ := b.Value.([]Item)
		if len(av) != len(bv) {
			return false
		}
		for i := range av {
			if !itemsEqual(av[i], bv[i]) {
				return false
			}
		}
		return true
	default:
		return reflect.DeepEqual(a.Value, b.Value)
	}
}

func TestBigIntegerRoundTrip(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"0", "1", "-1", "127", "128", "-128", "-129", "9223372036854775807",
		"9223372036854775808", "-9223372036854775808", "-9223372036854775809",
		"-1234567890000000000000000000", "340282366920938463463374607431768211456"} {
		v := bigFromString(s)
		b, err := Encode(BigInt(0x420020, v))
		if err != nil {
			t.Fatal(err)
		}
		if n := len(b) - headerLen; n%8 != 0 || n == 0 {
			t.Errorf("%s: value length %d is not a positive multiple of 8", s, n)
		}
		it, err := Decode(b)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if got := it.Value.(*big.Int); got.Cmp(v) != 0 {
			t.Errorf("%s: round trip gave %s", s, got)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	deep := []byte{}
	for i := 0; i < MaxDepth+1; i++ {
		deep = append(deep, 0x42, 0x00, 0x01, 0x01, 0, 0, 0, 0)
	}
	// Fix up the lengths from the innermost structure outwards.
	for i := MaxDepth; i >= 0; i-- {
		n := len(deep) - 8*(i+1)
		deep[8*i+4], deep[8*i+5], deep[8*i+6], deep[8*i+7] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	}
	cases := []struct{ name, hex string }{
		{"empty", ""},
		{"short header", "42 00 20 02 00 00 00"},
		{"tag out of range", "43 00 20 | 02 | 00 00 00 04 | 00 00 00 08 00 00 00 00"},
		{"unknown type", "42 00 20 | 0C | 00 00 00 04 | 00 00 00 08 00 00 00 00"},
		{"integer length 8", "42 00 20 | 02 | 00 00 00 08 | 00 00 00 08 00 00 00 00"},
		{"enumeration length 2", "42 00 20 | 05 | 00 00 00 02 | 00 08 00 00 00 00 00 00"},
		{"long length 4", "42 00 20 | 03 | 00 00 00 04 | 00 00 00 08 00 00 00 00"},
		{"boolean 2", "42 00 20 | 06 | 00 00 00 08 | 00 00 00 00 00 00 00 02"},
		{"big integer length 12", "42 00 20 | 04 | 00 00 00 0C | 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00 00"},
		{"big integer length 0", "42 00 20 | 04 | 00 00 00 00"},
		{"non-zero padding", "42 00 20 | 02 | 00 00 00 04 | 00 00 00 08 00 00 00 01"},
		{"text padding truncated", "42 00 20 | 07 | 00 00 00 03 | 41 42 43"},
		{"length beyond input", "42 00 20 | 08 | 00 00 01 00 | 01 02 03 00 00 00 00 00"},
		{"length 2^32-1", "42 00 20 | 08 | FF FF FF FF | 01 02 03 00 00 00 00 00"},
		{"invalid UTF-8", "42 00 20 | 07 | 00 00 00 02 | C3 28 00 00 00 00 00 00"},
		{"structure overrun by child", "42 00 20 | 01 | 00 00 00 08 | 42 00 04 | 05 | 00 00 00 04 | 00 00 00 FE 00 00 00 00"},
		{"structure with partial child", "42 00 20 | 01 | 00 00 00 08 | 42 00 04 | 05 | 00 00 00 04"},
		{"trailing bytes", "42 00 20 | 02 | 00 00 00 04 | 00 00 00 08 00 00 00 00 | 00"},
		{"too deep", hex.EncodeToString(deep)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(unhex(t, tc.hex))
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode: err = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestEncodeRejects(t *testing.T) {
	t.Parallel()
	deep := Int(0x420020, 1)
	for i := 0; i < MaxDepth; i++ {
		deep = Struct(0x420020, deep)
	}
	cases := []struct {
		name string
		item Item
	}{
		{"wrong Go type", Item{0x420020, TypeInteger, int64(1)}},
		{"text holds bytes", Item{0x420020, TypeTextString, []byte("x")}},
		{"bytes hold text", Item{0x420020, TypeByteString, "x"}},
		{"nil big", Item{0x420020, TypeBigInteger, (*big.Int)(nil)}},
		{"negative interval", Interval(0x420020, -time.Second)},
		{"fractional interval", Interval(0x420020, 1500*time.Millisecond)},
		{"invalid UTF-8", Text(0x420020, "\xc3\x28")},
		{"tag too wide", Int(0x1000000, 1)},
		{"unknown type", Item{0x420020, 0x0C, int32(1)}},
		{"too deep", deep},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if b, err := Encode(tc.item); err == nil {
				t.Fatalf("Encode succeeded: %x", b)
			}
		})
	}
}

func TestReadMessage(t *testing.T) {
	t.Parallel()
	good := unhex(t, specExamples[len(specExamples)-1].hex)
	if got, err := ReadMessage(bytes.NewReader(good), 64); err != nil || !bytes.Equal(got, good) {
		t.Fatalf("ReadMessage(good) = %x, %v", got, err)
	}
	if _, err := ReadMessage(bytes.NewReader(good), 32); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over the cap: err = %v, want ErrTooLarge", err)
	}
	huge := unhex(t, "42 00 7B | 01 | 7F FF FF F8")
	if _, err := ReadMessage(bytes.NewReader(huge), DefaultMaxMessageSize); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("2 GiB announced: err = %v, want ErrTooLarge", err)
	}
	if _, err := ReadMessage(bytes.NewReader(good[:20]), 64); err == nil {
		t.Fatal("truncated message read without error")
	}
	notStruct := unhex(t, specExamples[0].hex)
	if _, err := ReadMessage(bytes.NewReader(notStruct), 64); !errors.Is(err, ErrMalformed) {
		t.Fatalf("non-structure message: err = %v, want ErrMalformed", err)
	}
}
