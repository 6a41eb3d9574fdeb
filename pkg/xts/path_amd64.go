package xts

import (
	"encoding/binary"

	"golang.org/x/sys/cpu"
)

// paths lists the implementations this CPU runs, fastest first; the last
// is always pathGeneric. It is not changed after init.
var paths = supportedPaths()

func supportedPaths() []path {
	var ps []path
	x := &cpu.X86
	if x.HasAES {
		if x.HasAVX512F && x.HasAVX512VL && x.HasAVX512BW && x.HasAVX512VAES && x.HasAVX512VPCLMULQDQ {
			ps = append(ps, pathAVX512)
		}
		if x.HasAVX2 && hasVAES() {
			ps = append(ps, pathAVX2)
		}
		ps = append(ps, pathAESNI)
	}
	return append(ps, pathGeneric)
}

// hasVAES reports the VAES and VPCLMULQDQ CPUID bits (leaf 7, ECX bits 9
// and 10). x/sys/cpu reports them only on CPUs with AVX-512, but their ymm
// forms need only AVX2 (AMD Zen 3, Intel Alder Lake).
func hasVAES() bool {
	if maxLeaf, _, _, _ := cpuid(0, 0); maxLeaf < 7 {
		return false
	}
	_, _, ecx, _ := cpuid(7, 0)
	return ecx&(1<<9) != 0 && ecx&(1<<10) != 0
}

// tweakBatch is how many sectors' tweaks are encrypted in one go before
// their sectors; the kernels may encrypt up to 3 padding entries past n.
const tweakBatch = 32

// cryptAsm runs the assembly path c.path over whole sectors.
func (c *Cipher) cryptAsm(dst, src []byte, sectorSize int, tweak, step uint64, encrypt bool) {
	var tw [tweakBatch][16]byte
	n := len(src) / sectorSize
	for off := 0; n > 0; {
		k := min(n, tweakBatch)
		for i := range k {
			binary.LittleEndian.PutUint64(tw[i][:8], tweak)
			binary.LittleEndian.PutUint64(tw[i][8:], 0)
			tweak += step
		}
		d, s := &dst[off], &src[off]
		switch {
		case c.path == pathAVX512 && encrypt:
			encryptAVX512(c.ks, d, s, &tw[0], k, sectorSize)
		case c.path == pathAVX512:
			decryptAVX512(c.ks, d, s, &tw[0], k, sectorSize)
		case c.path == pathAVX2 && encrypt:
			encryptAVX2(c.ks, d, s, &tw[0], k, sectorSize)
		case c.path == pathAVX2:
			decryptAVX2(c.ks, d, s, &tw[0], k, sectorSize)
		case encrypt:
			encryptAESNI(c.ks, d, s, &tw[0], k, sectorSize)
		default:
			decryptAESNI(c.ks, d, s, &tw[0], k, sectorSize)
		}
		off += k * sectorSize
		n -= k
	}
	// The encrypted tweaks are plaintext/ciphertext pairs of the tweak key.
	clear(tw[:])
}

// The kernels encrypt tweaks[0:n] in place with the tweak key (and up to
// three entries past n; tweaks must have room), then process n sectors of
// sectorSize bytes (a multiple of 512) from src to dst, sector i with
// tweak i. dst and src are equal or do not overlap.

//go:noescape
func encryptAVX512(ks *schedule, dst, src *byte, tweaks *[16]byte, n, sectorSize int)

//go:noescape
func decryptAVX512(ks *schedule, dst, src *byte, tweaks *[16]byte, n, sectorSize int)

//go:noescape
func encryptAVX2(ks *schedule, dst, src *byte, tweaks *[16]byte, n, sectorSize int)

//go:noescape
func decryptAVX2(ks *schedule, dst, src *byte, tweaks *[16]byte, n, sectorSize int)

//go:noescape
func encryptAESNI(ks *schedule, dst, src *byte, tweaks *[16]byte, n, sectorSize int)

//go:noescape
func decryptAESNI(ks *schedule, dst, src *byte, tweaks *[16]byte, n, sectorSize int)

func cpuid(leaf, sub uint32) (a, b, c, d uint32)
