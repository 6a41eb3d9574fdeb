package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"

	"github.com/encblk/encblk/internal/daemon"
	"github.com/encblk/encblk/pkg/kek/kmipkek"
	"github.com/encblk/encblk/pkg/keyring"
	"github.com/encblk/encblk/pkg/kmip"
	"github.com/encblk/encblk/pkg/rotation"
)

// rotationSources are the KEKs encblk serve may obtain by itself when a
// volume's rotation policy asks for a rotation (daemon.RotationSources):
// the token sources that need nobody (no prompt, no PIN), and KMIP.
type rotationSources struct {
	log *slog.Logger
}

// noInput answers a source that would prompt: an unattended server has
// no one to ask.
type noInput struct{}

func (noInput) Read([]byte) (int, error) {
	return 0, errors.New("no terminal: the server runs unattended")
}

// Unattended is the KEK of kr's tokens, as readFor uses it with no KEK
// flag, except that a TPM2 PIN is never asked for (such a keyslot is then
// unavailable).
func (s rotationSources) Unattended(ctx context.Context, kr *keyring.Keyring) ([]keyring.Identity, func()) {
	f := kekFlags{unattended: true}
	ids, err := f.tokens(kr, noInput{}, io.Discard)
	if err != nil {
		s.log.Warn("rotation: the volume's token sources are unusable", "err", err)
		return nil, func() {}
	}
	return ids, ids.Destroy
}

// KMIP is the KEK of kr's KMIP keyslots, a new key on the server of the
// client configuration at path, and the revocation of the replaced key
// once the rotation is committed (as encblk kmip rotate --revoke-old).
func (s rotationSources) KMIP(kr *keyring.Keyring, path string) (*daemon.KMIPRotation, error) {
	cfg, err := kmip.LoadConfig(path)
	if err != nil {
		return nil, err
	}
	return s.kmipRotation(kr, cfg, cfg)
}

// kmipRotation is KMIP with cfg, and revokeCfg for the revocation.
func (s rotationSources) kmipRotation(kr *keyring.Keyring, cfg, revokeCfg *kmip.FileConfig) (*daemon.KMIPRotation, error) {
	if !kmipkek.HasTokens(kr) {
		return nil, errors.New("the volume has no KMIP keyslot to rotate")
	}
	old, err := kmipkek.NewKEK(cfg, s.log)
	if err != nil {
		return nil, err
	}
	fresh := *cfg
	fresh.KeyUID = "" // always a new key
	next, err := kmipkek.NewKEK(&fresh, s.log)
	if err != nil {
		return nil, err
	}
	before := kmipkek.Slots(kr)
	retire := func(ctx context.Context, kr *keyring.Keyring, oldSlot int) daemon.Retirement {
		retired, kept := kmipkek.Retired(before, kr, oldSlot)
		revoked, err := kmipkek.Revoke(ctx, revokeCfg, retired, kmip.RevocationSuperseded, "encblk rotation policy", s.log)
		r := daemon.Retirement{Kept: kept, Err: err}
		for _, st := range retired {
			if slices.ContainsFunc(revoked, func(d kmipkek.SlotStatus) bool { return d.KeyUID == st.KeyUID }) {
				r.Revoked = append(r.Revoked, st.Keyslot)
			} else if st.KeyUID != "" {
				r.Failed = append(r.Failed, rotation.RetiredKey{UID: st.KeyUID, Servers: st.Servers})
			}
		}
		return r
	}
	return &daemon.KMIPRotation{Old: old, Next: next, Options: kmipkek.KeyslotOptions(), Retire: retire}, nil
}

// RevokeKMIP revokes keys, replaced by a KEK rotation, on their servers
// with the client configuration at path; a key that is no longer active
// (revoked meanwhile by someone else) counts as done.
func (s rotationSources) RevokeKMIP(ctx context.Context, path string, keys []rotation.RetiredKey) ([]rotation.RetiredKey, error) {
	cfg, err := kmip.LoadConfig(path)
	if err != nil {
		return nil, err
	}
	var (
		done []rotation.RetiredKey
		errs []error
	)
	for _, k := range keys {
		c, err := cfg.Client(k.Servers, s.log)
		if err == nil {
			var st kmip.State
			if st, err = c.KeyState(ctx, k.UID); err == nil && st != kmip.StateActive && st != kmip.StatePreActive {
				done = append(done, k)
				continue
			}
		}
		if err == nil {
			err = c.Revoke(ctx, k.UID, kmip.RevocationSuperseded, "encblk rotation policy")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("revoking key %s: %w", k.UID, err))
			continue
		}
		done = append(done, k)
	}
	return done, errors.Join(errs...)
}

// reencryptRate reads serve --reencrypt-rate for daemon.VolumeSpec: 0 is
// no cap (negative there).
func reencryptRate(s string) (int64, error) {
	if s == "0" {
		return -1, nil
	}
	n, err := parseSize(s)
	if err != nil || n < 0 {
		return 0, withExit(exitUsage, fmt.Errorf("--reencrypt-rate: %q is not a rate in bytes per second", s))
	}
	return n, nil
}
