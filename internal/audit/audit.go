// Package audit writes encblk's audit records: one structured log record
// per security-relevant action, with a stable schema that log pipelines
// and SIEMs can rely on. Records never carry a secret.
//
// Schema (slog attributes; with --log-format json, one JSON object per
// line; under systemd the server's stderr goes to the journal):
//
//	msg       "audit" (always; select records by it)
//	event     what was done: unlock, lock, rotate-kek, add-keyslot,
//	          remove-keyslot, header-restore, erase, kmip-revoke,
//	          reencrypt-start, reencrypt-stop, reencrypt-finish,
//	          rotation-policy (a rotation policy set or cleared),
//	          rotate-kek-due, reencrypt-due (a rotation the policy asks
//	          for came due: ok when the server carried it out, failed with
//	          the reason when it cannot and needs an operator; the
//	          rotate-kek or reencrypt-* records of the rotation follow),
//	          reencrypt-observed (a server found the volume key replaced
//	          by another tool, e.g. cryptsetup reencrypt, and recorded it
//	          as the last reencryption)
//	result    ok | failed | denied (denied: the peer may not ask this)
//	volume    the LUKS2 UUID ("" if unknown, e.g. the header is unreadable)
//	backing   the backing's path
//	keyslot   the keyslot acted on or that opened the volume; -1 if none
//	kek       the KEK kind: secret (passphrase or key file), or the LUKS2
//	          token type bound to the keyslot (encblk-kmip, systemd-tpm2,
//	          clevis, …); "" if none
//	error     why it failed (absent when result is ok)
//	peer_uid  the requesting process's uid (SO_PEERCRED on the control
//	          socket; the command's own uid offline); -1 if unknown
//	peer_pid  its pid; -1 if unknown
//
// Successes are logged at level INFO, failures and denials at WARN.
package audit

import (
	"context"
	"log/slog"
	"os"
)

// Events.
const (
	Unlock            = "unlock"
	Lock              = "lock"
	RotateKEK         = "rotate-kek"
	AddKeyslot        = "add-keyslot"
	RemoveKeyslot     = "remove-keyslot"
	HeaderRestore     = "header-restore"
	Erase             = "erase"
	KMIPRevoke        = "kmip-revoke"
	ReencryptStart    = "reencrypt-start"
	ReencryptStop     = "reencrypt-stop"
	ReencryptFinish   = "reencrypt-finish"
	RotationPolicy    = "rotation-policy"
	RotateKEKDue      = "rotate-kek-due"
	ReencryptDue      = "reencrypt-due"
	ReencryptObserved = "reencrypt-observed"
)

// Results.
const (
	OK     = "ok"
	Failed = "failed"
	Denied = "denied"
)

// Record is one audited action.
type Record struct {
	Event   string
	Volume  string // LUKS2 UUID
	Backing string
	Keyslot int    // -1: none
	KEK     string // KEK kind
	Result  string // OK, Failed or Denied; Log derives it from Err when empty
	Err     error
	PeerUID int64 // -1: unknown
	PeerPID int64 // -1: unknown
}

// Self fills the peer fields with this process's own credentials, for
// actions a command carries out itself (offline).
func (r Record) Self() Record {
	r.PeerUID, r.PeerPID = int64(os.Getuid()), int64(os.Getpid())
	return r
}

// Log writes r to log.
func Log(ctx context.Context, log *slog.Logger, r Record) {
	if log == nil {
		return
	}
	if r.Result == "" {
		r.Result = OK
		if r.Err != nil {
			r.Result = Failed
		}
	}
	attrs := []slog.Attr{
		slog.String("event", r.Event),
		slog.String("result", r.Result),
		slog.String("volume", r.Volume),
		slog.String("backing", r.Backing),
		slog.Int("keyslot", r.Keyslot),
		slog.String("kek", r.KEK),
	}
	if r.Err != nil {
		attrs = append(attrs, slog.String("error", r.Err.Error()))
	}
	attrs = append(attrs, slog.Int64("peer_uid", r.PeerUID), slog.Int64("peer_pid", r.PeerPID))
	level := slog.LevelInfo
	if r.Result != OK {
		level = slog.LevelWarn
	}
	log.LogAttrs(ctx, level, "audit", attrs...)
}
