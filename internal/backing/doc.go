// Package backing opens the storage under a volume: a regular file or a
// block device. It reads and writes at offsets into caller buffers, makes
// writes durable (fdatasync), discards ranges (punched holes on files,
// BLKDISCARD on devices), reports the size and logical block size, and
// holds an exclusive flock so that two servers never share one backing.
//
// Plain is an unencrypted blockdev.Device over a File, for benchmarks and
// tests (`encblk serve --plain`).
package backing
