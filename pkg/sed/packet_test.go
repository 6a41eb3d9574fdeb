package sed

import (
	"bytes"
	"errors"
	"testing"
)

func TestComPacketRoundTrip(t *testing.T) {
	t.Parallel()
	for n := 0; n <= 9; n++ {
		payload := bytes.Repeat([]byte{0xF9}, n)
		b, err := NewComPacket(0x07FE, 0x1001, 0x41, payload).MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if want := HeadersLen + pad4(n); len(b) != want {
			t.Fatalf("n=%d: %d bytes, want %d", n, len(b), want)
		}
		// Trailing zeros of a fixed-size receive buffer are ignored.
		b = append(b, make([]byte, 100)...)
		cp, err := ParseComPacket(b)
		if err != nil {
			t.Fatal(err)
		}
		p, got, err := cp.Payload()
		if err != nil || p.TSN != 0x1001 || p.HSN != 0x41 || cp.ComID != 0x07FE || !bytes.Equal(got, payload) {
			t.Fatalf("n=%d: %+v %x %v", n, cp, got, err)
		}
	}
}

func TestComPacketEmpty(t *testing.T) {
	t.Parallel()
	// "No response yet": Length 0, OutstandingData 1.
	b := make([]byte, 512)
	b[11] = 1
	cp, err := ParseComPacket(b)
	if err != nil || cp.OutstandingData != 1 || len(cp.Packets) != 0 {
		t.Fatalf("%+v %v", cp, err)
	}
	if _, _, err := cp.Payload(); !errors.Is(err, ErrMalformed) {
		t.Fatalf("payload of empty ComPacket: %v", err)
	}
}

func TestComPacketRejects(t *testing.T) {
	t.Parallel()
	good, _ := NewComPacket(1, 2, 3, []byte{1, 2, 3, 4, 5}).MarshalBinary()
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte{}, good...)) }
	tests := map[string][]byte{
		"short header":          good[:10],
		"compacket length long": mut(func(b []byte) []byte { b[19] = 200; return b }),
		"packet length long":    mut(func(b []byte) []byte { b[43] = 200; return b }),
		"subpacket length long": mut(func(b []byte) []byte { b[55] = 200; return b }),
		"packet header cut":     mut(func(b []byte) []byte { b[19] = 10; return b }),
		"subpacket header cut":  mut(func(b []byte) []byte { b[19] = 24 + 5; b[43] = 5; return b }),
	}
	for name, b := range tests {
		if _, err := ParseComPacket(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Two data SubPackets are framed fine but are not one method reply.
	cp := &ComPacket{Packets: []Packet{{SubPackets: []SubPacket{{Data: []byte{1}}, {Data: []byte{2}}}}}}
	b, _ := cp.MarshalBinary()
	parsed, err := ParseComPacket(b)
	if err != nil || len(parsed.Packets[0].SubPackets) != 2 {
		t.Fatalf("%+v %v", parsed, err)
	}
	if _, _, err := parsed.Payload(); !errors.Is(err, ErrMalformed) {
		t.Fatalf("two data subpackets: %v", err)
	}
}

func TestParseMethodResultRejects(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"empty":              "",
		"no status":          "f0 f1 f9",
		"status not list":    "f0 f1 f9 00",
		"short status":       "f0 f1 f9 f0 00 00 f1",
		"bytes status":       "f0 f1 f9 f0 a0 00 00 f1",
		"no end of data":     "f0 f1 f0 00 00 00 f1",
		"trailing":           "f0 f1 f9 f0 00 00 00 f1 01",
		"call short uid":     "f8 a1 00 a8 00 00 00 00 00 00 ff 03 f0 f1 f9 f0 00 00 00 f1",
		"call without args":  "f8 a8 00 00 00 00 00 00 00 ff a8 00 00 00 00 00 00 ff 03 f9 f0 00 00 00 f1",
		"atom before status": "01 f9 f0 00 00 00 f1",
	}
	for name, in := range tests {
		if _, err := ParseMethodResult(mustHex(t, in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := ParseMethodResult([]byte{0xFA}); !errors.Is(err, ErrSessionEnded) {
		t.Errorf("EndOfSession: %v", err)
	}
}

func TestStatusErrors(t *testing.T) {
	t.Parallel()
	var err error = StatusAuthorityLockedOut
	if !errors.Is(err, StatusAuthorityLockedOut) || errors.Is(err, StatusNotAuthorized) {
		t.Fatal("errors.Is on Status")
	}
	if s := Status(0x2A).Error(); s != "sed: method status 0x2a: unknown status" {
		t.Fatal(s)
	}
}

func TestColumns(t *testing.T) {
	t.Parallel()
	res := List{List{Name{Uint(3), Bytes("msid")}, Name{Uint(5), Uint(10)}}}
	cols, err := Columns(res)
	if err != nil || cols[3].String() != `"msid"` || cols[5] != Uint(10) {
		t.Fatalf("%v %v", cols, err)
	}
	for _, bad := range []List{{}, {Uint(1)}, {List{Uint(1)}}, {List{Name{Bytes("x"), Uint(1)}}}} {
		if _, err := Columns(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%v: %v", bad, err)
		}
	}
}
