package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/encblk/encblk/internal/secmem"
	"github.com/encblk/encblk/pkg/keyring"
)

func init() { subcommands = append(subcommands, newDumpCmd) }

func newDumpCmd(a *app) *cobra.Command {
	var (
		hdr     headerFlag
		kek     kekFlags
		asJSON  bool
		dumpKey bool
		batch   bool
	)
	cmd := &cobra.Command{
		Use:   "dump DEVICE",
		Short: "Show a LUKS header, like cryptsetup luksDump",
		Long: `Dump prints the LUKS header of DEVICE (or of the --header file): version,
UUID, data segments, keyslots with their KDF, tokens and digests. --json
prints the LUKS2 JSON metadata. --dump-volume-key unlocks the volume with the
given KEK and prints the data-encryption key: anyone who has it can read the
data without any KEK, so it asks for confirmation unless --batch-mode.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := hdr.open(args[0], true)
			if err != nil {
				return err
			}
			defer k.Close()
			out := cmd.OutOrStdout()
			if dumpKey {
				return dumpVolumeKey(cmd, k, &kek, batch, args[0])
			}
			if asJSON {
				text, err := k.MetadataJSON()
				if err != nil {
					return err
				}
				var buf bytes.Buffer
				if err := json.Indent(&buf, text, "", "  "); err != nil {
					return err
				}
				buf.WriteByte('\n')
				_, err = out.Write(buf.Bytes())
				return err
			}
			printDump(out, k)
			return nil
		},
	}
	fs := cmd.Flags()
	hdr.register(fs)
	kek.register(fs, "")
	fs.BoolVar(&asJSON, "json", false, "print the LUKS2 JSON metadata")
	fs.BoolVar(&dumpKey, "dump-volume-key", false, "unlock with the KEK and print the volume key (DEK)")
	fs.BoolVarP(&batch, "batch-mode", "q", false, "do not ask for confirmation")
	return cmd
}

func dumpVolumeKey(cmd *cobra.Command, k *keyring.Keyring, kek *kekFlags, batch bool, device string) error {
	if err := confirm(cmd.InOrStdin(), cmd.ErrOrStderr(), batch,
		"The volume key dump is sensitive: it opens the volume without any KEK.\nStore it encrypted in a safe place."); err != nil {
		return err
	}
	if err := secmem.SetNonDumpable(); err != nil {
		return err
	}
	key, err := kek.readFor(k, cmd.InOrStdin(), cmd.ErrOrStderr(), false)
	if err != nil {
		return err
	}
	defer key.Destroy()
	dek, err := k.Unlock(cmd.Context(), key)
	if err != nil {
		return err
	}
	defer dek.Destroy()
	seg := k.Segments()
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "LUKS header information for %s\n", device)
	if len(seg) > 0 {
		name, mode, _ := strings.Cut(seg[0].Encryption, "-")
		fmt.Fprintf(out, "Cipher name:   \t%s\nCipher mode:   \t%s\nPayload offset:\t%d\n", name, mode, seg[0].Offset/512)
	}
	fmt.Fprintf(out, "UUID:          \t%s\nMK bits:       \t%d\n", k.UUID(), dek.Len()*8)
	// Hex is built in protected memory and written once.
	b := dek.Bytes()
	text, err := secmem.New(len(b)*3 + (len(b)/16+1)*4 + 16)
	if err != nil {
		return err
	}
	defer text.Destroy()
	t := text.Bytes()[:0]
	const hexd = "0123456789abcdef"
	t = append(t, "MK dump:\t"...)
	for i, c := range b {
		if i > 0 && i%16 == 0 {
			t = append(t, "\n\t\t"...)
		}
		t = append(t, hexd[c>>4], hexd[c&15], ' ')
	}
	t = append(t, '\n')
	_, err = out.Write(t)
	return err
}

// printDump prints the header like cryptsetup luksDump.
func printDump(w io.Writer, k *keyring.Keyring) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("LUKS header information\n")
	p("Version:       \t%d\n", k.Version())
	if k.Version() == 2 {
		p("Epoch:         \t%d\n", k.SeqID())
		p("Metadata area: \t%d [bytes]\n", k.MetadataSize())
		p("Keyslots area: \t%d [bytes]\n", k.Config().KeyslotsSize)
	}
	p("UUID:          \t%s\n", k.UUID())
	p("Label:         \t%s\n", orNone(k.Label(), "(no label)"))
	p("Subsystem:     \t%s\n", orNone(k.Subsystem(), "(no subsystem)"))
	cfg := k.Config()
	p("Flags:       \t%s\n", orNone(strings.Join(cfg.Flags, " "), "(no flags)"))
	if len(cfg.Requirements) > 0 {
		p("Requirements:\t%s\n", strings.Join(cfg.Requirements, " "))
	}
	if perr, serr := k.HeaderStatus(); perr != nil || serr != nil {
		p("Header copies:\tprimary %s, secondary %s (run encblk repair)\n", statusText(perr), statusText(serr))
	}
	p("\nData segments:\n")
	for _, s := range k.Segments() {
		p("  %d: %s\n", s.ID, s.Type)
		p("\toffset: %d [bytes]\n", s.Offset)
		if s.Dynamic {
			p("\tlength: (whole device)\n")
		} else {
			p("\tlength: %d [bytes]\n", s.Size)
		}
		if s.Encryption != "" {
			p("\tcipher: %s\n", s.Encryption)
			p("\tsector: %d [bytes]\n", s.SectorSize)
		}
		if s.IntegrityType != "" {
			p("\tintegrity: %s\n", s.IntegrityType)
		}
		if s.IVTweak != 0 {
			p("\tIV tweak: %d\n", s.IVTweak)
		}
		if len(s.Flags) > 0 {
			p("\tflags : %s\n", strings.Join(s.Flags, ", "))
		}
	}
	p("\nKeyslots:\n")
	for _, ks := range k.Keyslots() {
		p("  %d: %s\n", ks.ID, ks.Type)
		p("\tKey:        %d bits\n", ks.KeySize*8)
		p("\tPriority:   %s\n", [...]string{"ignored", "normal", "preferred"}[ks.Priority])
		p("\tCipher:     %s\n", ks.AreaEncryption)
		p("\tCipher key: %d bits\n", ks.AreaKeySize*8)
		p("\tPBKDF:      %s\n", ks.KDF.Type)
		if ks.KDF.Type == "pbkdf2" {
			p("\tHash:       %s\n", ks.KDF.Hash)
			p("\tIterations: %d\n", ks.KDF.Iterations)
		} else if ks.KDF.Type != "" {
			p("\tTime cost:  %d\n", ks.KDF.Iterations)
			p("\tMemory:     %d\n", ks.KDF.MemoryKiB)
			p("\tThreads:    %d\n", ks.KDF.Parallel)
		}
		p("\tAF stripes: %d\n", ks.AFStripes)
		p("\tAF hash:    %s\n", ks.AFHash)
		p("\tArea offset:%d [bytes]\n", ks.AreaOffset)
		p("\tArea length:%d [bytes]\n", ks.AreaSize)
		for _, t := range ks.Tokens {
			p("\tToken:      %d (%s)\n", t.ID, t.Type)
		}
	}
	if k.Version() == 2 {
		p("Tokens:\n")
		for _, t := range k.Tokens() {
			p("  %d: %s\n", t.ID, t.Type)
			if _, text, _ := describeToken(t); text != "" {
				p("\tSource:     %s\n", text) // tang URL, sss threshold, PCRs…
			}
			for _, s := range t.Keyslots {
				p("\tKeyslot:    %d\n", s)
			}
		}
	}
}

func orNone(s, none string) string {
	if s == "" {
		return none
	}
	return s
}

func statusText(err error) string {
	if err == nil {
		return "ok"
	}
	return "bad: " + err.Error()
}
