package volume

import (
	"context"
	"fmt"

	"github.com/encblk/encblk/pkg/blockdev"
)

// Prefetcher is implemented by backings that can start reading a range
// into their cache (internal/backing.File: POSIX_FADV_WILLNEED).
type Prefetcher interface {
	Prefetch(off, length int64) error
}

var _ blockdev.Prefetcher = (*Volume)(nil)

// Prefetch asks the backing to read the ciphertext of [off, off+length)
// ahead (NBD_CMD_CACHE), so later reads of it only decrypt. It needs no
// key and works while the volume is locked. Over a backing that is not a
// Prefetcher it does nothing: a prefetch is advice.
func (v *Volume) Prefetch(_ context.Context, off, length int64) error {
	if err := v.check(off, length); err != nil {
		return err
	}
	p, ok := v.b.(Prefetcher)
	if !ok || length == 0 {
		return nil
	}
	if err := p.Prefetch(v.cfg.DataOffset+off, length); err != nil {
		return fmt.Errorf("volume: %w", errnoOrEIO(err))
	}
	return nil
}
