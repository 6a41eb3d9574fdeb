package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/encblk/encblk/internal/daemon"
	"github.com/encblk/encblk/pkg/rotation"
)

func init() { subcommands = append(subcommands, newPolicyCmd) }

func newPolicyCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Set, show or clear a volume's rotation periods (KEK rotation, reencryption)",
		Long: `A volume's rotation policy says how often its server rotates the KEK
(--rotate-kek-every) and reencrypts the data with a new data key
(--reencrypt-every), and where a new KEK comes from (--kek-key-dir DIR: a new
key file there; --kek-kmip CONFIG: a new key on the KMIP server). Periods are
a number and a unit, h, d, w or y (365 days): 30d, 12w, 1y; at least 7d, at
most 70y; "off" turns one off. Nothing rotates by default.

The policy is kept in the volume's header (a LUKS2 token of type
encblk-rotation, bound to no keyslot, which cryptsetup keeps) and carried out
by the process that serves the volume (encblk serve), with the KEKs it can
obtain by itself; see the README's "Re-keying". encblk status shows the last
and next rotations, and why a due one was not done.`,
	}
	cmd.AddCommand(newPolicySetCmd(a), newPolicyShowCmd(a), newPolicyClearCmd(a))
	return cmd
}

func newPolicySetCmd(a *app) *cobra.Command {
	var (
		t                   targetFlags
		hdr                 headerFlag
		kekEvery, reencEver string
		keyDir, kmipConfig  string
	)
	cmd := &cobra.Command{
		Use:   "set TARGET",
		Short: "Set the rotation periods and the KEK source (the parts given; the rest is kept)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var p rotation.Policy
			var set rotation.Fields
			var err error
			fs := cmd.Flags()
			if fs.Changed("rotate-kek-every") {
				if p.KEKEvery, err = rotation.ParsePeriod(kekEvery); err != nil {
					return withExit(exitUsage, fmt.Errorf("--rotate-kek-every: %w", err))
				}
				set.KEKEvery = true
			}
			if fs.Changed("reencrypt-every") {
				if p.ReencryptEvery, err = rotation.ParsePeriod(reencEver); err != nil {
					return withExit(exitUsage, fmt.Errorf("--reencrypt-every: %w", err))
				}
				set.ReencryptEvery = true
			}
			if keyDir != "" || kmipConfig != "" {
				if keyDir != "" && kmipConfig != "" {
					return withExit(exitUsage, errors.New("--kek-key-dir and --kek-kmip are exclusive"))
				}
				if p.KeyDir, err = absPath(keyDir); err == nil {
					p.KMIPConfig, err = absPath(kmipConfig)
				}
				if err != nil {
					return withExit(exitUsage, err)
				}
				set.Source = true
			}
			if set == (rotation.Fields{}) {
				return withExit(exitUsage, errors.New("give --rotate-kek-every, --reencrypt-every, --kek-key-dir or --kek-kmip"))
			}
			return changePolicy(cmd, a, t, hdr, args, p, set)
		},
	}
	fs := cmd.Flags()
	t.register(fs)
	hdr.register(fs)
	fs.StringVar(&kekEvery, "rotate-kek-every", "", "rotate the KEK this often (e.g. 90d, 1y; off)")
	fs.StringVar(&reencEver, "reencrypt-every", "", "reencrypt the data with a new data key this often (e.g. 1y; off)")
	fs.StringVar(&keyDir, "kek-key-dir", "", "a KEK rotation writes a new key file (mode 0600) into this directory and replaces the keyslot a key file UUID-*.key there opens")
	fs.StringVar(&kmipConfig, "kek-kmip", "", "a KEK rotation moves the KMIP keyslot to a new key on the server of this client configuration")
	return cmd
}

func newPolicyClearCmd(a *app) *cobra.Command {
	var (
		t   targetFlags
		hdr headerFlag
	)
	cmd := &cobra.Command{
		Use:   "clear TARGET",
		Short: "Turn rotation off (the last rotation times are kept)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return changePolicy(cmd, a, t, hdr, args, rotation.Policy{}, rotation.All)
		},
	}
	t.register(cmd.Flags())
	hdr.register(cmd.Flags())
	return cmd
}

// changePolicy sets the policy through the volume's server, or in its
// header when none serves it, and prints the result.
func changePolicy(cmd *cobra.Command, a *app, t targetFlags, hdr headerFlag, args []string, p rotation.Policy, set rotation.Fields) error {
	target := argOr(args, 0)
	if target == "" && t.control == "" {
		return withExit(exitUsage, errors.New("name a backing (TARGET) or --control SOCK"))
	}
	tg, err := daemon.OpenTarget(cmd.Context(), target, daemon.TargetOptions{Header: hdr.path, Control: t.control, Logger: a.log})
	if err != nil {
		return err
	}
	defer tg.Close()
	rec, err := tg.SetRotationPolicy(cmd.Context(), p, set)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 1, ' ', 0)
	defer w.Flush()
	printRotation(w, daemon.RotationItems(rec, time.Now()), "")
	return nil
}

func newPolicyShowCmd(a *app) *cobra.Command {
	var (
		t      targetFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "show TARGET",
		Short: "Show the rotation policy, the last and next rotations, and what blocks a due one",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			target := argOr(args, 0)
			var vs daemon.VolumeStatus
			c, vol, err := t.client(cmd.Context(), target)
			if err == nil {
				var st daemon.Status
				if st, err = c.Status(cmd.Context()); err == nil {
					vs, err = pickVolume(st, vol)
				}
			} else if errors.Is(err, daemon.ErrNotServed) && t.control == "" {
				vs, err = daemon.OfflineStatus(target)
			}
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(vs.Rotation)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 1, ' ', 0)
			defer w.Flush()
			if vs.Rotation == nil {
				fmt.Fprintln(w, "rotation:\toff (no policy)")
				return nil
			}
			printRotation(w, vs.Rotation, "")
			return nil
		},
	}
	t.register(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// pickVolume finds volume vol (an ID; "" for the only one) in st.
func pickVolume(st daemon.Status, vol string) (daemon.VolumeStatus, error) {
	for _, v := range st.Volumes {
		if vol == "" || v.ID == vol {
			return v, nil
		}
	}
	return daemon.VolumeStatus{}, fmt.Errorf("%w: %q", daemon.ErrNoVolume, vol)
}

// printRotation prints a rotation status, each line after indent (status
// prints it within the volume's lines).
func printRotation(w io.Writer, r *daemon.RotationStatus, indent string) {
	if r == nil {
		return
	}
	line := func(what string, it daemon.RotationItem) {
		fmt.Fprintf(w, "%s%s:\tevery %s", indent, what, it.Every)
		if it.Last != nil {
			fmt.Fprintf(w, ", last %s", it.Last.Format(time.RFC3339))
			switch {
			case it.Unrecorded:
				fmt.Fprintf(w, " (observed now: another tool replaced the volume key, e.g. cryptsetup reencrypt; its server records it)")
			case it.Observed:
				fmt.Fprintf(w, " (observed: another tool replaced the volume key, e.g. cryptsetup reencrypt)")
			}
		} else {
			fmt.Fprintf(w, ", last never")
		}
		if it.Next != nil {
			fmt.Fprintf(w, ", next %s", it.Next.Format(time.RFC3339))
			if it.Overdue {
				fmt.Fprintf(w, " (OVERDUE)")
			}
		}
		fmt.Fprintln(w)
		if it.Blocked != "" {
			fmt.Fprintf(w, "%s%s:\t%s\n", indent, what+" blocked", it.Blocked)
		}
	}
	line("KEK rotation", r.KEK)
	if r.KEKSource != "" {
		fmt.Fprintf(w, "%snew KEKs from:\t%s\n", indent, r.KEKSource)
	}
	if len(r.KMIPRevokePending) > 0 {
		fmt.Fprintf(w, "%sreplaced KMIP keys still active:\t%s (revocation failed; the server retries)\n", indent, strings.Join(r.KMIPRevokePending, ", "))
	}
	line("DEK rotation", r.Reencrypt)
}

func absPath(p string) (string, error) {
	if p == "" {
		return "", nil
	}
	return filepath.Abs(p)
}
