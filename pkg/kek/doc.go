// Package kek is the home of encblk's key-encryption-key sources, one
// package each, as age keeps its plugins: passphrase (typed or read from a
// file), keyfile (raw bytes of a file), kmipkek (a KMIP key server wraps
// the keyslot secret), agekek (the secret sits in the header, encrypted to
// age recipients: how a volume moves to another host), and the sources that unlock through LUKS2 tokens
// other tools write (tang and sss through clevis tokens, tpm2 through
// systemd-tpm2 tokens).
//
// Every source implements keyring.Identity (open a keyslot) and, where it
// can make keyslots, keyring.Recipient; both use only public types
// (keyring.Secret holds the key material). The keyring runs the one unlock
// loop; a source says per keyslot "here is the secret", "not mine"
// (keyring.ErrNoMatchingKeyslot), "mine but unavailable now"
// (*keyring.UnavailableError) or fails. Callers never ask which kind a KEK
// is.
//
// This package itself holds no code.
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
//	KMIP key server (kmipkek)    yes          yes (3)     yes: revoke the key (4)
//	age identity (agekek)        yes          as its file no (2)
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
package kek
