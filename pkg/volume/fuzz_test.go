package volume

import (
	"testing"

	"github.com/encblk/encblk/internal/blockdevtest"
	"github.com/encblk/encblk/pkg/blockdev"
)

// FuzzRequests drives a volume through blockdev.ByteGranular, as the NBD
// server does, with arbitrary requests (read, write, zero, trim, flush at
// any offset and length, valid or not) and checks it against a plain byte
// slice: reads return what was last written, requests outside the volume
// fail, nothing panics.
func FuzzRequests(f *testing.F) {
	f.Add([]byte{0, 1, 0, 0, 0, 16, 0}, false)
	f.Add([]byte{1, 0xff, 0x0f, 0x01, 0x02, 3, 1, 2, 0, 1, 3}, true)
	f.Add([]byte{2, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0x10, 0x00}, false)
	f.Fuzz(func(t *testing.T, ops []byte, big bool) {
		ss := 512
		if big {
			ss = 4096
		}
		v := newTestVolume(t, Config{SectorSize: ss, Size: 32 << 10, AllowDiscards: true})
		blockdevtest.RunOps(t, blockdev.ByteGranular(v), ops, int64(ss))
	})
}
