package tpm2

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

// commandTimeout bounds each command sent to a software TPM's socket (a
// TPM that never answers must not hang encblk). The kernel's driver bounds
// a character device's commands itself.
var commandTimeout = 2 * time.Minute

// maxResponse bounds a TPM's answer (TPM 2.0 responses fit in 4 KiB).
const maxResponse = 64 << 10

// open opens the TPM device: a character device ("/dev/tpmrm0") or a
// software TPM's socket ("swtpm:path=SOCKET", systemd's spelling).
func open(ctx context.Context, device string) (transport.TPMCloser, error) {
	if path, ok := strings.CutPrefix(device, "swtpm:path="); ok {
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", path) // it must be there now
		if err != nil {
			return nil, fmt.Errorf("tpm2: TPM %s: %w", device, err)
		}
		c.Close()
		return transport.FromReadWriteCloser(&socketTPM{ctx: ctx, path: path, device: device}), nil
	}
	t, err := linuxtpm.Open(device)
	if err != nil {
		return nil, fmt.Errorf("tpm2: TPM %s: %w", device, err)
	}
	return t, nil
}

// socketTPM sends each command to a software TPM over its own connection
// (as swtpm's socket interface and go-tpm's linuxudstpm do), bounded by
// commandTimeout and the context. It is the io.ReadWriteCloser that
// transport.FromReadWriteCloser makes a TPM of (which retries commands
// the TPM answers TPM_RC_RETRY).
type socketTPM struct {
	ctx    context.Context
	path   string
	device string
	conn   net.Conn
	cancel context.CancelFunc
}

// Write sends a command on a new connection.
func (s *socketTPM) Write(cmd []byte) (int, error) {
	s.Close()
	ctx, cancel := context.WithTimeout(s.ctx, commandTimeout)
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", s.path)
	if err != nil {
		cancel()
		return 0, fmt.Errorf("tpm2: TPM %s: %w", s.device, err)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	s.conn, s.cancel = c, func() { stop(); cancel() }
	n, err := c.Write(cmd)
	if err != nil {
		return n, s.failed(ctx, err)
	}
	return n, nil
}

// Read reads the whole response into p and closes the connection.
func (s *socketTPM) Read(p []byte) (int, error) {
	if s.conn == nil {
		return 0, errors.New("tpm2: no command sent")
	}
	defer s.Close()
	// A response: tag (2 bytes), size of the whole (4), code (4), rest.
	if len(p) < 10 {
		return 0, errors.New("tpm2: response buffer too small")
	}
	if _, err := io.ReadFull(s.conn, p[:6]); err != nil {
		return 0, s.failed(nil, err)
	}
	n := int(binary.BigEndian.Uint32(p[2:6]))
	if n < 10 || n > len(p) || n > maxResponse {
		return 0, fmt.Errorf("tpm2: TPM %s answered a response of %d bytes", s.device, n)
	}
	if _, err := io.ReadFull(s.conn, p[6:n]); err != nil {
		return 0, s.failed(nil, err)
	}
	return n, nil
}

func (s *socketTPM) failed(ctx context.Context, err error) error {
	switch {
	case s.ctx.Err() != nil:
		return fmt.Errorf("tpm2: TPM %s: %w", s.device, s.ctx.Err())
	case errors.Is(err, os.ErrDeadlineExceeded) || (ctx != nil && ctx.Err() != nil):
		return fmt.Errorf("tpm2: TPM %s did not answer within %v", s.device, commandTimeout)
	}
	return fmt.Errorf("tpm2: TPM %s: %w", s.device, err)
}

// Close implements io.Closer: it ends the command's connection, if any.
func (s *socketTPM) Close() error {
	if s.conn != nil {
		s.conn.Close()
		s.cancel()
		s.conn = nil
	}
	return nil
}
