package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/encblk/encblk/internal/daemon"
	"github.com/encblk/encblk/internal/secmem"
	"github.com/encblk/encblk/pkg/keyring"
)

func init() { subcommands = append(subcommands, newKeyslotCmd) }

func newKeyslotCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keyslot",
		Short: "List, add and remove the keyslots (KEKs) of a volume",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newKeyslotListCmd(), newKeyslotAddCmd(a), newKeyslotRemoveCmd(a))
	return cmd
}

// keyslotJSON is one keyslot in `keyslot list --json`.
type keyslotJSON struct {
	ID       int    `json:"id"`
	Type     string `json:"type"`
	KeyBits  int    `json:"key_bits"`
	Priority int    `json:"priority"`
	KDF      string `json:"kdf"`
	Hash     string `json:"hash,omitempty"`
	Cost     int    `json:"iterations"`
	Memory   int    `json:"memory_kib,omitempty"`
	Parallel int    `json:"parallel,omitempty"`
	Tokens   []int  `json:"tokens"`
	// TokenDetails name each token's kind and parameters (a Tang URL, a
	// threshold, a KMIP key).
	TokenDetails []daemon.TokenStatus `json:"token_details"`
}

func newKeyslotListCmd() *cobra.Command {
	var (
		hdr    headerFlag
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "list DEVICE",
		Short: "List the keyslots with their KDF",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := hdr.open(args[0], true)
			if err != nil {
				return err
			}
			defer k.Close()
			var list []keyslotJSON
			for _, ks := range k.Keyslots() {
				j := keyslotJSON{ID: ks.ID, Type: ks.Type, KeyBits: ks.KeySize * 8, Priority: ks.Priority,
					KDF: ks.KDF.Type, Hash: ks.KDF.Hash, Cost: ks.KDF.Iterations, Memory: ks.KDF.MemoryKiB,
					Parallel: ks.KDF.Parallel, Tokens: []int{}, TokenDetails: tokenDetails(ks.Tokens)}
				for _, t := range ks.Tokens {
					j.Tokens = append(j.Tokens, t.ID)
				}
				list = append(list, j)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if list == nil {
					list = []keyslotJSON{}
				}
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(list)
			}
			if len(list) == 0 {
				fmt.Fprintln(out, "no keyslots")
				return nil
			}
			fmt.Fprintf(out, "%-4s %-6s %-5s %s\n", "SLOT", "TYPE", "BITS", "KDF")
			for _, ks := range k.Keyslots() {
				fmt.Fprintf(out, "%-4d %-6s %-5d %s", ks.ID, ks.Type, ks.KeySize*8, ks.KDF)
				for _, t := range ks.Tokens {
					if _, text, _ := describeToken(t); text != "" {
						fmt.Fprintf(out, " token %d (%s: %s)", t.ID, t.Type, text)
					} else {
						fmt.Fprintf(out, " token %d (%s)", t.ID, t.Type)
					}
				}
				fmt.Fprintln(out)
			}
			return nil
		},
	}
	hdr.register(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newKeyslotAddCmd(a *app) *cobra.Command {
	var (
		hdr    headerFlag
		oldKEK kekFlags
		newKEK kekFlags
		kdf    kdfFlags
		slot   int
		others bool
		batch  bool
	)
	cmd := &cobra.Command{
		Use:   "add DEVICE [NEW_KEY_FILE]",
		Short: "Add a keyslot for a new KEK, like cryptsetup luksAddKey",
		Long: `Add unlocks the volume with an existing KEK and wraps its data-encryption key
for a new KEK in a new keyslot. On a served volume the running server does it
(the secrets go over its 0600 control socket).

` + kekHelp(true) + `
NEW_KEY_FILE is --new-key-file's file.

With --tpm2-device DEV the new keyslot is sealed to the TPM as
systemd-cryptenroll --tpm2-device does (the systemd-tpm2 token, so that
systemd-cryptsetup's tpm2-device= opens it): 32 random bytes in a TPM object
whose policy is the current values of --tpm2-pcrs (systemd's syntax, "7+11";
default 7; "" for none), plus a PIN with --tpm2-with-pin (read from
--new-tpm2-pin-file or asked twice). The keyslot's passphrase is their
base64, with PBKDF2-SHA512 at 1000 iterations, as systemd makes it.

With --age-recipient (or --age-recipients-file) the new keyslot's secret is
32 random bytes, stored in an encblk-age token encrypted to the recipients:
only their identities open it (unlock --age-identity), and this host keeps
nothing that does. --remove-other-keyslots then destroys every other keyslot
in the same run (after a typed YES, unless --batch-mode), so that only the
new KEK opens the volume: how a volume is handed to another host (see
"Moving a volume to another host" in the README). Offline, one header commit
drops them all; a server drops them one by one.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 2 {
				if newKEK.given() {
					return withExit(exitUsage, fmt.Errorf("NEW_KEY_FILE and --new-key-file/--new-passphrase-file are exclusive"))
				}
				newKEK.keyFile = args[1]
			}
			opts, err := kdf.options(newKEK.keyslotOptions())
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("key-slot") {
				opts.Slot = &slot
			}
			t, err := daemon.OpenTarget(cmd.Context(), args[0], daemon.TargetOptions{Header: hdr.path, Logger: a.log})
			if err != nil {
				return err
			}
			defer t.Close()
			var drop []int
			if others {
				if drop, err = keyslotsToDrop(cmd, t, args[0], batch); err != nil {
					return err
				}
			}
			readNew := func() (kek, error) { return newKEK.read(cmd.InOrStdin(), cmd.ErrOrStderr(), true) }
			id, err := addKeyslotTo(cmd, t, &oldKEK, readNew, opts)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "added keyslot %d\n", id)
			a.log.Debug("keyslot added", "slot", id)
			if len(drop) > 0 {
				if err := t.RemoveKeyslots(cmd.Context(), drop); err != nil {
					return fmt.Errorf("keyslot %d was added, but removing keyslots %s failed: %w", id, slotList(drop), err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "removed keyslots %s\n", slotList(drop))
			}
			return nil
		},
	}
	fs := cmd.Flags()
	hdr.register(fs)
	oldKEK.register(fs, "")
	newKEK.register(fs, "new-")
	kdf.register(fs)
	fs.IntVarP(&slot, "key-slot", "S", 0, "use this keyslot number (default: the lowest free)")
	fs.BoolVar(&others, "remove-other-keyslots", false, "then destroy every other keyslot: only the new KEK opens the volume (asks for YES)")
	fs.BoolVarP(&batch, "batch-mode", "q", false, "do not ask for confirmation")
	return cmd
}

// keyslotsToDrop lists the keyslots of device that --remove-other-keyslots
// is to destroy once the new one is added, after a typed YES unless batch.
func keyslotsToDrop(cmd *cobra.Command, t *daemon.Target, device string, batch bool) ([]int, error) {
	var drop []int
	for _, ks := range t.Keyring().Keyslots() {
		if ks.Type == "luks2" {
			drop = append(drop, ks.ID)
		}
	}
	if len(drop) == 0 {
		return nil, nil
	}
	err := confirm(cmd.InOrStdin(), cmd.ErrOrStderr(), batch,
		fmt.Sprintf("After the new keyslot is added, keyslots %s of %s will be destroyed:\nonly the new KEK will open the volume.", slotList(drop), device))
	return drop, err
}

func slotList(slots []int) string {
	s := make([]string, len(slots))
	for i, v := range slots {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ", ")
}

func newKeyslotRemoveCmd(a *app) *cobra.Command {
	var (
		hdr   headerFlag
		batch bool
	)
	cmd := &cobra.Command{
		Use:   "remove DEVICE SLOT",
		Short: "Destroy a keyslot, like cryptsetup luksKillSlot",
		Long: `Remove overwrites keyslot SLOT and drops it from the header: its KEK no
longer opens the volume. The last keyslot cannot be removed (see erase).`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			slot, err := strconv.Atoi(args[1])
			if err != nil || slot < 0 || slot > 31 {
				return withExit(exitUsage, fmt.Errorf("keyslot %q: want a number from 0 to 31", args[1]))
			}
			t, err := daemon.OpenTarget(cmd.Context(), args[0], daemon.TargetOptions{Header: hdr.path, Logger: a.log})
			if err != nil {
				return err
			}
			defer t.Close()
			how := ""
			if t.Served() {
				how = " (served: through its server)"
			}
			if err := confirm(cmd.InOrStdin(), cmd.ErrOrStderr(), batch,
				fmt.Sprintf("This will destroy keyslot %d of %s%s.", slot, args[0], how)); err != nil {
				return err
			}
			return t.RemoveKeyslot(cmd.Context(), slot)
		},
	}
	hdr.register(cmd.Flags())
	cmd.Flags().BoolVarP(&batch, "batch-mode", "q", false, "do not ask for confirmation")
	return cmd
}

// addKeyslot adds to device a keyslot for the KEK readNew returns (see
// addKeyslotTo). It returns the target, its header current (the caller
// closes it), and the new keyslot.
func addKeyslot(cmd *cobra.Command, a *app, hdr headerFlag, device string, oldKEK *kekFlags, readNew func() (kek, error), opts *keyring.KeyslotOptions) (*daemon.Target, int, error) {
	t, err := daemon.OpenTarget(cmd.Context(), device, daemon.TargetOptions{Header: hdr.path, Logger: a.log})
	if err != nil {
		return nil, 0, err
	}
	slot, err := addKeyslotTo(cmd, t, oldKEK, readNew, opts)
	if err != nil {
		t.Close()
		return nil, 0, err
	}
	return t, slot, nil
}

// addKeyslotTo adds to t a keyslot for the KEK readNew returns, opening
// the volume with oldKEK (or the volume's tokens). The volume's server
// does it if one serves it; otherwise its header is changed here
// (daemon.Target), and t's header is current afterwards.
func addKeyslotTo(cmd *cobra.Command, t *daemon.Target, oldKEK *kekFlags, readNew func() (kek, error), opts *keyring.KeyslotOptions) (int, error) {
	if err := secmem.SetNonDumpable(); err != nil {
		return 0, err
	}
	old, err := oldKEK.readFor(t.Keyring(), cmd.InOrStdin(), cmd.ErrOrStderr(), false)
	if err != nil {
		return 0, err
	}
	defer old.Destroy()
	var nk kek
	defer func() {
		if nk != nil {
			nk.Destroy()
		}
	}()
	return t.AddKeyslot(cmd.Context(), old, func() (keyring.Recipient, error) {
		var err error
		nk, err = readNew()
		return nk, err
	}, opts)
}

// tokenDetails describes tokens (each kind and its parameters).
func tokenDetails(tokens []keyring.Token) []daemon.TokenStatus {
	out := []daemon.TokenStatus{}
	for _, t := range tokens {
		kind, _, params := describeToken(t)
		out = append(out, daemon.TokenStatus{ID: t.ID, Type: t.Type, Kind: kind, Params: params})
	}
	return out
}
