package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/encblk/encblk/internal/daemon"
	"github.com/encblk/encblk/internal/secmem"
	"github.com/encblk/encblk/pkg/keyring"
	"github.com/encblk/encblk/pkg/nbd"
	"github.com/encblk/encblk/pkg/volume"
)

func init() { subcommands = append(subcommands, newServeCmd) }

// serveFlags are the flags of `encblk serve`.
type serveFlags struct {
	reencryptRate string // online reencryption cap (rotation: --reencrypt-rate)
	listen        []string
	exports       []string
	readOnly      bool
	locked        bool
	lockMode      string
	lockTimeout   time.Duration
	control       []string
	statusGroup   string
	metrics       []string
	plain         bool
	direct        bool
	tlsCert       string
	tlsKey        string
	tlsClientCA   string
	tlsRequire    bool
	maxConns      int
	idleTimeout   time.Duration
	kek           kekFlags
	header        headerFlag
	ublk          ublkFlags
}

func newServeCmd(a *app) *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve BACKING...",
		Short: "Serve encrypted volumes over NBD until SIGTERM or SIGINT",
		Long: `Serve opens each BACKING (a LUKS2 file or block device, locked with flock
against a second server), unlocks it with the KEK given by --key-file,
--passphrase-file, --kmip or --age-identity, or, with none named, through
the LUKS2 tokens bound to its keyslots, as unlock does (systemd-tpm2, with
--tpm2-pin-file for a PIN; clevis Tang/sss/tpm2, KMIP, age); if none opens
it, or with --locked, it starts
locked (the reason logged): clients may connect, their I/O waits for
"encblk unlock") and serves it over NBD as the export named by
the matching --export (default: the default export "" for one backing, the
file name for several).

A control socket (mode 0600, in a runtime directory that must be the
user's own, mode 0700) answers "encblk status|lock|unlock|rotate"; those
commands find it from the backing's path, or take --control. Only root and
the server's user may use it (checked with SO_PEERCRED at both ends);
--status-group lets a group read status through the --control sockets.

The KEK given to serve is wiped as soon as the volumes are unlocked: after
"encblk lock" nothing in the process can unwrap the volume key again.

--header FILE serves one BACKING whose LUKS2 header is detached in FILE
(as cryptsetup's --header); the backing then holds only the data.

--plain serves a backing unencrypted, for benchmarks and tests; it refuses
a backing that carries a LUKS header.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runServe(cmd, a, &f, args)
		},
	}
	fs := cmd.Flags()
	fs.StringArrayVar(&f.listen, "listen", nil, "NBD socket: unix:PATH or tcp:HOST:PORT (repeatable; default: a unix socket in the runtime dir, or systemd's sockets)")
	fs.StringArrayVar(&f.exports, "export", nil, "export name of the matching BACKING (repeatable)")
	fs.BoolVar(&f.readOnly, "read-only", false, "export read-only")
	fs.BoolVar(&f.locked, "locked", false, "start locked (without it, and with no KEK named, the volume's tokens are tried)")
	fs.StringVar(&f.lockMode, "lock-mode", "wait", "I/O while locked: wait (for unlock, up to --lock-timeout) or fail (EIO at once)")
	fs.DurationVar(&f.lockTimeout, "lock-timeout", 0, "with --lock-mode wait: fail I/O with EIO after waiting this long (0: wait until unlocked or the client goes)")
	fs.StringArrayVar(&f.control, "control", nil, "also answer the control API on this unix socket (repeatable)")
	fs.StringArrayVar(&f.metrics, "metrics-listen", nil, "serve Prometheus metrics (GET /metrics) on tcp:HOST:PORT or unix:PATH (repeatable); also on the control socket")
	fs.StringVar(&f.statusGroup, "status-group", "", "members of this group may read status (nothing else) through the --control sockets (then mode 0660)")
	fs.BoolVar(&f.plain, "plain", false, "serve the backing unencrypted (benchmarks and tests; refuses LUKS backings)")
	fs.BoolVar(&f.direct, "direct", false, "use O_DIRECT on the backing for aligned requests")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "TLS certificate (PEM) for NBD STARTTLS (TLS 1.3)")
	fs.StringVar(&f.tlsKey, "tls-key", "", "TLS private key (PEM)")
	fs.StringVar(&f.tlsClientCA, "tls-client-ca", "", "require client certificates signed by this CA (PEM): mutual TLS")
	fs.BoolVar(&f.tlsRequire, "tls-require", false, "refuse clients that do not start TLS")
	fs.IntVar(&f.maxConns, "max-connections", nbd.DefaultMaxConnections, "NBD connections served at once, on all exports; more are closed at once (0: no limit)")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", 0, "close an NBD connection with no request for this long (0: never; the kernel's client keeps idle connections)")
	fs.StringVar(&f.reencryptRate, "reencrypt-rate", "48M", "cap an online reencryption's rewrite rate, bytes per second (K, M, G suffixes; 0: no cap); encblk reencrypt --throttle overrides it")
	f.kek.register(fs, "")
	f.ublk.register(fs)
	f.header.register(fs)
	return cmd
}

func runServe(cmd *cobra.Command, a *app, f *serveFlags, args []string) error {
	mode, err := volume.ParseLockMode(f.lockMode)
	if err != nil {
		return withExit(exitUsage, err)
	}
	if f.locked && f.kek.given() {
		return withExit(exitUsage, errors.New("--locked excludes --key-file, --passphrase-file and --kmip"))
	}
	if len(f.exports) > len(args) {
		return withExit(exitUsage, fmt.Errorf("%d --export names for %d backings", len(f.exports), len(args)))
	}
	if f.lockTimeout < 0 || f.idleTimeout < 0 || f.maxConns < 0 {
		return withExit(exitUsage, errors.New("--lock-timeout, --idle-timeout and --max-connections must not be negative"))
	}
	if f.header.path != "" && (len(args) > 1 || f.plain) {
		return withExit(exitUsage, errors.New("--header serves one encrypted BACKING"))
	}
	maxConns := f.maxConns
	if maxConns == 0 {
		maxConns = -1 // nbd.Server's "no limit"
	}
	tlsCfg, err := serveTLS(f)
	if err != nil {
		return err
	}
	ublkCfg, err := f.ublk.config()
	if err != nil {
		return err
	}
	if err := secmem.SetNonDumpable(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	vols, err := openServed(ctx, cmd, a.log, f, mode, args)
	if err != nil {
		return err
	}
	closeAll := func() {
		for _, v := range vols {
			v.Close()
		}
	}
	listeners, err := serveListeners(ctx, a, f, args[0])
	if err != nil {
		closeAll()
		return err
	}
	metricsLs, err := listenAll(ctx, f.metrics, "--metrics-listen", func(ctx context.Context, addr string) (net.Listener, error) {
		var lc net.ListenConfig
		return lc.Listen(ctx, "tcp", addr)
	})
	if err != nil {
		closeAll()
		for _, l := range listeners {
			l.Close()
		}
		return err
	}
	var d *daemon.Daemon
	d, err = daemon.New(daemon.Config{Volumes: vols, Listeners: listeners, ControlPaths: f.control,
		MetricsListeners: metricsLs, StatusGroup: f.statusGroup, TLS: tlsCfg, RequireTLS: f.tlsRequire,
		MaxConnections: maxConns, IdleTimeout: f.idleTimeout, Logger: a.log, Ublk: ublkCfg,
		RotationSources: rotationSources{log: a.log},
		Ready:           func() { printUblk(cmd.OutOrStdout(), d) }})
	if err != nil {
		closeAll()
		return withExit(exitUsage, err)
	}
	limitServeMemory()
	defer startCPUProfile(a.log)()
	return d.Run(ctx)
}

// openServed opens (and, given a KEK, unlocks) each backing. The KEK is
// destroyed before it returns: it must not outlive the unlock, or after
// "encblk lock" the process would still hold what unwraps the DEK.
func openServed(ctx context.Context, cmd *cobra.Command, log *slog.Logger, f *serveFlags, mode volume.LockMode, args []string) (vols []*daemon.Volume, err error) {
	rate, err := reencryptRate(f.reencryptRate)
	if err != nil {
		return nil, err
	}
	var key kek
	if f.kek.given() && !f.plain {
		if key, err = f.kek.read(cmd.InOrStdin(), cmd.ErrOrStderr(), false); err != nil {
			return nil, err
		}
		defer key.Destroy()
	}
	for i, path := range args {
		spec := daemon.VolumeSpec{Backing: path, Header: f.header.path, ReadOnly: f.readOnly, Plain: f.plain, Direct: f.direct,
			LockMode: mode, LockTimeout: f.lockTimeout, Logger: log, ReencryptRate: rate}
		switch {
		case i < len(f.exports):
			spec.Export = f.exports[i]
		case len(args) > 1:
			spec.Export = filepath.Base(path)
		}
		var id keyring.Identity
		if key != nil {
			id = key
		}
		v, err := daemon.OpenVolume(ctx, spec, id)
		if err == nil && key == nil && !f.plain && !f.locked {
			err = unlockWithTokens(ctx, cmd, log, f, v, spec)
		}
		if err != nil {
			if v != nil {
				v.Close()
			}
			for _, v := range vols {
				v.Close()
			}
			return nil, err
		}
		vols = append(vols, v)
	}
	return vols, nil
}

// unlockWithTokens unlocks v, opened locked with no KEK named, through the
// tokens of its header (TPM2, clevis, KMIP, age: the tokenSources), as
// unlock does. If it has none, or they open no keyslot (a Tang server
// down, PCRs changed), the volume is served locked and the reason logged:
// "encblk unlock" may still open it.
func unlockWithTokens(ctx context.Context, cmd *cobra.Command, log *slog.Logger, f *serveFlags, v *daemon.Volume, spec daemon.VolumeSpec) error {
	hdr := spec.Backing
	if spec.Header != "" {
		hdr = spec.Header
	}
	kr, err := keyring.Open(hdr, &keyring.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer kr.Close()
	ids, err := f.kek.tokens(kr, cmd.InOrStdin(), cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	if err := v.Unlock(ctx, ids); err != nil {
		log.Warn("the volume's tokens did not unlock it: serving it locked (encblk unlock opens it)", "backing", spec.Backing, "err", err)
		return nil
	}
	log.Info("unlocked through the volume's tokens", "backing", spec.Backing)
	return nil
}

// serveListeners opens the NBD sockets: --listen, systemd's, or a unix
// socket in the runtime dir.
func serveListeners(ctx context.Context, a *app, f *serveFlags, first string) ([]net.Listener, error) {
	ls, err := nbd.SystemdListeners()
	if err != nil {
		return nil, err
	}
	specs := f.listen
	if len(specs) == 0 && len(ls) == 0 && !f.ublk.on {
		id, err := daemon.VolumeID(first)
		if err != nil {
			return nil, err
		}
		dir, err := daemon.PrepareRuntimeDir()
		if err != nil {
			return nil, err
		}
		specs = []string{"unix:" + filepath.Join(dir, id+".nbd")}
	}
	for _, s := range specs {
		if strings.HasPrefix(s, "tcp:") && f.tlsCert == "" {
			a.log.Warn("serving NBD over TCP without TLS: anyone who can reach the port can read and write the volume", "listen", s)
		}
	}
	opened, err := listenAll(ctx, specs, "--listen", nbd.ListenTCP)
	if err != nil {
		for _, l := range ls {
			l.Close()
		}
		return nil, err
	}
	return append(ls, opened...), nil
}

func serveTLS(f *serveFlags) (*tls.Config, error) {
	if f.tlsCert == "" && f.tlsKey == "" {
		if f.tlsRequire || f.tlsClientCA != "" {
			return nil, withExit(exitUsage, errors.New("--tls-require and --tls-client-ca need --tls-cert and --tls-key"))
		}
		return nil, nil
	}
	if f.tlsCert == "" || f.tlsKey == "" {
		return nil, withExit(exitUsage, errors.New("--tls-cert and --tls-key go together"))
	}
	return nbd.TLSConfig(f.tlsCert, f.tlsKey, f.tlsClientCA)
}

// listenAll opens a listener for each unix:PATH or tcp:HOST:PORT spec of
// flag, TCP ones with listenTCP; on failure it closes those it opened.
func listenAll(ctx context.Context, specs []string, flag string, listenTCP func(context.Context, string) (net.Listener, error)) ([]net.Listener, error) {
	var ls []net.Listener
	for _, s := range specs {
		var l net.Listener
		var err error
		switch {
		case strings.HasPrefix(s, "unix:"):
			l, err = nbd.ListenUnix(ctx, strings.TrimPrefix(s, "unix:"), -1)
		case strings.HasPrefix(s, "tcp:"):
			l, err = listenTCP(ctx, strings.TrimPrefix(s, "tcp:"))
		default:
			err = withExit(exitUsage, fmt.Errorf("%s %q: want unix:PATH or tcp:HOST:PORT", flag, s))
		}
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			return nil, err
		}
		ls = append(ls, l)
	}
	return ls, nil
}
