// Package nbd is a Network Block Device server: the fixed-newstyle
// handshake, option haggling, and the transmission phase of the NBD protocol
// (NetworkBlockDevice/nbd doc/proto.md), serving any Backend.
//
// The package knows nothing about encryption; pkg/volume is one Backend, a
// plain file another.
package nbd
