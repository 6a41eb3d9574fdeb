package volume

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"

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
		const size = 32 << 10
		v := blockdev.ByteGranular(newTestVolume(t, Config{SectorSize: ss, Size: size, AllowDiscards: true}))
		ctx := context.Background()
		model := make([]byte, size)
		if err := v.Zero(ctx, 0, size, 0); err != nil {
			t.Fatal(err)
		}
		trimmed := make([]bool, size) // bytes whose contents a trim made unspecified
		for len(ops) >= 5 {
			kind := ops[0] % 5
			off := int64(binary.LittleEndian.Uint16(ops[1:])) % (size + 1024)
			n := int64(binary.LittleEndian.Uint16(ops[3:])) % (size / 2)
			ops = ops[5:]
			inside := off+n <= size
			var err error
			switch kind {
			case 0:
				got := make([]byte, n)
				err = v.ReadAt(ctx, got, off)
				if inside && err == nil {
					for i := range got {
						if !trimmed[off+int64(i)] && got[i] != model[off+int64(i)] {
							t.Fatalf("read %d+%d: byte %d differs", off, n, i)
						}
					}
				}
			case 1:
				p := bytes.Repeat([]byte{byte(off), byte(n)}, int(n/2+1))[:n]
				if err = v.WriteAt(ctx, bytes.Clone(p), off, n%2 == 0); err == nil {
					copy(model[off:], p)
					clear(trimmed[off : off+n])
				}
			case 2:
				if err = v.Zero(ctx, off, n, blockdev.ZeroFlags(n%2)); err == nil {
					clear(model[off : off+n])
					clear(trimmed[off : off+n])
				}
			case 3:
				if err = v.Trim(ctx, off, n, false); err == nil {
					for i := off; i < off+n; i++ {
						trimmed[i] = true
					}
				}
			case 4:
				err = v.Flush(ctx)
				inside = true
			}
			if inside != (err == nil) {
				t.Fatalf("op %d at %d+%d: err %v, inside %v", kind, off, n, err, inside)
			}
		}
	})
}
