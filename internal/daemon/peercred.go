package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/user"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/encblk/encblk/internal/audit"
)

// ErrUntrustedPeer: the other end of a control socket is neither root nor
// the same user. A client refuses to send it anything (it may be another
// user's process waiting for a KEK); a server refuses its requests.
var ErrUntrustedPeer = errors.New("control socket peer is neither root nor the same user")

// Peer is the process at the other end of a unix socket, as the kernel
// recorded it when the connection was made (SO_PEERCRED): it cannot be
// forged by the peer.
type Peer struct {
	PID int32
	UID uint32
	GID uint32
}

// peerOf reads c's SO_PEERCRED.
func peerOf(c net.Conn) (Peer, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return Peer{}, fmt.Errorf("%w: not a unix socket", ErrUntrustedPeer)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return Peer{}, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Peer{}, err
	}
	if cerr != nil {
		return Peer{}, fmt.Errorf("SO_PEERCRED: %w", cerr)
	}
	return Peer{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid}, nil
}

// trusted reports whether p may act on keys: root or the effective user
// of this process.
func (p Peer) trusted() bool {
	return p.UID == 0 || p.UID == uint32(os.Geteuid())
}

// dialTrusted connects to the control socket at path and checks, before
// anything is sent, that the server is root or the same user.
func dialTrusted(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	p, err := peerOf(c)
	if err == nil && !p.trusted() {
		err = fmt.Errorf("%w: %s is served by uid %d (pid %d); refusing to talk to it", ErrUntrustedPeer, path, p.UID, p.PID)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// lookupGroup resolves a group name or number; "" is -1 (none).
func lookupGroup(name string) (int, error) {
	if name == "" {
		return -1, nil
	}
	if gid, err := strconv.Atoi(name); err == nil && gid >= 0 {
		return gid, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return -1, fmt.Errorf("status group %q: no such group", name)
	}
	return strconv.Atoi(g.Gid)
}

// readOnlyRoutes are what a member of the status group may ask.
var readOnlyRoutes = map[string]bool{"GET /v1/status": true, "GET /v1/keyslots": true, "GET /metrics": true}

// deniedEvents are the audit events of the routes an untrusted peer may
// be denied.
var deniedEvents = map[string]string{
	"/v1/unlock": audit.Unlock, "/v1/lock": audit.Lock, "/v1/rotate-kek": audit.RotateKEK,
	"/v1/keyslots": audit.AddKeyslot, "/v1/rotation-policy": audit.RotationPolicy,
}

// authorize admits requests from root and this process's user; others
// (members of the status group, who alone can reach a 0660 socket) may
// only read status. A denial is audited.
func (d *Daemon) authorize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, known := PeerFrom(r.Context())
		if !known {
			p = Peer{PID: -1, UID: ^uint32(0), GID: ^uint32(0)} // not from a control socket
		}
		if !p.trusted() && !readOnlyRoutes[r.Method+" "+r.URL.Path] {
			err := fmt.Errorf("%w: uid %d may only read status", ErrUntrustedPeer, p.UID)
			ev := deniedEvents[r.URL.Path]
			if r.Method == http.MethodDelete {
				ev = audit.RemoveKeyslot
			}
			audit.Log(r.Context(), d.log, audit.Record{Event: ev, Result: audit.Denied, Keyslot: -1, Err: err,
				PeerUID: int64(p.UID), PeerPID: int64(p.PID)})
			fail(w, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}
