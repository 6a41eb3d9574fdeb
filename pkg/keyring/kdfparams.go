package keyring

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// KDFParams choose the KDF of a new keyslot. Zero fields take cryptsetup's
// defaults; Iterations zero means "benchmark": the cost is tuned so that
// one unlock takes about IterTime on this machine.
type KDFParams struct {
	Type       string        // "argon2id" (default), "argon2i" or "pbkdf2"
	Hash       string        // pbkdf2 hash: "sha256" (default) or "sha512"
	Iterations int           // pbkdf2 iterations or argon2 time cost; 0 = benchmark
	MemoryKiB  int           // argon2 memory; 0 = 1 GiB capped at half the RAM
	Parallel   int           // argon2 threads; 0 = 4 capped at the CPU count
	IterTime   time.Duration // benchmark target; 0 = 2 s
}

// Defaults and bounds, as cryptsetup's.
const (
	defaultIterTime       = 2 * time.Second
	defaultArgonMemoryKiB = 1 << 20
	minArgonMemoryKiB     = 32
	defaultArgonParallel  = 4
	minArgonTime          = 4
	minPBKDF2Iterations   = 1000
	kdfSaltLen            = 32
)

// resolve turns params into a concrete KDF with a fresh salt, benchmarking
// when no iteration count was forced. keyLen is the derived key's length.
func (p KDFParams) resolve(ctx context.Context, keyLen int) (KDF, error) {
	k := KDF{Type: p.Type, Hash: p.Hash, Iterations: p.Iterations, MemoryKiB: p.MemoryKiB, Parallel: p.Parallel}
	if k.Type == "" {
		k.Type = "argon2id"
	}
	k.Salt = make([]byte, kdfSaltLen)
	if _, err := rand.Read(k.Salt); err != nil {
		return KDF{}, err
	}
	iterTime := p.IterTime
	if iterTime <= 0 {
		iterTime = defaultIterTime
	}
	switch k.Type {
	case "pbkdf2":
		if k.Hash == "" {
			k.Hash = "sha256"
		}
		k.MemoryKiB, k.Parallel = 0, 0
		if k.Iterations != 0 && k.Iterations < minPBKDF2Iterations {
			return KDF{}, fmt.Errorf("pbkdf2 iterations %d: the minimum is %d", k.Iterations, minPBKDF2Iterations)
		}
		if k.Iterations == 0 {
			n, err := benchPBKDF2(ctx, k.Hash, keyLen, iterTime)
			if err != nil {
				return KDF{}, err
			}
			k.Iterations = n
		}
	case "argon2i", "argon2id":
		k.Hash = ""
		if k.Parallel == 0 {
			k.Parallel = min(defaultArgonParallel, runtime.NumCPU())
		}
		if k.MemoryKiB == 0 {
			k.MemoryKiB = min(defaultArgonMemoryKiB, halfRAMKiB())
		}
		if k.Iterations != 0 && k.Iterations < minArgonTime {
			return KDF{}, fmt.Errorf("%s time cost %d: the minimum is %d", k.Type, k.Iterations, minArgonTime)
		}
		if k.Parallel > maxArgonParallel {
			return KDF{}, fmt.Errorf("%s parallelism %d: the maximum is %d", k.Type, k.Parallel, maxArgonParallel)
		}
		// Never more than half the RAM, as cryptsetup: an unlock must not
		// push the machine into swap or the OOM killer.
		k.MemoryKiB = min(k.MemoryKiB, max(halfRAMKiB(), minArgonMemoryKiB))
		k.MemoryKiB = max(k.MemoryKiB, minArgonMemoryKiB, 8*k.Parallel)
		if k.Iterations == 0 {
			if err := benchArgon2(ctx, &k, keyLen, iterTime); err != nil {
				return KDF{}, err
			}
		}
	default:
		return KDF{}, fmt.Errorf("%w: KDF %q (want argon2id, argon2i or pbkdf2)", ErrUnsupported, k.Type)
	}
	if err := k.validate(); err != nil {
		return KDF{}, fmt.Errorf("KDF parameters: %w", err)
	}
	return k, nil
}

func halfRAMKiB() int {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return defaultArgonMemoryKiB
	}
	half := uint64(si.Totalram) * uint64(si.Unit) / 2 / 1024
	return int(min(half, maxArgonMemoryKiB))
}

// benchPBKDF2 measures PBKDF2 and returns the iterations that take about
// target, at least 1000.
func benchPBKDF2(ctx context.Context, hash string, keyLen int, target time.Duration) (int, error) {
	h, err := hashByName(hash)
	if err != nil {
		return 0, err
	}
	pass, salt, out := []byte("encblk benchmark"), make([]byte, kdfSaltLen), make([]byte, keyLen)
	for n := 1000; ; n *= 2 {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		start := time.Now()
		pbkdf2Key(out, pass, salt, n, h)
		if d := time.Since(start); d >= 100*time.Millisecond || n >= 1<<30 {
			it := int64(float64(n) * float64(target) / float64(d))
			return int(max(min(it, maxIterations), minPBKDF2Iterations)), nil
		}
	}
}

// benchArgon2 measures one pass of argon2 over a probe memory (at most 64
// MiB, so benchmarking stays cheap) and extrapolates linearly — argon2's
// cost is memory × passes — to the time cost that takes about target at
// k's memory (at least 4 passes). When even 4 passes at that memory take
// too long it lowers the memory instead, as cryptsetup does.
func benchArgon2(ctx context.Context, k *KDF, keyLen int, target time.Duration) error {
	const probeMaxKiB = 64 << 10
	probe := *k
	probe.Iterations = 1
	probe.MemoryKiB = min(k.MemoryKiB, probeMaxKiB)
	start := time.Now()
	b, err := probe.derive(ctx, []byte("encblk benchmark"), keyLen)
	if err != nil {
		return err
	}
	b.Destroy()
	perKiBPass := float64(max(time.Since(start), time.Microsecond)) / float64(probe.MemoryKiB)
	onePass := perKiBPass * float64(k.MemoryKiB)
	if t := int(float64(target) / onePass); t >= minArgonTime {
		k.Iterations = min(t, maxIterations)
		return nil
	}
	k.Iterations = minArgonTime
	m := int(float64(target) / (minArgonTime * perKiBPass))
	k.MemoryKiB = max(min(m, k.MemoryKiB), minArgonMemoryKiB, 8*k.Parallel)
	return nil
}

// digestIterations picks the PBKDF2 iterations of a new volume-key digest:
// about 125 ms like cryptsetup, or the minimum when the keyslot KDF was
// forced (tests, scripted formats).
func digestIterations(ctx context.Context, forced bool) (int, error) {
	if forced {
		return minPBKDF2Iterations, nil
	}
	return benchPBKDF2(ctx, "sha256", sha256.Size, 125*time.Millisecond)
}
