package keyring

import (
	"context"
	"fmt"
	"math"

	"golang.org/x/crypto/argon2"

	"github.com/encblk/encblk/internal/secmem"
)

// Limits on KDF parameters read from a header, so a hostile header cannot
// ask for unbounded work or memory (cryptsetup's own maxima).
const (
	maxArgonMemoryKiB = 4 << 20 // 4 GiB
	maxArgonParallel  = 255
	maxIterations     = math.MaxUint32
)

// validate checks the parameters of a stored or requested KDF.
func (k *KDF) validate() error {
	switch k.Type {
	case "pbkdf2":
		if _, err := hashByName(k.Hash); err != nil {
			return err
		}
		if k.Iterations < 1 || k.Iterations > maxIterations {
			return fmt.Errorf("%w: pbkdf2 iterations %d", ErrCorrupt, k.Iterations)
		}
	case "argon2i", "argon2id":
		if k.Iterations < 1 || k.Iterations > maxIterations {
			return fmt.Errorf("%w: %s time cost %d", ErrCorrupt, k.Type, k.Iterations)
		}
		if k.MemoryKiB < 8*k.Parallel || k.MemoryKiB > maxArgonMemoryKiB {
			return fmt.Errorf("%w: %s memory %d KiB", ErrCorrupt, k.Type, k.MemoryKiB)
		}
		if k.Parallel < 1 || k.Parallel > maxArgonParallel {
			return fmt.Errorf("%w: %s parallelism %d", ErrCorrupt, k.Type, k.Parallel)
		}
	default:
		return fmt.Errorf("%w: KDF %q", ErrUnsupported, k.Type)
	}
	if len(k.Salt) == 0 || len(k.Salt) > 1024 {
		return fmt.Errorf("%w: KDF salt of %d bytes", ErrCorrupt, len(k.Salt))
	}
	return nil
}

// derive runs the KDF over secret and returns keyLen bytes in protected
// memory. A KDF cannot be interrupted; ctx is checked before it starts.
func (k *KDF) derive(ctx context.Context, secret []byte, keyLen int) (*secmem.Buffer, error) {
	if err := k.validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	switch k.Type {
	case "pbkdf2":
		h, _ := hashByName(k.Hash)
		out, err := secmem.New(keyLen)
		if err != nil {
			return nil, err
		}
		pbkdf2Key(out.Bytes(), secret, k.Salt, k.Iterations, h)
		return out, nil
	case "argon2i":
		return secmem.FromBytes(argon2.Key(secret, k.Salt, uint32(k.Iterations), uint32(k.MemoryKiB), uint8(k.Parallel), uint32(keyLen)))
	default: // argon2id, checked by validate
		return secmem.FromBytes(argon2.IDKey(secret, k.Salt, uint32(k.Iterations), uint32(k.MemoryKiB), uint8(k.Parallel), uint32(keyLen)))
	}
}

// String describes the KDF as luksDump does, without the salt.
func (k KDF) String() string {
	if k.Type == "pbkdf2" {
		return fmt.Sprintf("pbkdf2 (%s, %d iterations)", k.Hash, k.Iterations)
	}
	return fmt.Sprintf("%s (time %d, memory %d KiB, %d threads)", k.Type, k.Iterations, k.MemoryKiB, k.Parallel)
}
