package kmip

import (
	"bytes"
	"errors"
	"testing"
)

// Golden messages from the OASIS "KMIP Test Cases Version 1.1", §3.1.1
// (Create / Get Attributes / Destroy of an AES-128 key, protocol 1.1).
const (
	tc311CreateRequest = `
42 00 78 01 00 00 01 20 42 00 77 01 00 00 00 38 42 00 69 01 00 00 00 20 42 00 6A 02 00 00 00 04
00 00 00 01 00 00 00 00 42 00 6B 02 00 00 00 04 00 00 00 01 00 00 00 00 42 00 0D 02 00 00 00 04
00 00 00 01 00 00 00 00 42 00 0F 01 00 00 00 D8 42 00 5C 05 00 00 00 04 00 00 00 01 00 00 00 00
42 00 79 01 00 00 00 C0 42 00 57 05 00 00 00 04 00 00 00 02 00 00 00 00 42 00 91 01 00 00 00 A8
42 00 08 01 00 00 00 30 42 00 0A 07 00 00 00 17 43 72 79 70 74 6F 67 72 61 70 68 69 63 20 41 6C
67 6F 72 69 74 68 6D 00 42 00 0B 05 00 00 00 04 00 00 00 03 00 00 00 00 42 00 08 01 00 00 00 30
42 00 0A 07 00 00 00 14 43 72 79 70 74 6F 67 72 61 70 68 69 63 20 4C 65 6E 67 74 68 00 00 00 00
42 00 0B 02 00 00 00 04 00 00 00 80 00 00 00 00 42 00 08 01 00 00 00 30 42 00 0A 07 00 00 00 18
43 72 79 70 74 6F 67 72 61 70 68 69 63 20 55 73 61 67 65 20 4D 61 73 6B 42 00 0B 02 00 00 00 04
00 00 00 0C 00 00 00 00`
	tc311CreateResponse = `
42 00 7B 01 00 00 00 C0 42 00 7A 01 00 00 00 48 42 00 69 01 00 00 00 20 42 00 6A 02 00 00 00 04
00 00 00 01 00 00 00 00 42 00 6B 02 00 00 00 04 00 00 00 01 00 00 00 00 42 00 92 09 00 00 00 08
00 00 00 00 4F 9A 54 E5 42 00 0D 02 00 00 00 04 00 00 00 01 00 00 00 00 42 00 0F 01 00 00 00 68
42 00 5C 05 00 00 00 04 00 00 00 01 00 00 00 00 42 00 7F 05 00 00 00 04 00 00 00 00 00 00 00 00
42 00 7C 01 00 00 00 40 42 00 57 05 00 00 00 04 00 00 00 02 00 00 00 00 42 00 94 07 00 00 00 24
66 62 34 62 35 62 39 63 2D 36 31 38 38 2D 34 63 36 33 2D 38 31 34 32 2D 66 65 39 63 33 32 38 31
32 39 66 63 00 00 00 00`
	tc311DestroyRequest = `
42 00 78 01 00 00 00 90 42 00 77 01 00 00 00 38 42 00 69 01 00 00 00 20 42 00 6A 02 00 00 00 04
00 00 00 01 00 00 00 00 42 00 6B 02 00 00 00 04 00 00 00 01 00 00 00 00 42 00 0D 02 00 00 00 04
00 00 00 01 00 00 00 00 42 00 0F 01 00 00 00 48 42 00 5C 05 00 00 00 04 00 00 00 14 00 00 00 00
42 00 79 01 00 00 00 30 42 00 94 07 00 00 00 24 66 62 34 62 35 62 39 63 2D 36 31 38 38 2D 34 63
36 33 2D 38 31 34 32 2D 66 65 39 63 33 32 38 31 32 39 66 63 00 00 00 00`
	// KMIP Test Cases 1.1 §3.1.2 (Register / Get of a symmetric key): the
	// Get response carrying a 3DES key's raw material.
	tc312GetResponse = `
42 00 7B 01 00 00 01 28 42 00 7A 01 00 00 00 48 42 00 69 01 00 00 00 20 42 00 6A 02 00 00 00 04
00 00 00 01 00 00 00 00 42 00 6B 02 00 00 00 04 00 00 00 01 00 00 00 00 42 00 92 09 00 00 00 08
00 00 00 00 4F 9A 54 E7 42 00 0D 02 00 00 00 04 00 00 00 01 00 00 00 00 42 00 0F 01 00 00 00 D0
42 00 5C 05 00 00 00 04 00 00 00 0A 00 00 00 00 42 00 7F 05 00 00 00 04 00 00 00 00 00 00 00 00
42 00 7C 01 00 00 00 A8 42 00 57 05 00 00 00 04 00 00 00 02 00 00 00 00 42 00 94 07 00 00 00 24
34 39 61 31 63 61 38 38 2D 36 62 65 61 2D 34 66 62 32 2D 62 34 35 30 2D 37 65 35 38 38 30 32 63
33 30 33 38 00 00 00 00 42 00 8F 01 00 00 00 60 42 00 40 01 00 00 00 58 42 00 42 05 00 00 00 04
00 00 00 01 00 00 00 00 42 00 45 01 00 00 00 20 42 00 43 08 00 00 00 18 73 67 57 80 51 01 2A 6D
13 4A 85 5E 25 C8 CD 5E 4C A1 31 45 57 29 D3 C8 42 00 28 05 00 00 00 04 00 00 00 02 00 00 00 00
42 00 2A 02 00 00 00 04 00 00 00 A8 00 00 00 00`
)

func TestGoldenCreateRequest(t *testing.T) {
	t.Parallel()
	attrs := []Attribute{Algorithm(AlgorithmAES), Length(128), Usage(UsageEncrypt | UsageDecrypt)}
	got, err := encodeRequest(ProtocolVersion{1, 1}, 0, []Request{createRequest(attrs)})
	if err != nil {
		t.Fatal(err)
	}
	if want := unhex(t, tc311CreateRequest); !bytes.Equal(got, want) {
		t.Fatalf("Create request:\n got %x\nwant %x", got, want)
	}
}

func TestGoldenDestroyRequest(t *testing.T) {
	t.Parallel()
	const uid = "fb4b5b9c-6188-4c63-8142-fe9c328129fc"
	got, err := encodeRequest(ProtocolVersion{1, 1}, 0, []Request{{OpDestroy, []Item{Text(TagUniqueIdentifier, uid)}}})
	if err != nil {
		t.Fatal(err)
	}
	if want := unhex(t, tc311DestroyRequest); !bytes.Equal(got, want) {
		t.Fatalf("Destroy request:\n got %x\nwant %x", got, want)
	}
}

func TestGoldenCreateResponse(t *testing.T) {
	t.Parallel()
	resps, err := decodeResponse("kms:5696", unhex(t, tc311CreateResponse), []Request{{Operation: OpCreate}})
	if err != nil {
		t.Fatal(err)
	}
	if resps[0].Err != nil {
		t.Fatal(resps[0].Err)
	}
	uid, err := field[string](resps[0].Payload, TagUniqueIdentifier, TypeTextString)
	if err != nil || uid != "fb4b5b9c-6188-4c63-8142-fe9c328129fc" {
		t.Fatalf("uid = %q, %v", uid, err)
	}
	// The same bytes do not answer a Get.
	if _, err := decodeResponse("kms:5696", unhex(t, tc311CreateResponse), []Request{{Operation: OpGet}}); !errors.Is(err, ErrUnexpectedResponse) {
		t.Fatalf("Create response accepted for Get: %v", err)
	}
}

func TestGoldenGetResponse(t *testing.T) {
	t.Parallel()
	resps, err := decodeResponse("kms:5696", unhex(t, tc312GetResponse), []Request{{Operation: OpGet}})
	if err != nil {
		t.Fatal(err)
	}
	o, err := parseGetPayload(resps[0].Payload)
	if err != nil {
		t.Fatal(err)
	}
	want := unhex(t, "73 67 57 80 51 01 2A 6D 13 4A 85 5E 25 C8 CD 5E 4C A1 31 45 57 29 D3 C8")
	if o.Type != ObjectSymmetricKey || o.UID != "49a1ca88-6bea-4fb2-b450-7e58802c3038" ||
		o.Format != KeyFormatRaw || o.Algorithm != 0x02 || o.Length != 168 || !bytes.Equal(o.Material, want) {
		t.Fatalf("Get = %+v", o)
	}
}

func TestResponseFailures(t *testing.T) {
	t.Parallel()
	failed := func(reason ResultReason, msg string) Item {
		return Struct(TagBatchItem, Enum(TagOperation, uint32(OpDecrypt)),
			Enum(TagResultStatus, uint32(StatusOperationFailed)), Enum(TagResultReason, uint32(reason)),
			Text(TagResultMessage, msg))
	}
	msg := func(items ...Item) []byte {
		b, err := Encode(Struct(TagResponseMessage, append([]Item{Struct(TagResponseHeader,
			ProtocolVersion{1, 4}.item(), Int(TagBatchCount, int32(len(items))))}, items...)...))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	resps, err := decodeResponse("kms1:5696", msg(failed(ReasonPermissionDenied, "key is not Active\nFAKE LOG LINE")), []Request{{Operation: OpDecrypt}})
	if err != nil {
		t.Fatal(err)
	}
	var re *ResultError
	if !errors.As(resps[0].Err, &re) || !errors.Is(resps[0].Err, ErrOperationFailed) {
		t.Fatalf("err = %v, want a *ResultError", resps[0].Err)
	}
	if re.Server != "kms1:5696" || re.Reason != ReasonPermissionDenied || re.Operation != OpDecrypt {
		t.Fatalf("ResultError = %+v", re)
	}
	want := "kmip server kms1:5696: Decrypt: Operation Failed: Permission Denied: key is not Active FAKE LOG LINE"
	if re.Error() != want {
		t.Fatalf("Error() = %q\nwant      %q", re.Error(), want)
	}

	// A message-level failure (one item, no operation) fails the batch.
	noOp := Struct(TagBatchItem, Enum(TagResultStatus, uint32(StatusOperationFailed)), Enum(TagResultReason, uint32(ReasonInvalidMessage)))
	resps, err = decodeResponse("kms1:5696", msg(noOp), []Request{{Operation: OpRevoke}, {Operation: OpDestroy}})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range resps {
		if reason, ok := Reason(r.Err); !ok || reason != ReasonInvalidMessage {
			t.Errorf("item %d: err = %v", i, r.Err)
		}
	}

	// Count mismatch, too many items, unknown batch IDs are refused.
	ok := Struct(TagBatchItem, Enum(TagOperation, uint32(OpDestroy)), Enum(TagResultStatus, 0))
	bad := [][]byte{
		msg(ok, ok),
		mustEncode(t, Struct(TagResponseMessage, Struct(TagResponseHeader, ProtocolVersion{1, 4}.item(), Int(TagBatchCount, 2)), ok)),
		msg(Struct(TagBatchItem, Enum(TagOperation, uint32(OpDestroy)), Bytes(TagUniqueBatchItemID, []byte{0, 9}), Enum(TagResultStatus, 0))),
		mustEncode(t, Struct(TagRequestMessage)),
		mustEncode(t, Struct(TagResponseMessage, ok)),
	}
	for i, b := range bad {
		reqs := []Request{{Operation: OpDestroy}}
		if i == 2 {
			reqs = append(reqs, Request{Operation: OpDestroy})
		}
		if _, err := decodeResponse("kms1:5696", b, reqs); !errors.Is(err, ErrUnexpectedResponse) {
			t.Errorf("bad response %d: err = %v, want ErrUnexpectedResponse", i, err)
		}
	}
}

func mustEncode(t testing.TB, it Item) []byte {
	t.Helper()
	b, err := Encode(it)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
