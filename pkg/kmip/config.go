package kmip

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// FileConfig is the KMIP client configuration file encblk reads (the
// CONFIG of `encblk keyslot add --kmip CONFIG`): JSON such as
//
//	{
//	  "servers": ["kms1.example.com:5696", "kms2.example.com:5696"],
//	  "ca":   "/etc/encblk/kmip/ca.pem",
//	  "cert": "/etc/encblk/kmip/client.pem",
//	  "key":  "/etc/encblk/kmip/client.key",
//	  "key_uid": "",
//	  "server_name": "",
//	  "timeout": "10s",
//	  "tls12_profile_suites": false
//	}
//
// cert and key are the client's certificate and private key (PEM); ca is
// the PEM bundle that issued the servers' certificates. Relative paths are
// relative to the configuration file. key_uid names an existing,
// Active AES-256 key on the server; empty means encblk creates and
// activates one. server_name overrides the name checked in the servers'
// certificates. tls12_profile_suites enables, for TLS 1.2, the KMIP
// profiles' CBC suites for servers with RSA certificates that offer
// nothing else (see Config.TLS12ProfileSuites): leave it off unless the
// handshake fails without it; TLS 1.3 is used whenever the server offers
// it. Unknown fields are refused, so a typo is not ignored.
type FileConfig struct {
	Servers    []string `json:"servers"`
	CA         string   `json:"ca"`
	Cert       string   `json:"cert"`
	Key        string   `json:"key"`
	KeyUID     string   `json:"key_uid,omitempty"`
	ServerName string   `json:"server_name,omitempty"`
	Timeout    string   `json:"timeout,omitempty"`
	// TLS12ProfileSuites: see Config.TLS12ProfileSuites.
	TLS12ProfileSuites bool `json:"tls12_profile_suites,omitempty"`

	// Path is the file the configuration was read from ("" if none).
	Path string `json:"-"`
}

// maxConfigSize bounds the configuration file (it holds a few paths).
const maxConfigSize = 64 << 10

// maxKeyUIDLen bounds a configured key_uid (a KMIP Unique Identifier).
const maxKeyUIDLen = 256

// LoadConfig reads and checks a configuration file.
func LoadConfig(path string) (*FileConfig, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("kmip config: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("kmip config %s: %w", path, err)
	}
	if len(b) > maxConfigSize {
		return nil, fmt.Errorf("kmip config %s: larger than %d bytes", path, maxConfigSize)
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("kmip config %s: %w", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	cfg.Path = abs
	dir := filepath.Dir(abs)
	for _, p := range []*string{&cfg.CA, &cfg.Cert, &cfg.Key} {
		if !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	return cfg, nil
}

// ParseConfig parses and checks a configuration (paths are not resolved).
func ParseConfig(b []byte) (*FileConfig, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var cfg FileConfig
	if err := dec.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if dec.More() {
		return nil, errors.New("invalid JSON: data after the object")
	}
	if cfg.CA == "" || cfg.Cert == "" || cfg.Key == "" {
		return nil, errors.New(`"ca", "cert" and "key" are required`)
	}
	if _, err := cfg.timeout(); err != nil {
		return nil, err
	}
	if len(cfg.KeyUID) > maxKeyUIDLen {
		return nil, errors.New(`"key_uid" is too long`)
	}
	return &cfg, nil
}

func (c *FileConfig) timeout() (time.Duration, error) {
	if c.Timeout == "" {
		return DefaultTimeout, nil
	}
	d, err := time.ParseDuration(c.Timeout)
	if err != nil || d <= 0 || d > 10*time.Minute {
		return 0, fmt.Errorf(`"timeout" %q is not a duration between 0 and 10m`, c.Timeout)
	}
	return d, nil
}

// TLSConfig loads the client certificate, key and CA bundle.
func (c *FileConfig) TLSConfig() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
	if err != nil {
		return nil, fmt.Errorf("kmip client certificate: %w", err)
	}
	caPEM, err := os.ReadFile(c.CA)
	if err != nil {
		return nil, fmt.Errorf("kmip CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("kmip CA %s: no PEM certificate in it", c.CA)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ServerName:   c.ServerName,
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// Client builds a client for servers (the configuration's own when servers
// is empty).
func (c *FileConfig) Client(servers []string, log *slog.Logger) (*Client, error) {
	t, err := c.TLSConfig()
	if err != nil {
		return nil, err
	}
	timeout, err := c.timeout()
	if err != nil {
		return nil, err
	}
	if len(servers) == 0 {
		servers = c.Servers
	}
	return New(Config{Servers: servers, TLS: t, Timeout: timeout, TLS12ProfileSuites: c.TLS12ProfileSuites, Logger: log})
}
