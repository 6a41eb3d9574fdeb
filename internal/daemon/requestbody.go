package daemon

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/encblk/encblk/internal/secmem"
)

// A KeyRequest's JSON form carries KEK secrets, so both ends keep the
// copies encoding/json and net/http would make to a minimum and wipe the
// ones they own. encoding/json's encoder builds its output in a pooled
// buffer that it reuses without wiping, and its Decoder reads its input
// into a buffer of its own: the client therefore encodes the secrets
// itself, into protected memory, and the server decodes with
// json.Unmarshal, which reads the body in place.

// encodeKeyRequest returns req's JSON form in protected memory (the
// caller destroys it). The secrets never pass through encoding/json:
// the other fields are marshalled on their own, and the secrets, in
// base64 as encoding/json writes a []byte, are written straight into the
// buffer in front of them.
func encodeKeyRequest(req *KeyRequest) (*secmem.Buffer, error) {
	rest := *req
	rest.Secret, rest.NewSecret = nil, nil
	tail, err := json.Marshal(&rest) // an object that always has "volume"
	if err != nil {
		return nil, err
	}
	secrets := []struct {
		name string
		val  []byte
	}{{"secret", req.Secret}, {"new_secret", req.NewSecret}}
	n := len(tail)
	for _, s := range secrets {
		if len(s.val) > 0 {
			n += len(`"":"",`) + len(s.name) + base64.StdEncoding.EncodedLen(len(s.val))
		}
	}
	buf, err := secmem.New(n)
	if err != nil {
		return nil, err
	}
	out := buf.Bytes()
	b := append(out[:0], '{')
	for _, s := range secrets {
		if len(s.val) > 0 {
			b = append(b, '"')
			b = append(b, s.name...)
			b = append(b, `":"`...)
			b = base64.StdEncoding.AppendEncode(b, s.val)
			b = append(b, `",`...)
		}
	}
	b = append(b, tail[1:]...)
	if len(b) != len(out) || &b[0] != &out[0] {
		// append outgrew the buffer: the copy is on the heap.
		secmem.Wipe(b)
		buf.Destroy()
		return nil, errors.New("daemon: encoding a request: size mismatch")
	}
	return buf, nil
}

// errBodyClosed is what a closed secretBody reads.
var errBodyClosed = errors.New("daemon: request body already released")

// secretBody is a request body in protected memory. The HTTP transport
// closes it once it has sent it or given up, and Client.do closes it
// when the exchange is over, whichever comes first: the first Close
// destroys the buffer. Read and Close share a lock, so that the
// transport's writer, which may outlive the exchange, never reads a
// destroyed buffer.
type secretBody struct {
	mu  sync.Mutex
	buf *secmem.Buffer
	off int
}

func (b *secretBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf == nil {
		return 0, errBodyClosed
	}
	data := b.buf.Bytes()
	if b.off >= len(data) {
		return 0, io.EOF
	}
	n := copy(p, data[b.off:])
	b.off += n
	return n, nil
}

// Close destroys the body's buffer.
func (b *secretBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Destroy()
	b.buf = nil
	return nil
}

// readRequestBody reads all of r into one buffer (the caller wipes it),
// starting at size bytes, and wipes each smaller buffer it outgrows, as
// io.ReadAll would not.
func readRequestBody(r io.Reader, size int) ([]byte, error) {
	b := make([]byte, 0, max(size, 512))
	for {
		if len(b) == cap(b) {
			nb := make([]byte, len(b), 2*cap(b))
			copy(nb, b)
			secmem.Wipe(b)
			b = nb
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if errors.Is(err, io.EOF) {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// decodeKeyRequest decodes body into a KeyRequest (the caller wipes it,
// also on failure). Like a json.Decoder with DisallowUnknownFields, it
// rejects members KeyRequest has no field for; unlike one, it copies
// nothing of body but the decoded secrets and the other fields.
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
