//go:build !race

package nbd_test

// nbdcopySize is the nbdcopy round-trip size: the 256 MiB.
const nbdcopySize = 256 << 20
