package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/encblk/encblk/internal/daemon"
	"github.com/encblk/encblk/pkg/kek/kmipkek"
	"github.com/encblk/encblk/pkg/keyring"
	"github.com/encblk/encblk/pkg/kmip"
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
	if !kmipkek.HasTokens(kr) {
		return nil, errors.New("the volume has no KMIP keyslot to rotate")
	}
	cfg, err := kmip.LoadConfig(path)
	if err != nil {
		return nil, err
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
	retire := func(ctx context.Context, kr *keyring.Keyring, oldSlot int) ([]int, []string, error) {
		retired, kept := kmipkek.Retired(before, kr, oldSlot)
		revoked, err := kmipkek.Revoke(ctx, cfg, retired, kmip.RevocationSuperseded, "encblk rotation policy", s.log)
		slots := make([]int, len(revoked))
		for i, st := range revoked {
			slots[i] = st.Keyslot
		}
		return slots, kept, err
	}
	return &daemon.KMIPRotation{Old: old, Next: next, Options: kmipkek.KeyslotOptions(), Retire: retire}, nil
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
