// Package kmip is a client for the OASIS Key Management Interoperability
// Protocol (KMIP 1.2–1.4): the TTLV wire encoding, requests over TLS with
// mutual certificate authentication, and the operations a disk-encryption
// tool needs from an enterprise key manager: Create, Register, Activate,
// Get, Get Attributes, Locate, Revoke, Destroy, Encrypt, Decrypt, Discover
// Versions and Query. It also holds encblk's "kmip" key-encryption-key
// source (KEK), which plugs into pkg/keyring.
//
// # The KMIP KEK
//
// A KMIP keyslot is an ordinary LUKS2 keyslot whose secret is 32 random
// bytes that are stored only encrypted, in an encblk-kmip token bound to
// the keyslot. The encryption is done by the key server (KMIP Encrypt,
// AES-256-GCM) with a key that never leaves it; unlocking asks the server
// to decrypt (KMIP Decrypt). The server sees the keyslot secret while it
// encrypts and decrypts it, as with any server-side wrapping: it is the
// party trusted to hold the KEK. Revoking (deactivating) or destroying the
// key on the server makes every later unlock fail: crypto-lock. A server
// that is unreachable, or refuses, leaves the volume locked with an error
// that names the server and the KMIP Result Reason; nothing is written to
// the volume. Rotation adds a keyslot under a new server-side key, then
// removes the old keyslot (keyring.RotateKEK, crash-safe), after which the
// old key can be revoked.
//
// # Threat model
//
// What each KEK source protects against (after Tintri SecureVM's external
// key management model). "Drive theft": a backing disk, image or snapshot
// leaves without the host. "Host theft": the machine (or its boot disk)
// leaves with the data disks. "Crypto-lock": an administrator must make
// the data unreadable now, remotely, without touching the disks.
//
//	KEK source                   drive theft  host theft  crypto-lock
//	passphrase (typed)           yes          yes (1)     no (2)
//	key file on the host         yes          no          no (2)
//	key file on removable media  yes          if removed  no (2)
//	KMIP key server (this)       yes          yes (3)     yes: revoke the key (4)
//	SED (Opal range key)         yes          as its KEK  as its KEK
//
//	(1) if nobody types it for the thief. (2) only by erasing the keyslots
//	(crypto-erase) and every header backup. (3) the thief's host must still authenticate to the key
//	server with the client certificate: keep that key off the data disks
//	(TPM-bound or on another device), or revoke the certificate on the
//	server. (4) an unlocked volume keeps its DEK in memory until
//	`encblk lock`; after that no unlock succeeds while the key is revoked,
//	but a header backup plus a passphrase keyslot still opens the data.
//
// Header backups (encblk header backup --encrypt) copy every keyslot,
// KMIP ones included: keep them as carefully as the passphrases they hold.
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
package kmip
