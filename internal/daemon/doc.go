// Package daemon is `encblk serve` as a library: it opens volumes (a
// backing locked with flock, its LUKS2 keyring, the encrypted
// pkg/volume device over it, or a plain backing), serves them as named NBD
// exports, and answers a control API on unix sockets.
//
// # Control API
//
// HTTP/1.1 with JSON bodies, versioned by path, on unix sockets of mode
// 0600 (the --control socket, and one well-known socket per volume that
// ControlSocket derives from the backing, so `encblk lock BACKING` finds
// its server):
//
//	GET    /v1/status               every volume's state, geometry, keyslots, counters
//	POST   /v1/unlock               {"volume", "secret"}: unlock with a KEK
//	POST   /v1/lock                 {"volume"}: wait for in-flight I/O, flush, wipe the DEK
//	POST   /v1/rotate-kek           {"volume", "secret", "new_secret", "new_tokens", "kdf"}: new keyslot, old one wiped
//	GET    /v1/keyslots?volume=ID   the keyslots
//	POST   /v1/keyslots             {"volume", "secret", "new_secret", "new_tokens", "kdf", "slot"}: add a keyslot
//	DELETE /v1/keyslots?volume=ID&slot=N
//
// A volume is named by its ID (VolumeID: device and inode of the backing)
// or its export name. Secrets (KEK bytes: a key file's contents or a
// passphrase) travel only in request bodies over these local sockets,
// never in URLs or logs. Errors come back as {"error", "kind"}; the
// client turns the kind back into the sentinel error (wrong key, busy,
// locked, corrupt, I/O) so the CLI exits with the documented status.
package daemon
