package xts

import (
	"fmt"
	"runtime"
	"unsafe"

	"github.com/encblk/encblk/internal/secmem"
)

// schedule holds the expanded AES keys of the assembly paths. It lives in
// protected memory (internal/secmem: locked in RAM, left out of core dumps)
// and Close wipes it.
//
// Round keys are right-aligned: with r rounds (10 for AES-128, 14 for
// AES-256) round key i sits at index 14-r+i, so every path finds the last
// round key at index 14 and needs one branch on the key size. Byte offsets
// are mirrored in schedule_amd64.h.
type schedule struct {
	enc    [15][16]byte // offset 0: data key, encryption
	dec    [15][16]byte // offset 240: data key, equivalent inverse cipher (AESIMC)
	tweak  [15][16]byte // offset 480: tweak key, encryption
	enc0   [4][16]byte  // offset 720: round key 0 of enc, four times (one zmm)
	dec0   [4][16]byte  // offset 784: round key 0 of dec, four times
	tweak0 [4][16]byte  // offset 848: round key 0 of tweak, four times
	rounds int          // offset 912: 10 or 14
}

// initSchedule expands key (data key || tweak key) into protected memory.
func (c *Cipher) initSchedule(key []byte) error {
	mem, err := secmem.New(int(unsafe.Sizeof(schedule{})))
	if err != nil {
		return fmt.Errorf("xts: key schedule: %w", err)
	}
	// The mapping is page-aligned and holds no Go pointers.
	ks := (*schedule)(unsafe.Pointer(&mem.Bytes()[0]))
	half := len(key) / 2
	ks.rounds = 10
	if half == 32 {
		ks.rounds = 14
	}
	expandKeyAESNI(ks.rounds, &key[0], &ks.enc, &ks.dec)
	expandKeyAESNI(ks.rounds, &key[half], &ks.tweak, nil)
	first := 14 - ks.rounds
	for i := range ks.enc0 {
		ks.enc0[i] = ks.enc[first]
		ks.dec0[i] = ks.dec[first]
		ks.tweak0[i] = ks.tweak[first]
	}
	c.ks, c.mem = ks, mem
	// A Cipher dropped without Close still gives its locked page back.
	runtime.AddCleanup(c, func(b *secmem.Buffer) { b.Destroy() }, mem)
	return nil
}

// expandKeyAESNI writes the right-aligned round keys of key (16 bytes if
// rounds is 10, 32 if 14) into enc and, unless dec is nil, the decryption
// round keys into dec.
//
//go:noescape
func expandKeyAESNI(rounds int, key *byte, enc, dec *[15][16]byte)
