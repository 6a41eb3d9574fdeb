package testutil

import (
	"encoding/hex"
	"strings"
	"testing"
)

// VolumeKey extracts the volume key from `cryptsetup luksDump
// --dump-volume-key` output: the hex bytes after "MK dump:", up to the
// first field that is not one hex byte. It fails tb if there is none.
func VolumeKey(tb testing.TB, dump string) []byte {
	tb.Helper()
	i := strings.Index(dump, "MK dump:")
	if i < 0 {
		tb.Fatalf("no MK dump in cryptsetup output:\n%s", dump)
	}
	var key []byte
	for _, f := range strings.Fields(dump[i+len("MK dump:"):]) {
		b, err := hex.DecodeString(f)
		if err != nil || len(b) != 1 {
			break
		}
		key = append(key, b...)
	}
	if len(key) == 0 {
		tb.Fatalf("MK dump without key bytes:\n%s", dump)
	}
	return key
}
