// Package rotation is a volume's rotation policy and record: how often its
// KEK is replaced and its data reencrypted (a new DEK), where a new KEK
// comes from, and when each was last done. Both live in one LUKS2 token of
// type "encblk-rotation" that is bound to no keyslot, so cryptsetup keeps
// it through luksAddKey, luksKillSlot, reencrypt and the like.
//
// The package computes what is due at a given time (the caller's clock)
// and manages a policy's key directory (generated key files); it carries
// nothing out: the serving daemon does (internal/daemon, rotation.go).
package rotation
