package volume

import (
	"fmt"
	"runtime"
	"sync"
	"syscall"

	"github.com/encblk/encblk/pkg/xts"
)

// parallelChunk is the smallest share of a request worth handing to
// another core: below it, starting a goroutine costs more than it saves.
const parallelChunk = 128 << 10

// crypt encrypts (or decrypts) src into dst, whole sectors whose first
// byte is at plaintext offset off, one xts call per core's share.
func (v *Volume) crypt(c *xts.Cipher, dst, src []byte, off int64, encrypt bool) error {
	n := min(runtime.GOMAXPROCS(0), len(src)/parallelChunk)
	if n <= 1 {
		return v.cryptRun(c, dst, src, off, encrypt)
	}
	// Shares are whole sectors; the last one takes the remainder.
	share := len(src) / n / int(v.ss) * int(v.ss)
	var (
		wg   sync.WaitGroup
		errs = make([]error, n)
	)
	for i := 1; i < n; i++ {
		lo, hi := i*share, (i+1)*share
		if i == n-1 {
			hi = len(src)
		}
		wg.Go(func() {
			errs[i] = v.cryptRun(c, dst[lo:hi], src[lo:hi], off+int64(lo), encrypt)
		})
	}
	errs[0] = v.cryptRun(c, dst[:share], src[:share], off, encrypt)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// cryptRun is one xts call: the tweak of the sector at plaintext offset
// off is off/512 + iv_tweak, stepping by sectorSize/512.
func (v *Volume) cryptRun(c *xts.Cipher, dst, src []byte, off int64, encrypt bool) error {
	tweak := uint64(off)/512 + v.cfg.IVTweak
	var err error
	if encrypt {
		err = c.EncryptSectors(dst, src, int(v.ss), tweak, v.step)
	} else {
		err = c.DecryptSectors(dst, src, int(v.ss), tweak, v.step)
	}
	if err != nil {
		return fmt.Errorf("volume: %w: %w", err, syscall.EIO)
	}
	return nil
}
