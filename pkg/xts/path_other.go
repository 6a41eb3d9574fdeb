//go:build !amd64

package xts

// paths lists the implementations this CPU runs: without amd64 assembly,
// only the pure-Go one.
var paths = []path{pathGeneric}

// schedule is empty without the assembly paths.
type schedule struct{}

func (c *Cipher) initSchedule([]byte) error { return nil }

func (c *Cipher) cryptAsm(dst, src []byte, sectorSize int, tweak, step uint64, encrypt bool) {
	c.cryptGeneric(dst, src, sectorSize, tweak, step, encrypt)
}

// maxCall mirrors path_amd64.go for the tests; the pure-Go path needs no
// splitting.
const maxCall = 1 << 20
