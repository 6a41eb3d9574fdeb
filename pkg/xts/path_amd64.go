package xts

import (
	"math/bits"
	"runtime"

	"golang.org/x/sys/cpu"
)

// paths lists the implementations this CPU runs, fastest first; the last
// is always pathGeneric. It is not changed after init.
var paths = supportedPaths()

func supportedPaths() []path {
	var ps []path
	x := &cpu.X86
	if x.HasAES && x.HasPCLMULQDQ {
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

// maxCall bounds the bytes one assembly call processes: the runtime cannot
// preempt assembly, so a huge request is split into calls of about 50 µs.
const maxCall = 1 << 20

// cryptAsm runs the assembly path c.path over whole sectors.
func (c *Cipher) cryptAsm(dst, src []byte, sectorSize int, tweak, step uint64, encrypt bool) {
	shift := bits.TrailingZeros(uint(sectorSize))
	for len(src) > 0 {
		m := min(len(src), maxCall)
		n := m >> shift
		d, s := &dst[0], &src[0]
		switch {
		case c.path == pathAVX512 && encrypt:
			encryptAVX512(c.ks, d, s, n, sectorSize, tweak, step)
		case c.path == pathAVX512:
			decryptAVX512(c.ks, d, s, n, sectorSize, tweak, step)
		case c.path == pathAVX2 && encrypt:
			encryptAVX2(c.ks, d, s, n, sectorSize, tweak, step)
		case c.path == pathAVX2:
			decryptAVX2(c.ks, d, s, n, sectorSize, tweak, step)
		case encrypt:
			encryptAESNI(c.ks, d, s, n, sectorSize, tweak, step)
		default:
			decryptAESNI(c.ks, d, s, n, sectorSize, tweak, step)
		}
		dst, src = dst[m:], src[m:]
		tweak += uint64(n) * step
	}
	// The schedule is not Go memory: keep c, whose cleanup unmaps it,
	// reachable until the assembly is done with it.
	runtime.KeepAlive(c)
}

// The kernels process n > 0 sectors of sectorSize bytes (a multiple of
// 512) from src to dst, sector i with tweak tweak+i*step (mod 2^64). dst
// and src are equal or do not overlap. They work in batches of up to 32
// sectors: write the batch's tweaks to their frame, encrypt them together
// with the tweak key, then run the sectors; the frame is wiped on return.

//go:noescape
func encryptAVX512(ks *schedule, dst, src *byte, n, sectorSize int, tweak, step uint64)

//go:noescape
func decryptAVX512(ks *schedule, dst, src *byte, n, sectorSize int, tweak, step uint64)

//go:noescape
func encryptAVX2(ks *schedule, dst, src *byte, n, sectorSize int, tweak, step uint64)

//go:noescape
func decryptAVX2(ks *schedule, dst, src *byte, n, sectorSize int, tweak, step uint64)

//go:noescape
func encryptAESNI(ks *schedule, dst, src *byte, n, sectorSize int, tweak, step uint64)

//go:noescape
func decryptAESNI(ks *schedule, dst, src *byte, n, sectorSize int, tweak, step uint64)

func cpuid(leaf, sub uint32) (a, b, c, d uint32)
