package kmip

import (
	"fmt"
	"math"
)

// ProtocolVersion is a KMIP protocol version (major.minor).
type ProtocolVersion struct {
	Major, Minor int32
}

// Versions this client speaks. 1.4 is the default: it is the first version
// whose Encrypt and Decrypt carry AES-GCM's additional data and tag.
var (
	Version1_2 = ProtocolVersion{1, 2}
	Version1_3 = ProtocolVersion{1, 3}
	Version1_4 = ProtocolVersion{1, 4}
)

func (v ProtocolVersion) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// AtLeast reports whether v is o or newer.
func (v ProtocolVersion) AtLeast(o ProtocolVersion) bool {
	return v.Major > o.Major || (v.Major == o.Major && v.Minor >= o.Minor)
}

func (v ProtocolVersion) item() Item {
	return Struct(TagProtocolVersion, Int(TagProtocolVersionMajor, v.Major), Int(TagProtocolVersionMinor, v.Minor))
}

func parseProtocolVersion(it Item) (ProtocolVersion, error) {
	maj, err := field[int32](it, TagProtocolVersionMajor, TypeInteger)
	if err != nil {
		return ProtocolVersion{}, err
	}
	minor, err := field[int32](it, TagProtocolVersionMinor, TypeInteger)
	if err != nil {
		return ProtocolVersion{}, err
	}
	return ProtocolVersion{maj, minor}, nil
}

// Request is one batch item of a request message: an operation and its
// request payload's fields (KMIP 1.2 §7.2).
type Request struct {
	Operation Operation
	Payload   []Item
}

// Response is one batch item of a response message. Payload is the
// Response Payload structure (zero Item if absent). Err is a *ResultError
// when the item did not succeed.
type Response struct {
	Operation Operation
	Payload   Item
	Err       error
}

// encodeRequest builds a Request Message: a header (with a Maximum Response
// Size if maxResponse > 0), then one batch item
// per request. A batch of more than one item stops at the first failure
// and is processed in order, so later items may use the ID placeholder
// (an omitted Unique Identifier means "the object the previous item made").
func encodeRequest(v ProtocolVersion, maxResponse int, reqs []Request) ([]byte, error) {
	if len(reqs) == 0 || len(reqs) > math.MaxInt32 {
		return nil, fmt.Errorf("kmip: a request holds 1 or more batch items, not %d", len(reqs))
	}
	hdr := []Item{v.item()}
	if maxResponse > 0 {
		hdr = append(hdr, Int(TagMaximumResponseSize, int32(min(maxResponse, math.MaxInt32))))
	}
	if len(reqs) > 1 {
		hdr = append(hdr, Enum(TagBatchErrorContinuationOption, batchErrorStop), Bool(TagBatchOrderOption, true))
	}
	hdr = append(hdr, Int(TagBatchCount, int32(len(reqs))))
	msg := []Item{Struct(TagRequestHeader, hdr...)}
	for i, r := range reqs {
		bi := []Item{Enum(TagOperation, uint32(r.Operation))}
		if len(reqs) > 1 {
			bi = append(bi, Bytes(TagUniqueBatchItemID, []byte{byte(i >> 8), byte(i)}))
		}
		bi = append(bi, Struct(TagRequestPayload, r.Payload...))
		msg = append(msg, Struct(TagBatchItem, bi...))
	}
	return Encode(Struct(TagRequestMessage, msg...))
}

// decodeResponse parses a Response Message answering reqs. Per-item
// failures become Response.Err (*ResultError naming server); anything that
// is not a response to this request is an error.
func decodeResponse(server string, raw []byte, reqs []Request) ([]Response, error) {
	msg, err := Decode(raw)
	if err != nil {
		return nil, err
	}
	if msg.Tag != TagResponseMessage || msg.Type != TypeStructure {
		return nil, fmt.Errorf("%w: message is a %v %v, not a Response Message", ErrUnexpectedResponse, msg.Tag, msg.Type)
	}
	hdr, ok := msg.Child(TagResponseHeader)
	if !ok || hdr.Type != TypeStructure {
		return nil, fmt.Errorf("%w: no Response Header", ErrUnexpectedResponse)
	}
	pvItem, ok := hdr.Child(TagProtocolVersion)
	if !ok {
		return nil, fmt.Errorf("%w: Response Header has no Protocol Version", ErrUnexpectedResponse)
	}
	if _, err := parseProtocolVersion(pvItem); err != nil {
		return nil, err
	}
	count, err := field[int32](hdr, TagBatchCount, TypeInteger)
	if err != nil {
		return nil, err
	}
	items := msg.All(TagBatchItem)
	if int(count) != len(items) {
		return nil, fmt.Errorf("%w: Batch Count %d but %d batch items", ErrUnexpectedResponse, count, len(items))
	}
	if len(items) == 0 || len(items) > len(reqs) {
		return nil, fmt.Errorf("%w: %d batch items answer %d requests", ErrUnexpectedResponse, len(items), len(reqs))
	}
	out := make([]Response, len(reqs))
	seen := make([]bool, len(reqs))
	for i, bi := range items {
		if bi.Type != TypeStructure {
			return nil, fmt.Errorf("%w: batch item is a %v", ErrUnexpectedResponse, bi.Type)
		}
		idx := i
		if id, present, err := optField[[]byte](bi, TagUniqueBatchItemID, TypeByteString); err != nil {
			return nil, err
		} else if present && len(reqs) > 1 {
			if len(id) != 2 || int(id[0])<<8|int(id[1]) >= len(reqs) {
				return nil, fmt.Errorf("%w: unknown Unique Batch Item ID %x", ErrUnexpectedResponse, id)
			}
			idx = int(id[0])<<8 | int(id[1])
		}
		if seen[idx] {
			return nil, fmt.Errorf("%w: batch item %d answered twice", ErrUnexpectedResponse, idx)
		}
		seen[idx] = true
		r, err := decodeBatchItem(server, bi, reqs[idx].Operation)
		if err != nil {
			return nil, err
		}
		// A message-level failure (e.g. Invalid Message) comes back as one
		// item without an operation; it applies to the whole batch.
		if len(items) == 1 && len(reqs) > 1 && r.Err != nil {
			for j := range out {
				out[j] = Response{Operation: reqs[j].Operation, Err: r.Err}
			}
			return out, nil
		}
		out[idx] = r
	}
	for i := range out {
		if !seen[i] {
			out[i] = Response{Operation: reqs[i].Operation, Err: &ResultError{
				Server: server, Operation: reqs[i].Operation, Status: StatusOperationFailed,
				Message: "not executed: the batch stopped at an earlier failure",
			}}
		}
	}
	return out, nil
}

func decodeBatchItem(server string, bi Item, want Operation) (Response, error) {
	r := Response{Operation: want}
	op, hasOp, err := optField[uint32](bi, TagOperation, TypeEnumeration)
	if err != nil {
		return r, err
	}
	status, err := field[uint32](bi, TagResultStatus, TypeEnumeration)
	if err != nil {
		return r, err
	}
	if ResultStatus(status) != StatusSuccess {
		re := &ResultError{Server: server, Operation: want, Status: ResultStatus(status)}
		if reason, _, err := optField[uint32](bi, TagResultReason, TypeEnumeration); err == nil {
			re.Reason = ResultReason(reason)
		}
		if m, _, err := optField[string](bi, TagResultMessage, TypeTextString); err == nil {
			re.Message = sanitize(m)
		}
		r.Err = re
		return r, nil
	}
	if !hasOp || Operation(op) != want {
		return r, fmt.Errorf("%w: answer to %v is for operation %v", ErrUnexpectedResponse, want, Operation(op))
	}
	if p, ok := bi.Child(TagResponsePayload); ok {
		if p.Type != TypeStructure {
			return r, fmt.Errorf("%w: Response Payload is a %v", ErrUnexpectedResponse, p.Type)
		}
		r.Payload = p
	} else {
		r.Payload = Struct(TagResponsePayload)
	}
	return r, nil
}

// sanitize bounds a server-supplied message and strips control characters,
// so a hostile server cannot forge log lines or flood a terminal.
func sanitize(s string) string {
	const maxLen = 512
	out := make([]rune, 0, min(len(s), maxLen))
	for _, r := range s {
		if len(out) == maxLen {
			out = append(out, '…')
			break
		}
		if r < 0x20 || r == 0x7f {
			r = ' '
		}
		out = append(out, r)
	}
	return string(out)
}
