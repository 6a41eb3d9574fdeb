// Package kmip is a client for the OASIS Key Management Interoperability
// Protocol (KMIP 1.2–1.4): the TTLV wire encoding, requests over TLS with
// mutual certificate authentication, and the operations a disk-encryption
// tool needs from an enterprise key manager: Create, Register, Activate,
// Get, Get Attributes, Locate, Revoke, Destroy, Encrypt, Decrypt, Discover
// Versions and Query.
//
// encblk uses it for its "kmip" key-encryption-key source: the secret that
// opens a LUKS2 keyslot is random and stored only encrypted by an AES key
// that lives on the key server and never leaves it (KMIP Encrypt/Decrypt).
// Revoking that key on the server makes every later unlock fail.
//
// The decoder is strict: lengths must match item types exactly, padding
// must be zero, structures must be exactly filled, nesting is capped at
// MaxDepth and messages at a configurable size, so a hostile or broken
// peer yields an error wrapping ErrMalformed or ErrTooLarge, never a panic
// or an unbounded allocation.
//
// A Client tries its servers in order (the nodes of one clustered key
// manager). An answer that refuses an operation is a *ResultError naming
// the server and the KMIP Result Reason; it is not retried elsewhere. If no
// server answers, the error wraps ErrUnavailable and names each server.
package kmip
