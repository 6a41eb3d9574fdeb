package keyring

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

// memDevice is a header device in memory.
type memDevice struct{ b []byte }

func (m *memDevice) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m.b)) {
		return 0, errTruncated
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, errTruncated
	}
	return n, nil
}
func (m *memDevice) WriteAt(p []byte, off int64) (int, error) { return 0, errors.New("read-only") }
func (m *memDevice) Sync() error                              { return nil }

// seedHeader formats a small volume and returns its first n bytes.
func seedHeader(f *testing.F, opts *FormatOptions, n int) []byte {
	path := newBacking(f, 17<<20)
	formatPath(f, path, passphrase(f, "seed"), opts)
	b, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	return b[:n]
}

// FuzzBinaryHeader feeds arbitrary bytes to the header reader as a whole
// device (binary headers, secondary search, LUKS1): it must return an
// error carrying a sentinel or a keyring, never panic.
func FuzzBinaryHeader(f *testing.F) {
	f.Add(seedHeader(f, &FormatOptions{KDF: fastKDF}, binHeaderSize))
	f.Add([]byte("LUKS\xba\xbe\x00\x01aes"))
	f.Add([]byte("SKUL\xba\xbe\x00\x02"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) >= binHeaderSize {
			parseBinHeader(data, false, 0)
			parseBinHeader(data, true, minHdrSize)
		}
		openAndInspect(t, data)
	})
}

// FuzzOpenHeader seals arbitrary JSON text into two header copies with
// valid checksums, so that mutations reach the metadata validation and
// the accessors through the whole open path.
func FuzzOpenHeader(f *testing.F) {
	hdr := seedHeader(f, &FormatOptions{KDF: fastKDF, AllowDiscards: true}, minHdrSize)
	text, err := extractJSON(hdr[binHeaderSize:])
	if err != nil {
		f.Fatal(err)
	}
	f.Add(bytes.Clone(text))
	f.Fuzz(func(t *testing.T, text []byte) {
		if len(text) >= minHdrSize-binHeaderSize {
			return
		}
		dev := sealHeader(t, text)
		openAndInspect(t, dev)
	})
}

func openAndInspect(t *testing.T, data []byte) {
	k, err := openDevice(&memDevice{b: data}, true)
	if err != nil {
		if !errors.Is(err, ErrNotLUKS) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrIO) {
			t.Fatalf("error without a sentinel: %v", err)
		}
		return
	}
	k.Keyslots()
	k.Segments()
	k.Tokens()
	k.DataSegment()
	k.KeyBits()
	k.HeaderStatus()
	k.HeaderAreaSize()
	k.MetadataJSON()
}

// FuzzMetadataJSON feeds arbitrary JSON to the metadata parser; whatever
// it accepts must survive a marshal/parse round trip unchanged in meaning.
func FuzzMetadataJSON(f *testing.F) {
	hdr := seedHeader(f, &FormatOptions{KDF: fastKDF, AllowDiscards: true}, 16<<10)
	text, err := extractJSON(hdr[binHeaderSize:])
	if err != nil {
		f.Fatal(err)
	}
	f.Add(bytes.Clone(text))
	f.Add([]byte(`{"keyslots":{},"tokens":{"0":{"type":"x","keyslots":[]}},"segments":{},"digests":{},"config":{"json_size":"12288","keyslots_size":"0"}}`))
	f.Add([]byte(`{"keyslots":{"01":{}}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, text []byte) {
		m, err := parseMetadata(text, 16<<10)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error without ErrCorrupt: %v", err)
			}
			return
		}
		out, err := m.marshal()
		if err != nil {
			t.Fatal(err)
		}
		m2, err := parseMetadata(out, 16<<10)
		if err != nil {
			t.Fatalf("re-encoded metadata does not parse: %v\n%s", err, out)
		}
		if len(m2.Keyslots) != len(m.Keyslots) || len(m2.Tokens) != len(m.Tokens) || len(m2.Segments) != len(m.Segments) {
			t.Fatal("round trip changed the metadata")
		}
	})
}
