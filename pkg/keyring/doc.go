// Package keyring is encblk's two-tier keyring, stored in the LUKS2
// on-disk format so that cryptsetup and encblk open each other's volumes.
//
// # Keys
//
// Every sector of a volume is encrypted with one data-encryption key, the
// DEK (LUKS calls it the volume key): 64 random bytes for AES-256-XTS,
// made by Format from crypto/rand. The DEK never changes unless the whole
// volume is re-encrypted, and it is never stored in the clear.
//
// What a person or a machine holds is a key-encryption key, a KEK: a
// passphrase, a key file with random bytes kept on another device, a key
// inside a key manager (KMIP), a TPM or a self-encrypting drive. Each KEK
// opens one keyslot. A keyslot is a copy of the DEK encrypted ("wrapped")
// with a key derived from the KEK by a deliberately slow function (argon2id
// by default, or PBKDF2), so guessing passphrases is expensive. A volume
// has up to 32 keyslots, all wrapping the same DEK, so any one KEK opens it.
// A digest of the DEK lets the keyring tell whether an unwrapped key is the
// right one; a wrong KEK gives ErrNoMatchingKeyslot.
//
// # Rotation
//
// Changing a KEK never touches the data. RotateKEK unwraps the DEK with the
// old KEK, writes a new keyslot for the new KEK and commits the header,
// then overwrites the old keyslot and commits again. If the machine dies
// half-way, the old or the new KEK (or both) still opens the volume; once
// it returns, the old KEK opens nothing. The cost is one or two KDF runs.
//
// # KEK sources
//
// KEKs follow age's Identity/Recipient pattern: an Identity unwraps (used
// by Unlock), a Recipient wraps (used by Format and AddKeyslot). Both deal
// in a Secret, key material in protected memory, which is itself the KEK
// LUKS calls a passphrase or key file. The sources live in their own
// packages under pkg/kek (passphrase, keyfile, kmipkek, …) and use only
// this package's public types; sources that need more than a secret (a key
// server, a TPM, a Tang server) keep what they need in a LUKS2 token bound
// to their keyslot: the Keyslot an Identity receives carries its tokens.
//
// Unlock runs the one unlock loop: keyslots in cryptsetup's order
// (preferred first, "ignore" never), each offered to every Identity. An
// Identity answers with the keyslot's secret, "not mine"
// (ErrNoMatchingKeyslot: try the next), "mine but unavailable now"
// (ErrUnavailable, best as an *UnavailableError: try the next, report why
// at the end in a *LockedError) or a fatal error.
//
// # The header
//
// The LUKS2 header is kept twice at the start of the device (or in a
// detached header file): a 4 KiB binary header with a SHA-256 checksum and a
// JSON area describing keyslots, tokens, segments, digests and config,
// followed by the keyslots area that holds the wrapped keys and then the
// data. Updates write the primary copy, sync, write the secondary, sync;
// reading uses the valid copy with the highest sequence number and says
// which copy is bad and why. Repair (only when asked) rewrites a bad copy.
// Tokens and fields encblk does not know are preserved.
//
// Key material lives in internal/secmem buffers (mlock'ed, excluded from
// core dumps, wiped on Destroy); every DEK a function returns must be
// destroyed by the caller. LUKS1 volumes (cryptsetup --type luks1,
// qemu-img -f luks) are read and unlocked but not changed.
//
// Typical use by a server:
//
//	k, err := keyring.Open("/dev/sdb", nil) // or a detached header file
//	seg, err := k.DataSegment()            // offset, sector size, cipher
//	kf, err := keyfile.Open("/boot/keys/sdb.key") // pkg/kek/keyfile
//	dek, err := k.Unlock(ctx, kf)          // *secmem.Buffer, Destroy when done
package keyring
