package main

import (
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// subcommands holds the constructors of encblk's subcommands. Each command's
// file appends its constructor from an init function, so commands can be
// added without editing a shared list; the slice is not changed after init.
var subcommands []func(*app) *cobra.Command

// app is the state shared by all subcommands of one invocation.
type app struct {
	logLevel  string
	logFormat string
	log       *slog.Logger
}

// newRootCmd builds the encblk command tree.
func newRootCmd() *cobra.Command {
	a := &app{}
	root := &cobra.Command{
		Use:   "encblk",
		Short: "Encrypted virtual block devices (AES-XTS, LUKS2) served over NBD",
		Long: `encblk turns a plain file or block device into an encrypted virtual disk.
Every sector is encrypted with AES-XTS; the on-disk format is LUKS2, so
cryptsetup and the kernel's dm-crypt open encblk volumes and encblk serves
theirs. Volumes are served over the Network Block Device protocol.`,
		Version:       version(),
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE:          func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			l, err := newLogger(cmd.ErrOrStderr(), a.logLevel, a.logFormat)
			if err != nil {
				return withExit(exitUsage, err)
			}
			a.log = l
			return nil
		},
	}
	root.SetVersionTemplate("encblk {{.Version}}\n")
	root.PersistentFlags().StringVar(&a.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.PersistentFlags().StringVar(&a.logFormat, "log-format", "text", "log format: text or json")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return withExit(exitUsage, err) })
	for _, mk := range subcommands {
		root.AddCommand(mk(a))
	}
	return root
}

// newLogger returns a slog.Logger writing to w at the named level and format.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("invalid --log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("invalid --log-format %q: want text or json", format)
}

// version reports the module version and VCS revision the binary was built from.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
			if len(rev) > 12 {
				rev = rev[:12]
			}
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev != "" {
		v += " " + rev + dirty
	}
	return v + " " + bi.GoVersion
}
