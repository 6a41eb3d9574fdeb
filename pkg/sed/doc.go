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
//
// Nothing in this package logs or formats a PIN: errors name the authority
// and the method, never the credential.
package sed
