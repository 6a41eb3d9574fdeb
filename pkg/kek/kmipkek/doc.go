// Package kmipkek is the "kmip" KEK source: a keyslot whose secret only a
// KMIP key server can recover (pkg/kmip is the client it uses). The secret
// is random; the server encrypts it with an AES-256 key that never leaves
// it, and the ciphertext is kept in an encblk-kmip LUKS2 token bound to the
// keyslot. Revoking the key on the server locks every such keyslot for
// good: crypto-lock.
//
// # The KMIP keyslot
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
package kmipkek
