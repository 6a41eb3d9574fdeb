package daemon

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/encblk/encblk/internal/secmem"
)

// KEK secrets do not travel in a control request's HTTP body. net/http's
// server reads every connection through a pooled bufio.Reader that it
// never wipes, so a secret in the body (even base64 in JSON) would stay in
// the server's memory after "encblk lock", and with it a way back to the
// DEK. Instead the client sends the secrets first, in a preamble the
// server reads with exact-length reads straight into protected memory
// before net/http sees a byte; the HTTP request that follows names the
// volume and the options only.
//
// Preamble layout (big-endian), sent once at the start of a connection:
//
//	offset  size  field
//	0       4     magic "EBK\x01" (no HTTP request starts with it)
//	4       4     n: length of what follows (at most maxPreamble)
//	8       n     secrets: each a 4-byte length and that many bytes;
//	              the first is KeyRequest.Secret, the second NewSecret
//
// A connection without the magic is plain HTTP (status, lock, curl).

const preambleMagic = "EBK\x01"

// maxPreamble bounds the secrets of one request: two key files of
// keyring.MaxKeyFileLen bytes with their lengths.
const maxPreamble = 2 * (4 + secmem.MaxSize)

// encodePreamble returns the preamble carrying secrets, in protected
// memory (the caller destroys it).
func encodePreamble(secrets ...[]byte) (*secmem.Buffer, error) {
	n := 0
	for _, s := range secrets {
		n += 4 + len(s)
	}
	if n > maxPreamble {
		return nil, errors.New("daemon: KEKs too large to send")
	}
	buf, err := secmem.New(8 + n)
	if err != nil {
		return nil, err
	}
	b := buf.Bytes()
	copy(b, preambleMagic)
	binary.BigEndian.PutUint32(b[4:], uint32(n))
	off := 8
	for _, s := range secrets {
		binary.BigEndian.PutUint32(b[off:], uint32(len(s)))
		off += 4 + copy(b[off+4:], s)
	}
	return buf, nil
}

// secretListener hands net/http connections that read their preamble
// first, and records each client's credentials.
type secretListener struct{ net.Listener }

func (l secretListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	p, err := peerOf(c)
	if err != nil {
		// Not knowing who it is: treat it as untrusted.
		p = Peer{PID: -1, UID: ^uint32(0), GID: ^uint32(0)}
	}
	return &secretConn{Conn: c, peer: p}, nil
}

// secretConn is a control connection: its preamble's secrets, read on the
// first Read, live in protected memory until the connection closes.
type secretConn struct {
	net.Conn
	peer Peer

	once    sync.Once
	err     error
	pending []byte // bytes read while looking for the magic: HTTP's

	mu      sync.Mutex
	buf     *secmem.Buffer
	secrets [][]byte // slices of buf
}

func (c *secretConn) Read(p []byte) (int, error) {
	c.once.Do(c.readPreamble)
	if c.err != nil {
		return 0, c.err
	}
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *secretConn) readPreamble() {
	var hdr [8]byte
	if n, err := io.ReadFull(c.Conn, hdr[:4]); err != nil {
		c.pending = hdr[:n]
		if n == 0 {
			c.err = err
		}
		return
	}
	if string(hdr[:4]) != preambleMagic {
		c.pending = hdr[:4]
		return
	}
	if _, err := io.ReadFull(c.Conn, hdr[4:]); err != nil {
		c.err = fmt.Errorf("control preamble: %w", err)
		return
	}
	n := binary.BigEndian.Uint32(hdr[4:])
	if n > maxPreamble {
		c.err = errors.New("control preamble too large")
		return
	}
	buf, err := secmem.New(int(max(n, 1)))
	if err != nil {
		c.err = err
		return
	}
	b := buf.Bytes()[:n]
	if _, err := io.ReadFull(c.Conn, b); err != nil {
		buf.Destroy()
		c.err = fmt.Errorf("control preamble: %w", err)
		return
	}
	var secrets [][]byte
	for len(b) > 0 {
		if len(b) < 4 || uint64(binary.BigEndian.Uint32(b)) > uint64(len(b)-4) {
			buf.Destroy()
			c.err = errors.New("control preamble is malformed")
			return
		}
		l := binary.BigEndian.Uint32(b)
		secrets = append(secrets, b[4:4+l:4+l])
		b = b[4+l:]
	}
	c.mu.Lock()
	c.buf, c.secrets = buf, secrets
	c.mu.Unlock()
}

// secret returns the i-th secret of the preamble (nil if there is none).
// It stays valid until the connection closes.
func (c *secretConn) secret(i int) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i < len(c.secrets) {
		return c.secrets[i]
	}
	return nil
}

// Close destroys the secrets and closes the connection.
func (c *secretConn) Close() error {
	c.mu.Lock()
	c.buf.Destroy()
	c.buf, c.secrets = nil, nil
	c.mu.Unlock()
	return c.Conn.Close()
}

type connKey struct{}

// withConn is the control server's ConnContext: handlers find the
// connection's preamble and its client's credentials through it.
func withConn(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// PeerFrom returns the client of a control request's context.
func PeerFrom(ctx context.Context) (Peer, bool) {
	c, ok := ctx.Value(connKey{}).(*secretConn)
	if !ok {
		return Peer{}, false
	}
	return c.peer, true
}

// preambleFrom returns the connection of a control request.
func preambleFrom(ctx context.Context) *secretConn {
	c, _ := ctx.Value(connKey{}).(*secretConn)
	return c
}

type preambleKey struct{}

// dialControl connects to the control socket at path, checks the server
// (dialTrusted) and sends the preamble a request put in ctx, if any.
func dialControl(ctx context.Context, path string) (net.Conn, error) {
	c, err := dialTrusted(ctx, path)
	if err != nil {
		return nil, err
	}
	if pre, ok := ctx.Value(preambleKey{}).(*secmem.Buffer); ok {
		if _, err := c.Write(pre.Bytes()); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}
