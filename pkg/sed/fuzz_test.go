package sed

import (
	"bytes"
	"path/filepath"
	"testing"
)

func addGoldenSeeds(f *testing.F, dir string) {
	files, _ := filepath.Glob(filepath.Join("testdata", dir, "*.hex"))
	for _, p := range files {
		f.Add(readHex(f, p))
	}
}

// FuzzDecode: the token decoder never panics, and whatever it accepts
// re-encodes to a stream that decodes to the same values.
func FuzzDecode(f *testing.F) {
	addGoldenSeeds(f, "golden")
	f.Add([]byte{0xf0, 0xf2, 0x01, 0xf0, 0xf1, 0xf3, 0xf1})
	f.Add([]byte{0xe2, 0x00, 0x00, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		vals, err := Decode(b)
		if err != nil {
			return
		}
		enc, err := Encode(vals...)
		if err != nil {
			t.Fatalf("re-encode %v: %v", vals, err)
		}
		again, err := Decode(enc)
		if err != nil {
			t.Fatalf("decode of re-encoding: %v", err)
		}
		enc2, _ := Encode(again...)
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("not stable: %x vs %x", enc, enc2)
		}
		_, _ = ParseMethodResult(b)
	})
}

// FuzzParseComPacket: the framing parser never panics and round-trips.
func FuzzParseComPacket(f *testing.F) {
	addGoldenSeeds(f, "golden")
	b, _ := NewComPacket(0x1000, 1, 2, []byte{0xfa}).MarshalBinary()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		cp, err := ParseComPacket(b)
		if err != nil {
			return
		}
		enc, err := cp.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		cp2, err := ParseComPacket(enc)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if len(cp2.Packets) != len(cp.Packets) {
			t.Fatalf("packets %d vs %d", len(cp2.Packets), len(cp.Packets))
		}
		_, _, _ = cp.Payload()
	})
}

// FuzzParseDiscovery: the discovery parser never panics.
func FuzzParseDiscovery(f *testing.F) {
	addGoldenSeeds(f, "discovery")
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseDiscovery(b)
		if err != nil {
			return
		}
		_, _, _ = d.SSC()
	})
}
