package nbd

import (
	"strings"
	"testing"

	"github.com/encblk/encblk/pkg/blockdev"
)

// TestNegotiateLimits: the block-size constraints default to the device's
// geometry, an export's own must suit the device, and Cache needs a
// device that prefetches.
func TestNegotiateLimits(t *testing.T) {
	t.Parallel()
	dev := func(i blockdev.Info) *memBackend { return &memBackend{data: make([]byte, 1<<20), info: i} }
	for _, c := range []struct {
		name          string
		x             Export
		min, pref, mx uint32
		err           string
	}{
		{"byte device", Export{Device: dev(blockdev.Info{})}, 1, 4096, 32 << 20, ""},
		{"sector device", Export{Device: dev(blockdev.Info{LogicalBlockSize: 4096})}, 4096, 4096, 32 << 20, ""},
		{"physical block", Export{Device: dev(blockdev.Info{LogicalBlockSize: 512, PhysicalBlockSize: 64 << 10})}, 512, 64 << 10, 32 << 20, ""},
		{"max transfer", Export{Device: dev(blockdev.Info{LogicalBlockSize: 512, MaxTransfer: 1<<20 + 100})}, 512, 4096, 1 << 20, ""},
		{"export's own", Export{Device: dev(blockdev.Info{}), MinBlock: 512, PreferredBlock: 8192, MaxBlock: 1 << 20}, 512, 8192, 1 << 20, ""},
		{"no device", Export{}, 0, 0, 0, "no device"},
		{"minimum below the device's", Export{Device: dev(blockdev.Info{LogicalBlockSize: 4096}), MinBlock: 512}, 0, 0, 0, "not a multiple of the device's logical block size"},
		{"minimum not a power of two", Export{Device: dev(blockdev.Info{}), MinBlock: 3}, 0, 0, 0, "not a power of two"},
		{"cache without prefetch", Export{Device: onlyDevice{dev(blockdev.Info{})}, Cache: true}, 0, 0, 0, "cannot prefetch"},
	} {
		e, err := negotiate("x", c.x)
		switch {
		case c.err != "":
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: %v, want an error containing %q", c.name, err, c.err)
			}
		case err != nil:
			t.Errorf("%s: %v", c.name, err)
		case e.minBlock != c.min || e.prefBlock != c.pref || e.maxBlock != c.mx:
			t.Errorf("%s: limits %d/%d/%d, want %d/%d/%d", c.name, e.minBlock, e.prefBlock, e.maxBlock, c.min, c.pref, c.mx)
		}
	}
	// The flags follow the device's capabilities and the export's facts.
	e, err := negotiate("x", Export{Device: dev(blockdev.Info{CanFlush: true, CanTrim: true}), MultiConn: true, Cache: true})
	if err != nil {
		t.Fatal(err)
	}
	want := uint16(flagHasFlags | flagSendFlush | flagSendTrim | flagCanMultiConn | flagSendCache)
	if got := e.flags(false); got != want {
		t.Errorf("flags %#x, want %#x", got, want)
	}
}

// onlyDevice hides every method but blockdev.Device's.
type onlyDevice struct{ blockdev.Device }
