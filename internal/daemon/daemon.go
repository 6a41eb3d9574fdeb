package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"

	"github.com/encblk/encblk/pkg/nbd"
)

// Config is what a Daemon serves.
type Config struct {
	// Volumes are served as NBD exports named by their Spec().Export. The
	// Daemon owns them: Run closes them when it returns.
	Volumes []*Volume
	// Listeners accept NBD clients (see nbd.ListenUnix, nbd.ListenTCP,
	// nbd.SystemdListeners). Run closes them.
	Listeners []net.Listener
	// ControlPaths are control sockets to create besides the well-known
	// one of each volume (ControlSocket).
	ControlPaths []string
	// NoWellKnownControl skips the per-volume sockets in RuntimeDir.
	NoWellKnownControl bool
	// StatusGroup, if not empty, names a group (or gid) whose members may
	// read status and keyslots, and nothing else, through the ControlPaths
	// sockets, which are then mode 0660 and owned by that group. The
	// well-known sockets stay in the 0700 runtime directory. Every other
	// client must be root or this process's user (SO_PEERCRED).
	StatusGroup string
	// MetricsListeners serve the Prometheus exposition (GET /metrics, and
	// nothing else) over HTTP; it is also on the control sockets. Run
	// closes them.
	MetricsListeners []net.Listener
	// TLS and RequireTLS are passed to the NBD server.
	TLS        *tls.Config
	RequireTLS bool
	// MaxConnections and IdleTimeout are passed to the NBD server (see
	// nbd.Server: 0 is its default limit, negative no limit; an
	// IdleTimeout of 0 keeps idle connections open).
	MaxConnections int
	IdleTimeout    time.Duration
	// Logger receives the daemon's events; nil discards them.
	Logger *slog.Logger
	// Ready, when set, is called once every socket listens.
	Ready func()
	// Ublk, when set, also serves every volume as a ublk block device;
	// Listeners may then be empty.
	Ublk *UblkConfig
	// Clock is the rotation scheduler's time (nil: the system's); tests
	// inject one (see rotation.go).
	Clock Clock
	// RotationSources are the KEKs the server may obtain by itself for a
	// rotation its volumes' policies ask for, besides the key files of a
	// policy's key directory (nil: only those).
	RotationSources RotationSources
}

// Daemon serves volumes over NBD and answers the control API.
type Daemon struct {
	cfg   Config
	log   *slog.Logger
	nbd   *nbd.Server
	gid   int // of StatusGroup; -1 without
	ublk  ublkSet
	met   *metrics
	sched *scheduler
}

// New checks cfg and returns a Daemon.
func New(cfg Config) (*Daemon, error) {
	if len(cfg.Volumes) == 0 {
		return nil, errors.New("no volume to serve")
	}
	seen := map[string]bool{}
	for _, v := range cfg.Volumes {
		if seen[v.spec.Export] {
			return nil, fmt.Errorf("export name %q used twice", v.spec.Export)
		}
		seen[v.spec.Export] = true
	}
	if len(cfg.Listeners) == 0 && cfg.Ublk == nil {
		return nil, errors.New("no NBD listener")
	}
	if cfg.Ublk != nil {
		if err := cfg.Ublk.check(len(cfg.Volumes)); err != nil {
			return nil, err
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	gid, err := lookupGroup(cfg.StatusGroup)
	if err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, log: log, gid: gid, sched: newScheduler(cfg.Clock, cfg.RotationSources)}
	d.met = newMetrics(d)
	exports := nbd.StaticExports{}
	for _, v := range cfg.Volumes {
		v.sched = d.sched
		v.instrument(d.met)
		exports[v.spec.Export] = v.export
	}
	d.nbd = &nbd.Server{Exports: exports, TLS: cfg.TLS, RequireTLS: cfg.RequireTLS, Logger: log,
		MaxConnections: cfg.MaxConnections, IdleTimeout: cfg.IdleTimeout}
	return d, nil
}

// Run serves until ctx is cancelled (SIGTERM/SIGINT in the CLI), then
// shuts down gracefully: it tells systemd STOPPING, stops accepting, lets
// connections finish their requests, flushes and closes the volumes
// (wiping their keys) and removes its control sockets. Under systemd it
// reports READY once everything listens.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.closeVolumes()
	defer func() {
		for _, l := range d.cfg.MetricsListeners {
			l.Close()
		}
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var ctlListeners []net.Listener
	defer func() {
		for _, l := range ctlListeners {
			l.Close()
		}
	}()
	var ctlPaths []string
	listen := func(p string, gid int) error {
		l, err := nbd.ListenUnix(ctx, p, gid)
		if err != nil {
			return fmt.Errorf("control socket: %w", err)
		}
		ctlListeners = append(ctlListeners, secretListener{l})
		ctlPaths = append(ctlPaths, p)
		return nil
	}
	defer func() {
		for _, p := range ctlPaths {
			os.Remove(p)
		}
	}()
	for _, p := range d.cfg.ControlPaths {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return fmt.Errorf("control socket: %w", err)
		}
		if err := listen(p, d.gid); err != nil {
			return err
		}
	}
	if !d.cfg.NoWellKnownControl {
		if _, err := PrepareRuntimeDir(); err != nil {
			return err
		}
		for _, v := range d.cfg.Volumes {
			p, err := ControlSocket(v.spec.Backing)
			if err != nil {
				return err
			}
			if err := listen(p, -1); err != nil {
				return err
			}
		}
	}

	hs := &http.Server{Handler: d.handler(), ReadHeaderTimeout: 10 * time.Second, ConnContext: withConn,
		ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelDebug)}
	var wg sync.WaitGroup
	for _, l := range ctlListeners {
		wg.Go(func() { hs.Serve(l) })
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", d.met.handler())
	ms := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelDebug)}
	for _, l := range d.cfg.MetricsListeners {
		d.log.Info("listening", "metrics", l.Addr().String())
		wg.Go(func() { ms.Serve(l) })
	}

	if err := d.startUblk(ctx); err != nil {
		stopped := ctx.Err() != nil // SIGTERM while a locked volume held up the start
		cancel()
		hs.Close()
		ms.Close()
		wg.Wait()
		if stopped {
			d.log.Info("stopped before the ublk devices were up", "err", err)
			return nil
		}
		return err
	}
	defer d.stopUblk()
	var nbdDone chan error // nil (never ready) without listeners
	if len(d.cfg.Listeners) > 0 {
		nbdDone = make(chan error, 1)
		go func() { nbdDone <- d.nbd.Serve(ctx, d.cfg.Listeners...) }()
	}

	for _, v := range d.cfg.Volumes {
		d.log.Info("serving", "backing", v.spec.Backing, "export", v.spec.Export, "state", v.Status().State)
	}
	for _, l := range d.cfg.Listeners {
		d.log.Info("listening", "nbd", l.Addr().String())
	}
	for _, p := range ctlPaths {
		d.log.Info("listening", "control", p)
	}
	sddaemon.SdNotify(false, sddaemon.SdNotifyReady)
	if d.cfg.Ready != nil {
		d.cfg.Ready()
	}

	rotDone := make(chan struct{})
	go func() {
		defer close(rotDone)
		d.runRotations(ctx)
	}()
	defer func() {
		cancel()
		<-rotDone
	}()

	var err error
	select {
	case <-ctx.Done():
		if nbdDone != nil {
			err = <-nbdDone
		}
	case err = <-nbdDone:
	}
	sddaemon.SdNotify(false, sddaemon.SdNotifyStopping)
	d.log.Info("shutting down")
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	hs.Shutdown(sctx)
	ms.Shutdown(sctx)
	scancel()
	wg.Wait()
	if errors.Is(err, nbd.ErrServerClosed) {
		err = nil
	}
	return err
}

func (d *Daemon) closeVolumes() {
	for _, v := range d.cfg.Volumes {
		if err := v.Close(); err != nil {
			d.log.Error("closing volume", "backing", v.spec.Backing, "err", err)
		}
	}
}

// volume finds a served volume by ID or export name; "" names the only one.
func (d *Daemon) volume(ref string) (*Volume, error) {
	if ref == "" && len(d.cfg.Volumes) == 1 {
		return d.cfg.Volumes[0], nil
	}
	for _, v := range d.cfg.Volumes {
		if v.id == ref {
			return v, nil
		}
	}
	for _, v := range d.cfg.Volumes {
		if v.spec.Export == ref {
			return v, nil
		}
	}
	return nil, fmt.Errorf("%w: %q", ErrNoVolume, ref)
}
