package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// TestDumpSegmentsLikeCryptsetup: `encblk dump` prints the data segments
// as `cryptsetup luksDump` does, line for line, including a segment's
// integrity line (on a header edited to carry an integrity object, which
// only a dm-integrity kernel could format).
func TestDumpSegmentsLikeCryptsetup(t *testing.T) {
	require(t, cryptsetupT)
	e := newEnv(t)
	key := e.keyFile("key")
	disk := e.format("disk.img", 20<<20, key)
	setSegmentJSON(t, disk, "integrity", map[string]string{
		"type": "hmac(sha256)", "journal_encryption": "none", "journal_integrity": "none"})
	section := func(dump string) string {
		i, j := strings.Index(dump, "Data segments:"), strings.Index(dump, "Keyslots:")
		if i < 0 || j < i {
			t.Fatalf("no data segments in:\n%s", dump)
		}
		return dump[i:j]
	}
	ours := section(e.must("dump", disk))
	theirs := section(tool(t, "cryptsetup", "luksDump", disk))
	if ours != theirs {
		t.Errorf("data segments differ:\nencblk dump:\n%s\ncryptsetup luksDump:\n%s", ours, theirs)
	}
	if !strings.Contains(ours, "\tintegrity: hmac(sha256)\n") {
		t.Errorf("no integrity line:\n%s", ours)
	}
}

// setSegmentJSON sets field of data segment 0 in both copies of a LUKS2
// header and seals them again (checksum over the binary header, its
// checksum field zeroed, and the JSON area; LUKS2 on-disk format, 2.1).
func setSegmentJSON(t *testing.T, path, field string, value any) {
	t.Helper()
	img, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	hdrSize := int(binary.BigEndian.Uint64(img[8:16]))
	for _, off := range []int{0, hdrSize} {
		area := img[off+4096 : off+hdrSize]
		var meta map[string]any
		if err := json.Unmarshal(bytes.TrimRight(area, "\x00"), &meta); err != nil {
			t.Fatal(err)
		}
		meta["segments"].(map[string]any)["0"].(map[string]any)[field] = value
		text, err := json.Marshal(meta)
		if err != nil {
			t.Fatal(err)
		}
		clear(area)
		copy(area, text)
		csum := img[off+448 : off+448+64]
		clear(csum)
		h := sha256.New()
		h.Write(img[off : off+hdrSize])
		copy(csum, h.Sum(nil))
	}
	if err := os.WriteFile(path, img, 0o600); err != nil {
		t.Fatal(err)
	}
}
