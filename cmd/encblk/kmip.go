package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/encblk/encblk/internal/audit"
	"github.com/encblk/encblk/internal/daemon"
	"github.com/encblk/encblk/internal/secmem"
	"github.com/encblk/encblk/pkg/kek/kmipkek"
	"github.com/encblk/encblk/pkg/keyring"
	"github.com/encblk/encblk/pkg/kmip"
)

func init() { subcommands = append(subcommands, newKMIPCmd) }

// kmipKEK loads the KMIP client configuration at path as a KEK.
func kmipKEK(path string, log *slog.Logger) (*kmipkek.KEK, error) {
	cfg, err := kmip.LoadConfig(path)
	if err != nil {
		return nil, withExit(exitUsage, err)
	}
	return kmipkek.NewKEK(cfg, log)
}

// tokenConfig loads the client configuration for kr's KMIP keyslots: the
// file at path if given, else the one the tokens recorded when they were
// made.
func tokenConfig(kr *keyring.Keyring, path string) (*kmip.FileConfig, error) {
	if path == "" {
		for _, t := range kr.Tokens() {
			if tok, err := kmipkek.ParseToken(t.Raw); err == nil && tok.Config != "" {
				path = tok.Config
				break
			}
		}
	}
	if path == "" {
		return nil, withExit(exitUsage, errors.New("the volume's KMIP tokens name no client configuration; give one with --config"))
	}
	cfg, err := kmip.LoadConfig(path)
	if err != nil {
		return nil, withExit(exitUsage, err)
	}
	return cfg, nil
}

// tokenKMIPKEK is the KEK for kr's KMIP keyslots (see tokenConfig).
func tokenKMIPKEK(kr *keyring.Keyring, path string, log *slog.Logger) (*kmipkek.KEK, error) {
	cfg, err := tokenConfig(kr, path)
	if err != nil {
		return nil, err
	}
	return kmipkek.NewKEK(cfg, log)
}

// serverSecret is the secret a running server takes to open a keyslot of
// the volume whose header kr is (nil: not readable here) with KEK k: the
// unlock loop stops short of opening the keyslot (keyring.SecretFor). The
// caller destroys it.
func serverSecret(ctx context.Context, kr *keyring.Keyring, k keyring.Identity) (*keyring.Secret, error) {
	_, secret, err := keyring.SecretFor(ctx, kr, k)
	return secret, err
}

// printKMIPTargetStatus adds to encblk status, for a volume whose header
// kr has KMIP keyslots, each key and its state on the key server.
func printKMIPTargetStatus(ctx context.Context, w io.Writer, kr *keyring.Keyring) {
	sts, err := kmipTargetStatus(ctx, kr)
	if err != nil {
		fmt.Fprintf(w, "KMIP:\t%v\n", err)
		return
	}
	for _, st := range sts {
		fmt.Fprintf(w, "KMIP keyslot %d: %s\n", st.Keyslot, kmipStatusLine(st))
	}
}

// addKMIPTargetStatus fills in vs.KMIP (encblk status --json) for the KMIP
// keyslots of kr; a volume whose KMIP configuration cannot be loaded gets
// none.
func addKMIPTargetStatus(ctx context.Context, vs *daemon.VolumeStatus, kr *keyring.Keyring) {
	sts, _ := kmipTargetStatus(ctx, kr)
	for _, st := range sts {
		ks := daemon.KMIPKeyslotStatus{Keyslot: st.Keyslot, KeyUID: st.KeyUID, Servers: st.Servers, State: st.State.String()}
		if st.Err != nil {
			ks.State, ks.Error = "unknown", st.Err.Error()
		}
		vs.KMIP = append(vs.KMIP, ks)
	}
}

// kmipTargetStatus asks the key servers for the state of the keys of the
// KMIP keyslots of kr; none if kr is nil (no header could be read) or has
// no KMIP keyslot.
func kmipTargetStatus(ctx context.Context, kr *keyring.Keyring) ([]kmipkek.SlotStatus, error) {
	if kr == nil || !kmipkek.HasTokens(kr) {
		return nil, nil
	}
	k, err := tokenKMIPKEK(kr, "", nil)
	if err != nil {
		return nil, err
	}
	return k.Status(ctx, kr), nil
}

func newKMIPCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kmip",
		Short: "Keyslots whose key is held by a KMIP key server",
		Long: `A KMIP keyslot's secret is random and stored only encrypted by an AES-256
key that never leaves the key server (KMIP Encrypt/Decrypt), in an
encblk-kmip LUKS2 token. Unlocking asks the server to decrypt it; revoking the
key on the server locks the volume for good (crypto-lock).

The client configuration (--config, or --kmip where a command takes a KEK) is
a JSON file:
  {"servers": ["kms1:5696", "kms2:5696"], "ca": "ca.pem",
   "cert": "client.pem", "key": "client.key", "key_uid": "", "timeout": "10s"}
Servers are tried in order. key_uid names an existing Active AES-256 key;
empty means a new one is created and activated. TLS 1.3 is used whenever a
server offers it; "tls12_profile_suites": true enables the KMIP profiles'
TLS 1.2 CBC suites for servers with RSA certificates that offer nothing
else (PyKMIP, many appliances): off unless the handshake fails without it,
and a warning names the suite when one is used.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newKMIPAddCmd(a), newKMIPStatusCmd(a), newKMIPRotateCmd(a), newKMIPRevokeCmd(a))
	return cmd
}

func newKMIPAddCmd(a *app) *cobra.Command {
	var (
		hdr    headerFlag
		oldKEK kekFlags
		config string
	)
	cmd := &cobra.Command{
		Use:   "add DEVICE --config CONFIG",
		Short: "Add a keyslot that the KMIP key server unlocks",
		Long: `Add opens the volume with an existing KEK (--key-file, --passphrase-file,
--kmip, the volume's KMIP tokens, or a prompt) and adds a keyslot whose
secret the key server encrypts, with the key_uid of CONFIG or a new key. On
a served volume the running server commits the keyslot and its token. A new
key is destroyed again if its keyslot was not committed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if config == "" {
				return withExit(exitUsage, errors.New("--config is required"))
			}
			recipient, err := kmipKEK(config, a.log)
			if err != nil {
				return err
			}
			readNew := func() (kek, error) { return recipient, nil }
			t, slot, err := addKeyslot(cmd, a, hdr, args[0], &oldKEK, readNew, kmipkek.KeyslotOptions())
			if err != nil {
				return fmt.Errorf("adding the KMIP keyslot: %w", err)
			}
			defer t.Close()
			for _, st := range kmipkek.Slots(t.Keyring()) {
				if st.Keyslot == slot {
					fmt.Fprintf(cmd.OutOrStdout(), "Added KMIP keyslot %d: key %s on %s\n", slot, st.KeyUID, strings.Join(st.Servers, ", "))
				}
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&config, "config", "", "KMIP client configuration (JSON) for the new keyslot")
	oldKEK.register(fs, "")
	hdr.register(fs)
	return cmd
}

func newKMIPStatusCmd(a *app) *cobra.Command {
	var (
		hdr    headerFlag
		config string
	)
	cmd := &cobra.Command{
		Use:   "status DEVICE",
		Short: "Show the volume's KMIP keyslots and the state of their keys on the server",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kr, err := hdr.open(args[0], true)
			if err != nil {
				return err
			}
			defer kr.Close()
			if !kmipkek.HasTokens(kr) {
				fmt.Fprintln(cmd.OutOrStdout(), "no KMIP keyslots")
				return nil
			}
			k, err := tokenKMIPKEK(kr, config, a.log)
			if err != nil {
				return err
			}
			printKMIPStatus(cmd.OutOrStdout(), k.Status(cmd.Context(), kr))
			return nil
		},
	}
	cmd.Flags().StringVar(&config, "config", "", "KMIP client configuration (default: the one recorded in the tokens)")
	hdr.register(cmd.Flags())
	return cmd
}

// printKMIPStatus prints one line per KMIP keyslot: its key, servers and
// the key's state on the server (or why it could not be read).
func printKMIPStatus(w io.Writer, sts []kmipkek.SlotStatus) {
	for _, st := range sts {
		fmt.Fprintf(w, "keyslot %d: %s\n", st.Keyslot, kmipStatusLine(st))
	}
}

// kmipStatusLine describes one KMIP keyslot's key: which, where, and its
// state on the server (or why that could not be read).
func kmipStatusLine(st kmipkek.SlotStatus) string {
	state := st.State.String()
	if st.Err != nil {
		state = "unknown (" + st.Err.Error() + ")"
	}
	return fmt.Sprintf("key %s on %s: %s", st.KeyUID, strings.Join(st.Servers, ", "), state)
}

func newKMIPRotateCmd(a *app) *cobra.Command {
	var (
		hdr       headerFlag
		config    string
		revokeOld bool
	)
	cmd := &cobra.Command{
		Use:   "rotate DEVICE",
		Short: "Move a KMIP keyslot to a new key on the server",
		Long: `Rotate creates and activates a new key on the server, adds a keyslot for it,
then removes the old KMIP keyslot (crash-safe: at every point one of them
opens the volume). The data and its key do not change. --revoke-old then
revokes the old key on the server, unless another keyslot still uses it.
On a served volume the key server's secrets and the new token go to the
running server (over its 0600 control socket), which commits the change.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := secmem.SetNonDumpable(); err != nil {
				return err
			}
			t, err := daemon.OpenTarget(cmd.Context(), args[0], daemon.TargetOptions{Header: hdr.path, Logger: a.log})
			if err != nil {
				return err
			}
			defer t.Close()
			kr := t.Keyring()
			if !kmipkek.HasTokens(kr) {
				return withExit(exitUsage, errors.New("the volume has no KMIP keyslot to rotate"))
			}
			cfg, err := tokenConfig(kr, config)
			if err != nil {
				return err
			}
			old, err := kmipkek.NewKEK(cfg, a.log)
			if err != nil {
				return err
			}
			before := kmipkek.Slots(kr)
			fresh := *cfg
			fresh.KeyUID = "" // always a new key
			next, err := kmipkek.NewKEK(&fresh, a.log)
			if err != nil {
				return err
			}
			oldSlot, newSlot, err := t.RotateKEK(cmd.Context(), old, next, kmipkek.KeyslotOptions())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Rotated KMIP keyslot %d -> %d: new key %s\n", oldSlot, newSlot, next.CreatedUID())
			if !revokeOld {
				return nil
			}
			retired, stillUsed := kmipkek.Retired(before, kr, oldSlot)
			for _, uid := range stillUsed {
				fmt.Fprintf(cmd.OutOrStdout(), "Old key %s is still used by another keyslot; not revoked\n", uid)
			}
			revoked, err := kmipkek.Revoke(cmd.Context(), cfg, retired, kmip.RevocationSuperseded, "encblk kmip rotate", a.log)
			auditRevoked(cmd.Context(), a, args[0], kr, revoked, err)
			for _, st := range revoked {
				fmt.Fprintf(cmd.OutOrStdout(), "Revoked old key %s\n", st.KeyUID)
			}
			if err != nil {
				return fmt.Errorf("rotation done, but %w", err)
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&config, "config", "", "KMIP client configuration (default: the one recorded in the tokens)")
	fs.BoolVar(&revokeOld, "revoke-old", false, "revoke the old key on the server after rotating")
	hdr.register(fs)
	return cmd
}

func newKMIPRevokeCmd(a *app) *cobra.Command {
	var (
		hdr    headerFlag
		config string
		batch  bool
	)
	cmd := &cobra.Command{
		Use:   "revoke DEVICE",
		Short: "Crypto-lock: revoke the volume's KMIP keys on the server",
		Long: `Revoke deactivates, on the key server, every key the volume's KMIP keyslots
use. From then on no unlock through them succeeds; a volume that has only
KMIP keyslots cannot be opened again (unless someone kept its data key or a
header backup together with another KEK). The volume itself is not changed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kr, err := hdr.open(args[0], true)
			if err != nil {
				return err
			}
			defer kr.Close()
			if !kmipkek.HasTokens(kr) {
				return withExit(exitUsage, errors.New("the volume has no KMIP keyslot"))
			}
			cfg, err := tokenConfig(kr, config)
			if err != nil {
				return err
			}
			sts := kmipkek.Slots(kr)
			if err := confirm(cmd.InOrStdin(), cmd.ErrOrStderr(), batch,
				fmt.Sprintf("This revokes the key server's keys of %d KMIP keyslot(s) of %s.\nUnlocking through them will fail from now on.", len(sts), args[0])); err != nil {
				return err
			}
			revoked, err := kmipkek.Revoke(cmd.Context(), cfg, sts, kmip.RevocationCessationOfOperation, "encblk kmip revoke", a.log)
			auditRevoked(cmd.Context(), a, args[0], kr, revoked, err)
			for _, st := range revoked {
				fmt.Fprintf(cmd.OutOrStdout(), "Revoked key %s (keyslot %d)\n", st.KeyUID, st.Keyslot)
			}
			return err
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&config, "config", "", "KMIP client configuration (default: the one recorded in the tokens)")
	fs.BoolVarP(&batch, "batch-mode", "q", false, "do not ask for confirmation")
	hdr.register(fs)
	return cmd
}

// auditRevoked records a KMIP revocation: one record per keyslot whose key
// was revoked, and one for the failure, if any.
func auditRevoked(ctx context.Context, a *app, backing string, kr *keyring.Keyring, revoked []kmipkek.SlotStatus, err error) {
	for _, st := range revoked {
		audit.Log(ctx, a.log, audit.Record{Event: audit.KMIPRevoke, Volume: kr.UUID(), Backing: backing, Keyslot: st.Keyslot, KEK: kmipkek.TokenType}.Self())
	}
	if err != nil {
		audit.Log(ctx, a.log, audit.Record{Event: audit.KMIPRevoke, Volume: kr.UUID(), Backing: backing, Keyslot: -1, KEK: kmipkek.TokenType, Err: err}.Self())
	}
}
