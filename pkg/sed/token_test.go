package sed

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAtoms checks each atom form against Core 2.01 3.2.2.3.1 by hand.
func TestAtoms(t *testing.T) {
	t.Parallel()
	long := bytes.Repeat([]byte{0xAB}, 2048)
	medium := bytes.Repeat([]byte{0xCD}, 16)
	tests := []struct {
		v    Value
		want string
	}{
		{Uint(0), "00"},
		{Uint(1), "01"},
		{Uint(63), "3f"},
		{Uint(64), "81 40"},
		{Uint(255), "81 ff"},
		{Uint(256), "82 01 00"},
		{Uint(0x12345678), "84 12 34 56 78"},
		{Uint(1<<64 - 1), "88 ff ff ff ff ff ff ff ff"},
		{Int(0), "40"},
		{Int(-1), "7f"},
		{Int(31), "5f"},
		{Int(-32), "60"},
		{Int(32), "91 20"},
		{Int(-33), "91 df"},
		{Int(127), "91 7f"},
		{Int(128), "92 00 80"},
		{Int(-129), "92 ff 7f"},
		{Int(-1 << 63), "98 80 00 00 00 00 00 00 00"},
		{Bytes{}, "a0"},
		{Bytes("abc"), "a3 61 62 63"},
		{Bytes(bytes.Repeat([]byte{1}, 15)), "af" + strings.Repeat("01", 15)},
		{Bytes(medium), "d0 10" + strings.Repeat("cd", 16)},
		{Bytes(long), "e2 00 08 00" + strings.Repeat("ab", 2048)},
		{Secret("pw"), "a2 70 77"},
		{List{}, "f0 f1"},
		{List{Uint(1), List{Bytes("a")}}, "f0 01 f0 a1 61 f1 f1"},
		{Name{Uint(3), Uint(2)}, "f2 03 02 f3"},
		{Name{Bytes("x"), List{}}, "f2 a1 78 f0 f1 f3"},
		{TokenCall, "f8"},
		{TokenEndOfData, "f9"},
		{TokenEndOfSession, "fa"},
		{TokenStartTransaction, "fb"},
		{TokenEndTransaction, "fc"},
	}
	for _, tt := range tests {
		got, err := Encode(tt.v)
		if err != nil {
			t.Fatalf("%v: %v", tt.v, err)
		}
		want := mustHex(t, tt.want)
		if !bytes.Equal(got, want) {
			t.Errorf("%v: got %x want %x", tt.v, got, want)
			continue
		}
		vals, err := Decode(got)
		if err != nil || len(vals) != 1 {
			t.Errorf("%v: decode %v %v", tt.v, vals, err)
			continue
		}
		again, _ := Encode(vals[0])
		if !bytes.Equal(again, want) {
			t.Errorf("%v: round trip %x", tt.v, again)
		}
	}
}

// TestDecodeNonMinimal accepts atoms a device may send in a longer form
// than ours: integers in medium or long atoms, leading zero bytes.
func TestDecodeNonMinimal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want Value
	}{
		{"82 00 05", Uint(5)},
		{"c0 02 01 00", Uint(256)},
		{"e0 00 00 01 07", Uint(7)},
		{"c8 01 ff", Int(-1)},
		{"d0 01 41", Bytes("A")},
		{"e2 00 00 00", Bytes{}},
		{"ff ff 05 ff", Uint(5)}, // Empty tokens are ignored
	}
	for _, tt := range tests {
		vals, err := Decode(mustHex(t, tt.in))
		if err != nil || len(vals) != 1 || vals[0].String() != tt.want.String() {
			t.Errorf("%s: got %v %v, want %v", tt.in, vals, err, tt.want)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in string }{
		{"short atom truncated", "83 01 02"},
		{"medium header truncated", "d0"},
		{"long header truncated", "e2 00 00"},
		{"long atom truncated", "e2 00 00 05 01"},
		{"integer without data", "80"},
		{"integer over 64 bits", "89 01 02 03 04 05 06 07 08 09"},
		{"continued bytes", "b1 00"},
		{"reserved token e4", "e4"},
		{"reserved token f4", "f4"},
		{"reserved token fd", "fd"},
		{"unclosed list", "f0 01"},
		{"stray end list", "f1"},
		{"stray end name", "f3"},
		{"name without value", "f2 01 f3"},
		{"name with two values", "f2 01 02 03 f3"},
		{"name is a list", "f2 f0 f1 01 f3"},
		{"unclosed name", "f2 01 02"},
		{"control token in list", "f0 f9 f1"},
		{"call in name", "f2 01 f8 f3"},
	}
	for _, tt := range tests {
		if vals, err := Decode(mustHex(t, tt.in)); err == nil || !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: accepted as %v (err %v)", tt.name, vals, err)
		}
	}
}

func TestDecodeLimits(t *testing.T) {
	t.Parallel()
	deep := strings.Repeat("f0", 17) + strings.Repeat("f1", 17)
	if _, err := Decode(mustHex(t, deep)); !errors.Is(err, ErrMalformed) {
		t.Errorf("17-deep list accepted: %v", err)
	}
	ok := strings.Repeat("f0", 16) + strings.Repeat("f1", 16)
	if _, err := Decode(mustHex(t, ok)); err != nil {
		t.Errorf("16-deep list rejected: %v", err)
	}
	lim := DefaultDecodeLimits
	lim.MaxItems = 3
	if _, err := DecodeWithLimits(mustHex(t, "01 02 03 04"), lim); !errors.Is(err, ErrMalformed) {
		t.Errorf("item limit not enforced: %v", err)
	}
	lim = DefaultDecodeLimits
	lim.MaxAtom = 2
	if _, err := DecodeWithLimits(mustHex(t, "a3 01 02 03"), lim); !errors.Is(err, ErrMalformed) {
		t.Errorf("atom limit not enforced: %v", err)
	}
}

func TestEncodeRejects(t *testing.T) {
	t.Parallel()
	for _, v := range []Value{
		Name{List{}, Uint(1)},
		Name{Uint(1), nil},
		List{nil},
		TokenStartList,
		Bytes(make([]byte, 1<<24)),
	} {
		if _, err := Encode(v); !errors.Is(err, ErrEncode) {
			t.Errorf("%T encoded: %v", v, err)
		}
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	t.Parallel()
	c := SetCall(CPINSID, Col(ColCPINPIN, Secret("hunter2")))
	if s := List(c.Args).String() + c.String(); strings.Contains(s, "hunter2") {
		t.Fatalf("secret printed: %s", s)
	}
}
