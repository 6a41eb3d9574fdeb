// Package volume is the encrypted block device: it maps plaintext offsets
// to AES-XTS sectors of a LUKS2 data segment in a backing file or block
// device, and implements blockdev.Device. It knows no frontend: pkg/nbd
// and pkg/ublk serve it.
//
// The package knows the data segment's geometry (Config: data offset,
// size, sector size, iv_tweak, the allow-discards flag) and the data key
// (DEK), but nothing of the LUKS2 header or of key-encryption keys: the
// caller opens the header with pkg/keyring and hands over what it learnt.
//
// # Data path
//
// A sector at byte offset X of the data segment is encrypted with the
// aes-xts-plain64 tweak X/512 + iv_tweak, counted in 512-byte units
// whatever the sector size, as LUKS2 and dm-crypt do.
//
// Requests are whole sectors (Info's LogicalBlockSize is the sector
// size); others fail with EINVAL. ublk sends whole sectors; for NBD
// clients, which may send any byte range, the server wraps the volume in
// blockdev.ByteGranular, which reads, merges and rewrites edge sectors
// under a range lock, as nbdkit's blocksize filter does for its plugins.
// Reads go straight into the caller's buffer and are decrypted in place;
// writes are encrypted in place too, so the caller's buffer holds
// ciphertext afterwards (blockdev.Device allows it; WRITE_ZEROES's static
// zeros are encrypted into a pooled buffer). Large requests are encrypted
// and decrypted on several cores.
//
// Zero writes encrypted zeros: a hole in the backing would decrypt
// to garbage. Trim reaches the backing only when the volume allows
// discards (the LUKS2 allow-discards flag), which, as with dm-crypt, leaks
// which sectors are unused; otherwise it is accepted and ignored. FUA and
// Flush fdatasync the backing.
//
// # Lock state
//
// A Volume is unlocked (it holds the cipher keyed with the DEK) or locked
// (the key is wiped). Lock waits for in-flight requests, flushes the
// backing and wipes the key. While locked, new requests wait for Unlock up
// to Config.LockTimeout (LockWait) or fail at once (LockFail), with an
// error wrapping ErrLocked and EIO.
package volume
