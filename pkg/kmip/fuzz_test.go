package kmip

import (
	"bytes"
	"testing"
)

// FuzzDecode checks that Decode never panics and that whatever it accepts
// re-encodes to a canonical form that decodes to the same thing.
func FuzzDecode(f *testing.F) {
	for _, tc := range specExamples {
		f.Add(unhex(f, tc.hex))
	}
	for _, s := range []string{tc311CreateRequest, tc311CreateResponse, tc311DestroyRequest, tc312GetResponse} {
		f.Add(unhex(f, s))
	}
	f.Add([]byte{0x42, 0x00, 0x7B, 0x01, 0x7F, 0xFF, 0xFF, 0xF8})
	f.Fuzz(func(t *testing.T, b []byte) {
		it, err := Decode(b)
		if err != nil {
			return
		}
		enc, err := Encode(it)
		if err != nil {
			t.Fatalf("decoded item does not re-encode: %v", err)
		}
		if len(enc) > len(b) {
			t.Fatalf("re-encoding grew from %d to %d bytes", len(b), len(enc))
		}
		it2, err := Decode(enc)
		if err != nil {
			t.Fatalf("re-encoded item does not decode: %v", err)
		}
		enc2, err := Encode(it2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable: %x vs %x (%v)", enc, enc2, err)
		}
	})
}

// FuzzDecodeResponse checks that response parsing never panics on any
// input, whatever it was asked.
func FuzzDecodeResponse(f *testing.F) {
	for _, s := range []string{tc311CreateResponse, tc312GetResponse} {
		f.Add(unhex(f, s), uint8(2))
	}
	f.Fuzz(func(t *testing.T, b []byte, n uint8) {
		reqs := make([]Request, n%4+1)
		for i := range reqs {
			reqs[i].Operation = Operation(i%3*9 + 1)
		}
		resps, err := decodeResponse("fuzz:5696", b, reqs)
		if err == nil && len(resps) != len(reqs) {
			t.Fatalf("%d responses for %d requests", len(resps), len(reqs))
		}
		for _, r := range resps {
			if r.Err == nil {
				_, _ = parseGetPayload(r.Payload)
				for _, a := range r.Payload.All(TagAttribute) {
					_, _ = parseAttribute(a)
				}
			}
		}
	})
}
