package kmip

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"
)

// DefaultTimeout bounds one attempt at one server: connect, TLS handshake,
// request and response.
const DefaultTimeout = 10 * time.Second

// Config configures a Client.
type Config struct {
	// Servers are "host:port" addresses of one key manager's nodes, tried
	// in order until one answers. KMIP's registered port is 5696.
	Servers []string
	// TLS must carry the client certificate (mutual authentication is how
	// KMIP servers identify clients) and the CA that issued the servers'
	// certificates. MinVersion is raised to TLS 1.2 if lower; ServerName,
	// if empty, is each server's host.
	TLS *tls.Config
	// Timeout bounds each attempt at one server; 0 means DefaultTimeout.
	Timeout time.Duration
	// Version is the protocol version sent; the zero value means 1.4.
	Version ProtocolVersion
	// MaxMessageSize caps a response; 0 means DefaultMaxMessageSize.
	MaxMessageSize int
	// TLS12ProfileSuites adds, for TLS 1.2, the KMIP profiles' CBC suites
	// that take an RSA certificate (see profileSuites), for servers that
	// offer nothing else (PyKMIP and others that follow the profile, with
	// RSA certificates). Go still prefers TLS 1.3 and its AEAD suites;
	// the client logs a warning when a profile suite is used.
	TLS12ProfileSuites bool
	// Logger receives debug records of attempts (with each connection's
	// TLS version and suite) and the warning above; nil discards them.
	Logger *slog.Logger
}

// Client talks KMIP (TTLV over TLS) to a key manager. It opens one TLS
// connection per request, so it holds no connection state between calls and
// is safe for concurrent use.
type Client struct {
	servers []string
	tls     *tls.Config
	timeout time.Duration
	version ProtocolVersion
	maxSize int
	log     *slog.Logger

	profileSuites bool
	profileWarned sync.Once
}

// New checks cfg and returns a Client. It does not contact any server.
func New(cfg Config) (*Client, error) {
	if len(cfg.Servers) == 0 {
		return nil, errors.New("kmip: no servers configured")
	}
	for _, s := range cfg.Servers {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return nil, fmt.Errorf("kmip: server address %q: %w", s, err)
		}
	}
	if cfg.TLS == nil || (len(cfg.TLS.Certificates) == 0 && cfg.TLS.GetClientCertificate == nil) {
		return nil, errors.New("kmip: a client certificate is required (KMIP servers authenticate clients by TLS)")
	}
	t := cfg.TLS.Clone()
	if t.MinVersion < tls.VersionTLS12 {
		t.MinVersion = tls.VersionTLS12
	}
	if cfg.TLS12ProfileSuites {
		t.CipherSuites = withProfileSuites(t.CipherSuites)
	}
	c := &Client{
		servers:       append([]string(nil), cfg.Servers...),
		tls:           t,
		timeout:       cfg.Timeout,
		version:       cfg.Version,
		maxSize:       cfg.MaxMessageSize,
		log:           cfg.Logger,
		profileSuites: cfg.TLS12ProfileSuites,
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.version == (ProtocolVersion{}) {
		c.version = Version1_4
	}
	if c.maxSize <= 0 {
		c.maxSize = DefaultMaxMessageSize
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Servers returns the configured server addresses, in order.
func (c *Client) Servers() []string { return append([]string(nil), c.servers...) }

// Version returns the protocol version the client sends.
func (c *Client) Version() ProtocolVersion { return c.version }

// Batch sends reqs as one request message and returns one Response per
// request, in order. It tries each server in turn until one answers;
// a server that answers with a failed result is not retried elsewhere
// (its answer is authoritative) and the failure is in Response.Err. The
// error is non-nil only when no server answered; it then wraps
// ErrUnavailable and names every server and what went wrong with it.
//
// Because a request is re-sent to the next server when an answer is lost,
// a non-idempotent operation (Create, Register) may, rarely, take effect on
// a server whose answer never arrived.
func (c *Client) Batch(ctx context.Context, reqs ...Request) ([]Response, error) {
	return c.exchange(ctx, reqs, nil)
}

// exchange is Batch with a check of the answer's payloads: a server whose
// answer fails check (a malformed payload) is treated like one that could
// not be reached, and the next server is tried.
func (c *Client) exchange(ctx context.Context, reqs []Request, check func([]Response) error) ([]Response, error) {
	msg, err := encodeRequest(c.version, c.maxSize, reqs)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, server := range c.servers {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		resps, err := c.roundTrip(ctx, server, msg, reqs)
		if err == nil && check != nil {
			err = check(resps)
		}
		if err == nil {
			return resps, nil
		}
		c.log.Debug("kmip server failed", "server", server, "err", err)
		errs = append(errs, &ServerError{Server: server, Err: err})
	}
	return nil, fmt.Errorf("%w: %w", ErrUnavailable, errors.Join(errs...))
}

// roundTrip sends msg to one server and reads and decodes its answer.
func (c *Client) roundTrip(ctx context.Context, server string, msg []byte, reqs []Request) ([]Response, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: c.tls}
	conn, err := d.DialContext(ctx, "tcp", server)
	if err != nil {
		if !c.profileSuites && strings.Contains(err.Error(), "tls: handshake failure") {
			return nil, fmt.Errorf("%w (%s)", err, noSharedSuiteHint)
		}
		return nil, err
	}
	defer conn.Close()
	c.logTLS(server, conn.(*tls.Conn).ConnectionState())
	// Cancellation and the attempt's timeout interrupt blocked I/O; since
	// this runs once ctx is done, ctxErr can name the reason.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := conn.Write(msg); err != nil {
		return nil, ctxErr(ctx, fmt.Errorf("sending request: %w", err))
	}
	raw, err := ReadMessage(conn, c.maxSize)
	if err != nil {
		return nil, ctxErr(ctx, err)
	}
	return decodeResponse(server, raw, reqs)
}

// logTLS logs a connection's TLS version and suite at debug level, and
// warns once per Client when a KMIP profile CBC suite had to be used.
func (c *Client) logTLS(server string, st tls.ConnectionState) {
	suite := tls.CipherSuiteName(st.CipherSuite)
	c.log.Debug("kmip tls", "server", server, "version", tls.VersionName(st.Version), "suite", suite)
	if isProfileSuite(st.CipherSuite) {
		c.profileWarned.Do(func() {
			msg := "kmip: TLS 1.2 with a KMIP profile CBC suite (tls12_profile_suites): the server offers neither TLS 1.3 nor an AEAD suite for its certificate"
			if st.CipherSuite == tls.TLS_RSA_WITH_AES_128_CBC_SHA256 {
				msg += "; it chose RSA key exchange, which has no forward secrecy"
			}
			c.log.Warn(msg, "server", server, "suite", suite)
		})
	}
}

// ctxErr prefers the context's reason (timeout, cancellation) over the
// I/O error it caused.
func ctxErr(ctx context.Context, err error) error {
	if ce := ctx.Err(); ce != nil {
		return fmt.Errorf("%w (%v)", ce, err)
	}
	return err
}

// call sends one request. If it succeeds, parse reads its payload; a
// payload parse cannot read counts as a broken server and the next one is
// tried, so parse must overwrite (not accumulate) what it sets. The error is
// the server's refusal (*ResultError) or wraps ErrUnavailable.
func (c *Client) call(ctx context.Context, op Operation, payload []Item, parse func(Item) error) error {
	resps, err := c.exchange(ctx, []Request{{Operation: op, Payload: payload}}, func(rs []Response) error {
		if rs[0].Err != nil || parse == nil {
			return nil
		}
		return parse(rs[0].Payload)
	})
	if err != nil {
		return err
	}
	return resps[0].Err
}
