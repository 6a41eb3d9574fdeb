package testutil

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// VolumeKey extracts the volume key from `cryptsetup luksDump
// --dump-volume-key` output (or encblk dump's): the hex bytes after "MK
// dump:", up to the first field that is not one hex byte. It fails tb if
// there is none.
func VolumeKey(tb testing.TB, dump string) []byte {
	tb.Helper()
	key, err := ParseVolumeKey(dump)
	if err != nil {
		tb.Fatalf("%v in:\n%s", err, dump)
	}
	return key
}

// ParseVolumeKey is VolumeKey for callers without a testing.TB (testscript
// commands).
func ParseVolumeKey(dump string) ([]byte, error) {
	i := strings.Index(dump, "MK dump:")
	if i < 0 {
		return nil, errors.New("no MK dump")
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
		return nil, errors.New("MK dump without key bytes")
	}
	return key, nil
}
