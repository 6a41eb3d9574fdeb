// Package sed talks to self-encrypting drives (SEDs): the TCG Storage
// protocol (Core Specification 2.01, Opal SSC 2.x) and, for SATA drives
// without Opal, the ATA Security feature set.
//
// A self-encrypting drive encrypts every sector with a media key that never
// leaves the drive. What the host controls is an authentication key (a PIN
// in TCG terms) that lets the drive use the media key for a locking range.
// encblk keeps that authentication key in its keyring like any other
// key-encryption key: 32 random bytes, never a human password on the wire.
//
// The package is layered the way the specifications are:
//
//   - Transport (transport.go) moves opaque security-protocol buffers to and
//     from a device: SCSI SECURITY PROTOCOL IN/OUT, ATA TRUSTED RECEIVE/SEND
//     or NVMe Security Receive/Send. The simulator in sedsim implements it too.
//   - Level 0 Discovery (discovery.go) says whether a device speaks TCG at
//     all, which SSC it implements and on which ComID.
//   - ComPacket/Packet/SubPacket framing (packet.go) wraps a token stream.
//   - The token stream (token.go, decode.go) encodes method calls: atoms,
//     lists, named values and control tokens.
//   - Method calls and their status (method.go, status.go) on the UIDs of
//     uid.go.
//   - Sessions (session.go) and the Opal 2 operations built on them
//     (opal.go): take ownership, activate, PINs, ranges, lock/unlock,
//     GenKey, RevertSP, Revert (SID or PSID), shadow MBR.
//   - hwopal.go lays a locking range out exactly as cryptsetup 2.7 does for
//     LUKS2 "hw-opal" segments (range N owned by User(N+1), whose PIN is the
//     volume-key prefix); package opalvolume joins it to pkg/keyring.
//   - Transports: scsi.go (SECURITY PROTOCOL IN/OUT), ata.go (TRUSTED
//     RECEIVE/SEND in ATA PASS-THROUGH(16), plus the ATA Security feature
//     set), nvme.go (Security Send/Receive), all over ioctls; device.go picks
//     one per block device from sysfs and scans for drives.
//
// Keys: encblk's range keys are the first 32 bytes of a random LUKS2 volume
// key and its admin keys are read from files (e.g. 32 bytes of
// /dev/urandom), so no human password ever reaches the drive. Package
// sedsim simulates a drive for tests.
//
// Range keys and rotation: in cryptsetup's layout the range key (the PIN
// of User(N+1)) is the first opal_key_size bytes of the LUKS2 volume key.
// Rotating a KEK re-wraps that volume key in a new keyslot, so it leaves
// the range key as it is, and a drive rotated by encblk still opens with
// cryptsetup. Changing the range key itself (Device.RotateRangeKey) would
// mean a new volume key, i.e. every keyslot rewritten and, for
// hw-opal-crypt, the dm-crypt data re-encrypted unless only the prefix
// changes; cryptsetup offers no such operation for hw-opal either, so
// encblk has no CLI for it. Whoever must retire a range key retires the
// volume: "encblk sed setup" again (crypto-erasing the range) or revert.
// Crypto-lock is "encblk lock": the drive forgets the range's media key
// until the range key is presented again.
//
// Nothing in this package logs or formats a PIN: errors name the authority
// and the method, never the credential.
package sed
