package xts

// path names one implementation of the cipher. Every Cipher uses the fastest
// path the CPU supports; tests force each supported path in turn.
type path int

const (
	pathGeneric path = iota // pure Go, crypto/aes one block at a time
	pathAESNI               // AES-NI on xmm registers, 8 blocks in flight
	pathAVX2                // VAES + VPCLMULQDQ on ymm registers
	pathAVX512              // VAES + VPCLMULQDQ + AVX-512 on zmm registers
)

func (p path) String() string {
	switch p {
	case pathAESNI:
		return "aesni"
	case pathAVX2:
		return "vaes-avx2"
	case pathAVX512:
		return "vaes-avx512"
	}
	return "generic"
}
