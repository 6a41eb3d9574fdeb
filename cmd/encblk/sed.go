package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/encblk/encblk/pkg/sed"
)

func init() { subcommands = append(subcommands, newSedCmd) }

func newSedCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sed",
		Short: "Self-encrypting drives: TCG Opal 2 and ATA Security",
		Long: `Commands for self-encrypting drives (SEDs). scan and info only read: they
send Level 0 Discovery (and IDENTIFY DEVICE to SATA disks) and nothing else.
setup, unlock and lock manage LUKS2 hw-opal volumes as cryptsetup 2.7 does;
setup and revert destroy data and ask for a typed YES unless --batch-mode (or --yes-destroy-data) is given. "sed ata" drives the
ATA Security feature set of SATA disks without Opal.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newSedScanCmd(a), newSedInfoCmd(a), newSedSetupCmd(a), newSedLockCmd(a, false), newSedLockCmd(a, true), newSedRevertCmd(a), newSedATACmd(a))
	return cmd
}

func newSedScanCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "scan",
		Short: "List block devices and whether they answer TCG discovery",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := sed.DefaultSysfs.Scan(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(out, res)
			}
			fmt.Fprintf(out, "%-10s %-8s %-24s %s\n", "DEVICE", "KIND", "MODEL", "SECURITY")
			for _, r := range res {
				model := r.Model
				if model == "" {
					model = "-"
				}
				fmt.Fprintf(out, "%-10s %-8s %-24s %s\n", r.Name, r.Kind, model, r.Status)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newSedInfoCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "info DEVICE",
		Short: "Show a drive's Level 0 Discovery (TCG features, locking state)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s := sed.DefaultSysfs
			name, err := s.BlockName(args[0])
			if err != nil {
				return err
			}
			r := s.Probe(cmd.Context(), name)
			if r.Discovery == nil && r.ATASecurity == nil {
				if errors.Is(r.Err, sed.ErrDeviceFailed) || errors.Is(r.Err, sed.ErrMalformed) {
					return fmt.Errorf("%s: %w", args[0], r.Err)
				}
				return fmt.Errorf("%s: %s", args[0], r.Status)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(out, r)
			}
			printSedInfo(out, r)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printSedInfo prints a probe result for people, one feature per block.
func printSedInfo(w io.Writer, r sed.ScanResult) {
	fmt.Fprintf(w, "Device:   %s (%s)\n", r.Name, r.Kind)
	if r.Model != "" {
		fmt.Fprintf(w, "Model:    %s\n", r.Model)
	}
	fmt.Fprintf(w, "Security: %s\n", r.Status)
	if r.SSC != "" {
		fmt.Fprintf(w, "SSC:      %s, base ComID 0x%04x\n", r.SSC, r.ComID)
	}
	if s := r.ATASecurity; s != nil {
		fmt.Fprintf(w, "\nATA Security feature set:\n")
		fmt.Fprintf(w, "  enabled %s, locked %s, frozen %s, count expired %s\n", yn(s.Enabled), yn(s.Locked), yn(s.Frozen), yn(s.CountExpired))
		level := "high"
		if s.MasterMaximum {
			level = "maximum"
		}
		fmt.Fprintf(w, "  security level %s, enhanced erase %s, erase ~%d min, enhanced erase ~%d min\n",
			level, yn(s.EnhancedErase), s.EraseMinutes, s.EnhancedMinutes)
	}
	d := r.Discovery
	if d == nil {
		return
	}
	fmt.Fprintf(w, "\nLevel 0 Discovery (revision %d):\n", d.Revision)
	if f := d.TPer; f != nil {
		fmt.Fprintf(w, "  TPer (v%d): sync %s, async %s, ack/nak %s, buffer mgmt %s, streaming %s, ComID mgmt %s\n",
			f.Version, yn(f.Sync), yn(f.Async), yn(f.AckNak), yn(f.BufferManagement), yn(f.Streaming), yn(f.ComIDManagement))
	}
	if f := d.Locking; f != nil {
		fmt.Fprintf(w, "  Locking (v%d): supported %s, enabled %s, locked %s, media encryption %s, MBR enabled %s, MBR done %s\n",
			f.Version, yn(f.LockingSupported), yn(f.LockingEnabled), yn(f.Locked), yn(f.MediaEncryption), yn(f.MBREnabled), yn(f.MBRDone))
	}
	if f := d.Geometry; f != nil {
		fmt.Fprintf(w, "  Geometry (v%d): align %s, logical block %d, alignment granularity %d, lowest aligned LBA %d\n",
			f.Version, yn(f.Align), f.LogicalBlockSize, f.AlignmentGranularity, f.LowestAlignedLBA)
	}
	if f := d.Enterprise; f != nil {
		fmt.Fprintf(w, "  Enterprise (v%d): base ComID 0x%04x, %d ComIDs, range crossing %s\n", f.Version, f.BaseComID, f.NumComIDs, yn(f.RangeCrossing))
	}
	if f := d.OpalV1; f != nil {
		fmt.Fprintf(w, "  Opal 1 (v%d): base ComID 0x%04x, %d ComIDs\n", f.Version, f.BaseComID, f.NumComIDs)
	}
	if f := d.SingleUser; f != nil {
		fmt.Fprintf(w, "  Single User Mode (v%d): %d locking objects, any %s, all %s, policy %s\n", f.Version, f.LockingObjects, yn(f.Any), yn(f.All), yn(f.Policy))
	}
	if f := d.DataStore; f != nil {
		fmt.Fprintf(w, "  DataStore (v%d): %d tables, %d bytes total, alignment %d\n", f.Version, f.MaxTables, f.MaxTotalSize, f.SizeAlignment)
	}
	for _, v := range []struct {
		name string
		f    *sed.SSCV2Feature
	}{{"Opal 2", d.OpalV2}, {"Ruby", d.Ruby}} {
		if f := v.f; f != nil {
			fmt.Fprintf(w, "  %s (v%d): base ComID 0x%04x, %d ComIDs, range crossing %s, %d admins, %d users, initial PIN 0x%02x, reverted PIN 0x%02x\n",
				v.name, f.Version, f.BaseComID, f.NumComIDs, yn(f.RangeCrossing), f.NumAdmins, f.NumUsers, f.InitialPIN, f.RevertedPIN)
		}
	}
	for _, v := range []struct {
		name string
		f    *sed.PyriteFeature
	}{{"Opalite", d.Opalite}, {"Pyrite 1", d.PyriteV1}, {"Pyrite 2", d.PyriteV2}} {
		if f := v.f; f != nil {
			fmt.Fprintf(w, "  %s (v%d): base ComID 0x%04x, %d ComIDs, initial PIN 0x%02x, reverted PIN 0x%02x\n",
				v.name, f.Version, f.BaseComID, f.NumComIDs, f.InitialPIN, f.RevertedPIN)
		}
	}
	if f := d.BlockSID; f != nil {
		fmt.Fprintf(w, "  Block SID (v%d): SID value state %s, SID blocked %s, hardware reset %s\n", f.Version, yn(f.SIDValueState), yn(f.SIDBlocked), yn(f.HardwareReset))
	}
	if f := d.DataRemoval; f != nil {
		var mech []string
		for i, n := range []string{"overwrite", "block erase", "crypto erase", "unmap", "reset write pointers", "vendor"} {
			if f.Mechanisms&(1<<i) != 0 {
				mech = append(mech, n)
			}
		}
		fmt.Fprintf(w, "  Data Removal (v%d): %s, processing %s\n", f.Version, strings.Join(mech, ", "), yn(f.Processing))
	}
	known := map[uint16]bool{sed.FeatureTPer: true, sed.FeatureLocking: true, sed.FeatureGeometry: true, sed.FeatureEnterprise: true,
		sed.FeatureOpalV1: true, sed.FeatureSingleUser: true, sed.FeatureDataStore: true, sed.FeatureOpalV2: true, sed.FeatureOpalite: true,
		sed.FeaturePyriteV1: true, sed.FeaturePyriteV2: true, sed.FeatureRuby: true, sed.FeatureBlockSID: true, sed.FeatureDataRemoval: true}
	for _, f := range d.Features {
		if !known[f.Code] {
			fmt.Fprintf(w, "  Feature 0x%04x (v%d): %x\n", f.Code, f.Version, f.Data)
		}
	}
}

func yn(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
