package kmip

import "testing"

// BenchmarkDecode measures decoding a Create request (KMIP Test Cases
// 1.1 §3.1.1, 296 bytes).
func BenchmarkDecode(b *testing.B) {
	msg := unhex(b, tc311CreateRequest)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := Decode(msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncode measures encoding the same request.
func BenchmarkEncode(b *testing.B) {
	attrs := []Attribute{Algorithm(AlgorithmAES), Length(128), Usage(UsageEncrypt | UsageDecrypt)}
	reqs := []Request{createRequest(attrs)}
	for b.Loop() {
		if _, err := encodeRequest(ProtocolVersion{1, 1}, 0, reqs); err != nil {
			b.Fatal(err)
		}
	}
}
