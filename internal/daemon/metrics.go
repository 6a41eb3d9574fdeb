package daemon

import (
	"context"
	"errors"
	"net/http"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/encblk/encblk/pkg/blockdev"
	"github.com/encblk/encblk/pkg/volume"
)

// Metrics, in the Prometheus exposition format, on GET /metrics of the
// control socket and on `serve --metrics-listen ADDR`. Every series has
// the label volume (the backing's VolumeID) and, for requests, op (read,
// write, flush, trim, zero). Names are documented in the README.
type metrics struct {
	reg *prometheus.Registry

	requests  *prometheus.CounterVec   // encblk_requests_total{volume,op}
	bytes     *prometheus.CounterVec   // encblk_request_bytes_total{volume,op}
	errs      *prometheus.CounterVec   // encblk_request_errors_total{volume,op,errno}
	latency   *prometheus.HistogramVec // encblk_request_duration_seconds{volume,op}
	collector *stateCollector
}

func newMetrics(d *Daemon) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "encblk_requests_total", Help: "Block requests completed, by operation.",
		}, []string{"volume", "op"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "encblk_request_bytes_total", Help: "Bytes read, written, trimmed or zeroed, by operation.",
		}, []string{"volume", "op"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "encblk_request_errors_total", Help: "Block requests that failed, by operation and errno.",
		}, []string{"volume", "op", "errno"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "encblk_request_duration_seconds", Help: "Time from a request reaching the volume to its completion, waits while locked included.",
			Buckets: prometheus.ExponentialBuckets(10e-6, 4, 11), // 10 us .. 10 s
		}, []string{"volume", "op"}),
		collector: &stateCollector{d: d},
	}
	m.reg.MustRegister(m.requests, m.bytes, m.errs, m.latency, m.collector)
	return m
}

// handler serves the exposition.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// instrument wraps dev so that each request is counted and timed under
// volume's label.
func (m *metrics) instrument(volume string, dev blockdev.Device) blockdev.Device {
	d := &measured{Device: dev, m: m, volume: volume}
	for i, op := range opNames {
		d.ops[i] = opMetrics{
			requests: m.requests.WithLabelValues(volume, op),
			bytes:    m.bytes.WithLabelValues(volume, op),
			latency:  m.latency.WithLabelValues(volume, op),
		}
	}
	return d
}

type op int

const (
	opRead op = iota
	opWrite
	opFlush
	opTrim
	opZero
	nOps
)

var opNames = [nOps]string{"read", "write", "flush", "trim", "zero"}

type opMetrics struct {
	requests, bytes prometheus.Counter
	latency         prometheus.Observer
}

// measured is a blockdev.Device that records each request's outcome:
// curried series, so a request costs a few atomic adds.
type measured struct {
	blockdev.Device
	m      *metrics
	volume string
	ops    [nOps]opMetrics
}

func (d *measured) done(o op, start time.Time, n int64, err error) error {
	om := &d.ops[o]
	om.latency.Observe(time.Since(start).Seconds())
	if err != nil {
		d.m.errs.WithLabelValues(d.volume, opNames[o], errnoName(err)).Inc()
		return err
	}
	om.requests.Inc()
	om.bytes.Add(float64(n))
	return nil
}

func (d *measured) ReadAt(ctx context.Context, p []byte, off int64) error {
	start := time.Now()
	return d.done(opRead, start, int64(len(p)), d.Device.ReadAt(ctx, p, off))
}

func (d *measured) WriteAt(ctx context.Context, p []byte, off int64, fua bool) error {
	start, n := time.Now(), int64(len(p)) // p may be overwritten
	return d.done(opWrite, start, n, d.Device.WriteAt(ctx, p, off, fua))
}

func (d *measured) Flush(ctx context.Context) error {
	start := time.Now()
	return d.done(opFlush, start, 0, d.Device.Flush(ctx))
}

func (d *measured) Trim(ctx context.Context, off, length int64, fua bool) error {
	start := time.Now()
	return d.done(opTrim, start, length, d.Device.Trim(ctx, off, length, fua))
}

func (d *measured) Zero(ctx context.Context, off, length int64, flags blockdev.ZeroFlags) error {
	start := time.Now()
	return d.done(opZero, start, length, d.Device.Zero(ctx, off, length, flags))
}

// Extents and Prefetch pass through when the device has them.
func (d *measured) Extents(ctx context.Context, dst []blockdev.Extent, off, length int64) ([]blockdev.Extent, error) {
	if e, ok := d.Device.(blockdev.Extenter); ok {
		return e.Extents(ctx, dst, off, length)
	}
	return append(dst, blockdev.Extent{Length: length}), nil
}

func (d *measured) Prefetch(ctx context.Context, off, length int64) error {
	if p, ok := d.Device.(blockdev.Prefetcher); ok {
		return p.Prefetch(ctx, off, length)
	}
	return nil
}

// errnoName is the errno a failed request reports to its client, by
// name (EIO when the error carries none).
func errnoName(err error) string {
	var en syscall.Errno
	if errors.As(err, &en) {
		if name := errnoNames[en]; name != "" {
			return name
		}
		return en.Error()
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return "ECANCELED"
	}
	return "EIO"
}

var errnoNames = map[syscall.Errno]string{
	syscall.EIO: "EIO", syscall.EPERM: "EPERM", syscall.EINVAL: "EINVAL", syscall.ENOSPC: "ENOSPC",
	syscall.ENOTSUP: "ENOTSUP", syscall.ESHUTDOWN: "ESHUTDOWN", syscall.EROFS: "EROFS",
	syscall.EOVERFLOW: "EOVERFLOW", syscall.ENOMEM: "ENOMEM", syscall.ECANCELED: "ECANCELED",
}

// stateCollector reads the daemon's state at scrape time.
type stateCollector struct{ d *Daemon }

var (
	descLocked = prometheus.NewDesc("encblk_volume_locked",
		"1 while the volume is locked (no DEK in memory), 0 while unlocked; absent for plain volumes.", []string{"volume"}, nil)
	descLockWait = prometheus.NewDesc("encblk_lock_wait_seconds_total",
		"Time requests spent waiting for the volume to be unlocked.", []string{"volume"}, nil)
	descConns = prometheus.NewDesc("encblk_connections",
		"Open NBD connections.", nil, nil)
	descKeyslots = prometheus.NewDesc("encblk_keyslots",
		"Keyslots by KEK kind (secret: passphrase or key file; else the token type bound to the keyslot).", []string{"volume", "kind"}, nil)
	descRotation = prometheus.NewDesc("encblk_kek_rotation_age_seconds",
		"Seconds since the last KEK rotation recorded in the header; absent if never rotated.", []string{"volume"}, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLocked, descLockWait, descConns, descKeyslots, descRotation} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descConns, prometheus.GaugeValue, float64(c.d.nbd.Connections()))
	for _, v := range c.d.cfg.Volumes {
		if v.vol == nil {
			continue
		}
		locked := 0.0
		if v.vol.State() == volume.Locked {
			locked = 1
		}
		ch <- prometheus.MustNewConstMetric(descLocked, prometheus.GaugeValue, locked, v.id)
		ch <- prometheus.MustNewConstMetric(descLockWait, prometheus.CounterValue, v.vol.Stats().LockWait.Seconds(), v.id)
		kinds := map[string]int{}
		for _, ks := range v.kr.Keyslots() {
			kinds[v.kekKind(ks.ID)]++
		}
		for kind, n := range kinds {
			ch <- prometheus.MustNewConstMetric(descKeyslots, prometheus.GaugeValue, float64(n), v.id, kind)
		}
		v.keyMu.Lock()
		at := v.rotatedAt
		v.keyMu.Unlock()
		if !at.IsZero() {
			ch <- prometheus.MustNewConstMetric(descRotation, prometheus.GaugeValue, time.Since(at).Seconds(), v.id)
		}
	}
}
