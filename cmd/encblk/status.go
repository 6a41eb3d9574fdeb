package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/encblk/encblk/internal/daemon"
	"github.com/encblk/encblk/pkg/keyring"
)

func init() { subcommands = append(subcommands, newStatusCmd) }

func newStatusCmd(a *app) *cobra.Command {
	var (
		t      targetFlags
		asJSON bool
		ot     opalTargetFlags
	)
	cmd := &cobra.Command{
		Use:   "status TARGET",
		Short: "Show a volume's lock state, geometry, keyslots and I/O counters",
		Long: `Status asks the server of TARGET (a backing path, or --control) for the
volume's state, or, when no process serves it, reads its header. For a LUKS2
hw-opal(-crypt) volume on a self-encrypting drive (--header for a detached
header) it adds what the drive reports: Level 0 Discovery's locking state
and, with --admin-key-file, the locking range's bounds and lock state.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			target := argOr(args, 0)
			st := daemon.Status{Volumes: []daemon.VolumeStatus{}}
			served := true
			kr, ov, err := ot.open(target)
			if err != nil {
				return err
			}
			if kr != nil {
				defer kr.Close()
			}
			if ov != nil {
				ovs, err := ot.status(cmd.Context(), target, ov)
				if err != nil {
					return err
				}
				st.Volumes = append(st.Volumes, ovs)
				return writeStatus(cmd.OutOrStdout(), st, false, asJSON)
			}
			c, vol, err := t.client(cmd.Context(), target)
			if err == nil {
				st, err = c.Status(cmd.Context())
			}
			switch {
			case errors.Is(err, daemon.ErrNotServed) && t.control == "":
				served = false
				var vs daemon.VolumeStatus
				if kr != nil {
					vs, err = daemon.HeaderStatus(target, kr)
				} else {
					vs, err = daemon.OfflineStatus(target) // for its error
				}
				if err != nil {
					return err
				}
				st.Volumes = append(st.Volumes, vs)
			case err != nil:
				return err
			case vol != "":
				all := st.Volumes
				st.Volumes = []daemon.VolumeStatus{}
				for _, v := range all {
					if v.ID == vol {
						st.Volumes = append(st.Volumes, v)
					}
				}
				if len(st.Volumes) == 0 {
					return fmt.Errorf("%s: %w", target, daemon.ErrNoVolume)
				}
			}
			out := cmd.OutOrStdout()
			if asJSON && len(st.Volumes) == 1 {
				addKMIPTargetStatus(cmd.Context(), &st.Volumes[0], kr)
				addTokenDetails(&st.Volumes[0], kr)
			}
			if err := writeStatus(out, st, served, asJSON); err != nil || asJSON {
				return err
			}
			printKMIPTargetStatus(cmd.Context(), out, kr)
			return nil
		},
	}
	t.register(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	ot.register(cmd.Flags(), true, false)
	return cmd
}

// writeStatus prints st as JSON or for people.
func writeStatus(out io.Writer, st daemon.Status, served, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	printStatus(out, st, served)
	return nil
}

func printStatus(out io.Writer, st daemon.Status, served bool) {
	w := tabwriter.NewWriter(out, 0, 4, 1, ' ', 0)
	defer w.Flush()
	if served {
		fmt.Fprintf(w, "server:\tpid %d, %d NBD connections\n", st.PID, st.Connections)
	}
	for i, v := range st.Volumes {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "backing:\t%s\n", v.Backing)
		if served {
			fmt.Fprintf(w, "export:\t%q\n", v.Export)
		}
		if v.Ublk != "" {
			fmt.Fprintf(w, "ublk:\t%s\n", v.Ublk)
		}
		printUblkOrphans(w, v)
		fmt.Fprintf(w, "state:\t%s\n", v.State)
		if v.State == "plain" {
			fmt.Fprintf(w, "size:\t%d bytes\n", v.Size)
			continue
		}
		if v.LockMode != "" {
			fmt.Fprintf(w, "lock mode:\t%s\n", v.LockMode)
		}
		fmt.Fprintf(w, "uuid:\t%s\n", v.UUID)
		fmt.Fprintf(w, "format:\tLUKS%d\n", v.LUKSVersion)
		fmt.Fprintf(w, "cipher:\t%s, %d-bit key\n", v.Cipher, v.KeyBits)
		fmt.Fprintf(w, "sector size:\t%d\n", v.SectorSize)
		if v.Size > 0 {
			fmt.Fprintf(w, "size:\t%d bytes\n", v.Size)
		} else {
			fmt.Fprintf(w, "size:\tto the end of the backing\n")
		}
		fmt.Fprintf(w, "data offset:\t%d\n", v.DataOffset)
		fmt.Fprintf(w, "discards:\t%s\n", v.Discards)
		for _, ks := range v.Keyslots {
			fmt.Fprintf(w, "keyslot %d:\t%s\n", ks.ID, ks.KDF)
		}
		if v.LastRotation != nil {
			fmt.Fprintf(w, "last KEK rotation:\t%s\n", v.LastRotation.Format(time.RFC3339))
		} else {
			fmt.Fprintf(w, "last KEK rotation:\tnever\n")
		}
		printRotation(w, v.Rotation, "")
		printOpalStatus(w, v.Opal)
		if r := v.Reencryption; r != nil {
			if r.Error != "" {
				fmt.Fprintf(w, "reencryption:\t%s\n", r.Error)
			} else {
				fmt.Fprintf(w, "reencryption:\t%s, %s, %s resilience, %s at %.1f%% (%d of %d bytes)",
					r.Mode, r.Direction, r.Resilience, r.State, r.Percent, r.Done, r.Total)
				if r.Rate > 0 {
					fmt.Fprintf(w, ", %.1f MiB/s, %s left", r.Rate/(1<<20), time.Duration(r.ETA)*time.Second)
				}
				fmt.Fprintln(w)
			}
		}
		if served {
			fmt.Fprintf(w, "bytes read:\t%d\n", v.BytesRead)
			fmt.Fprintf(w, "bytes written:\t%d\n", v.BytesWritten)
			fmt.Fprintf(w, "bytes discarded:\t%d\n", v.BytesDiscarded)
		}
	}
}

// addTokenDetails names the kind and parameters of each keyslot's tokens
// in vs (status --json), from the header kr (nil: none).
func addTokenDetails(vs *daemon.VolumeStatus, kr *keyring.Keyring) {
	if kr == nil {
		return
	}
	byID := map[int][]keyring.Token{}
	for _, ks := range kr.Keyslots() {
		byID[ks.ID] = ks.Tokens
	}
	for i := range vs.Keyslots {
		if ts := byID[vs.Keyslots[i].ID]; len(ts) > 0 {
			vs.Keyslots[i].TokenDetails = tokenDetails(ts)
		}
	}
}
