package daemon

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
)

// decodeKeyRequest decodes body into a KeyRequest. Like a json.Decoder
// with DisallowUnknownFields, it rejects members KeyRequest has no field
// for, "secret" and "new_secret" included: secrets travel in the
// connection's preamble, and one sent in a body (which net/http buffers
// and never wipes) is refused rather than used.
func decodeKeyRequest(body []byte) (*KeyRequest, error) {
	req := &KeyRequest{}
	if err := json.Unmarshal(body, req); err != nil {
		return req, err
	}
	var members map[string]skipped
	if err := json.Unmarshal(body, &members); err != nil {
		return req, err
	}
	fields := reflect.VisibleFields(reflect.TypeFor[KeyRequest]())
	for name := range members {
		// encoding/json matches member names to fields case-insensitively.
		if !slices.ContainsFunc(fields, func(f reflect.StructField) bool {
			tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			return strings.EqualFold(tag, name)
		}) {
			return req, errors.New("unknown member in the request")
		}
	}
	return req, nil
}

// skipped is a JSON value that decodes to nothing, without a copy.
type skipped struct{}

func (*skipped) UnmarshalJSON([]byte) error { return nil }
