package xts

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/encblk/encblk/internal/secmem"
)

// Measurement is the single-core throughput of AES-XTS for one key size
// and sector size, in MB/s (10^6 bytes per second).
type Measurement struct {
	Implementation string // the code path measured, as Cipher.Implementation
	KeyBits        int    // 256 (AES-128-XTS) or 512 (AES-256-XTS)
	SectorSize     int
	EncryptMBps    float64
	DecryptMBps    float64
}

// Measure times EncryptSectors and DecryptSectors with a random key of
// keyBits bits on one sector of sectorSize bytes per call, the unit
// `openssl speed -evp aes-256-xts -bytes N` uses, so the two compare
// directly. Each direction runs for about d of the calling thread's CPU
// time; like openssl speed, throughput is bytes per CPU second, so other
// load on the machine distorts it less than wall-clock time would.
func Measure(ctx context.Context, keyBits, sectorSize int, d time.Duration) (Measurement, error) {
	if keyBits != 256 && keyBits != 512 {
		return Measurement{}, fmt.Errorf("xts: key size %d bits: %w", keyBits, ErrKeySize)
	}
	key, err := secmem.New(keyBits / 8)
	if err != nil {
		return Measurement{}, fmt.Errorf("xts: %w", err)
	}
	defer key.Destroy()
	rand.Read(key.Bytes())
	c, err := New(key.Bytes())
	if err != nil {
		return Measurement{}, err
	}
	defer c.Close()
	buf := make([]byte, sectorSize)
	m := Measurement{Implementation: c.Implementation(), KeyBits: keyBits, SectorSize: sectorSize}

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if m.EncryptMBps, err = throughput(ctx, c.EncryptSectors, buf, sectorSize, d); err != nil {
		return Measurement{}, err
	}
	if m.DecryptMBps, err = throughput(ctx, c.DecryptSectors, buf, sectorSize, d); err != nil {
		return Measurement{}, err
	}
	return m, nil
}

// throughput calls f on buf in place until d of thread CPU time has
// passed and returns MB/s.
func throughput(ctx context.Context, f func(dst, src []byte, ss int, tw, step uint64) error,
	buf []byte, ss int, d time.Duration) (float64, error) {
	// Warm up (caches, clocks of the vector units) before timing.
	for i := range 1000 {
		if err := f(buf, buf, ss, uint64(i), 1); err != nil {
			return 0, err
		}
	}
	start, err := threadCPUTime()
	if err != nil {
		return 0, err
	}
	var calls int64
	var spent time.Duration
	// Check the clock every few thousand calls: reading it is a system call.
	const batch = 2048
	for spent < d {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		for i := range batch {
			if err := f(buf, buf, ss, uint64(i), 1); err != nil {
				return 0, err
			}
		}
		calls += batch
		now, err := threadCPUTime()
		if err != nil {
			return 0, err
		}
		spent = now - start
	}
	if spent <= 0 {
		return 0, errors.New("xts: CPU clock did not advance")
	}
	return float64(calls) * float64(len(buf)) / spent.Seconds() / 1e6, nil
}
