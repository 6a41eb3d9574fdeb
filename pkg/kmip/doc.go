// Package kmip is a client for the OASIS Key Management Interoperability
// Protocol (KMIP 1.2–1.4): the TTLV wire encoding, requests over TLS with
// mutual certificate authentication, and the operations a disk-encryption
// tool needs from an enterprise key manager: Create, Register, Activate,
// Get, Get Attributes, Locate, Revoke, Destroy, Encrypt, Decrypt, Discover
// Versions and Query. encblk's "kmip" key-encryption-key source, which
// uses it, is pkg/kek/kmipkek.
//
// # Wire format and limits
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
//
// # What PyKMIP (Debian's python3-pykmip 0.10) does and does not do
//
// The tests run every operation against a real pykmip-server. PyKMIP
// accepts only TLS 1.2, requires client certificates with the clientAuth
// extended key usage, speaks KMIP 1.0–1.4 and 2.0, encrypts and decrypts
// with AES-GCM (additional data and tag need KMIP 1.4 payloads) and
// AES-CBC, and chooses a 16-byte IV itself when the client sends none. Its
// parser requires a Unique Identifier in Activate, so the batch ID
// placeholder cannot be used there (Create then Activate are two
// requests); Revoke plus Destroy are batched. encblk creates its keys with
// the Sensitive attribute (not to be handed out by Get); PyKMIP stores it
// but does not enforce it and has no Extractable attribute. encblk never
// calls Get on its KEKs.
//
// # TLS
//
// The client speaks TLS 1.3 whenever the server offers it, else TLS 1.2
// with Go's default suites (ECDHE with AES-GCM or ChaCha20-Poly1305, and
// AES-CBC-SHA1). Servers that follow the KMIP profiles' TLS 1.2 suite list
// with an RSA certificate (PyKMIP does; RSA is what most enterprise PKIs
// issue) share none of those: the handshake fails, and the error says to
// set "tls12_profile_suites": true in the configuration file
// (Config.TLS12ProfileSuites). That adds the profile's CBC suites Go
// implements for RSA keys, TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256 and
// TLS_RSA_WITH_AES_128_CBC_SHA256 (see profileSuites for why they are
// off by default); the client logs a warning naming the suite when one is
// used. PyKMIP, which picks by its own preference, chooses the second:
// RSA key exchange, without forward secrecy. Prefer TLS 1.3 or an ECDSA
// server certificate where the key manager allows.
package kmip
