package nbd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// ListenUnix creates a unix socket at path that only its owner may connect
// to (mode 0600), or the owner and group gid (mode 0660) when gid >= 0. The
// socket is created under its final permissions in a private directory and
// renamed into place, so it is never reachable with looser ones. A stale
// socket at path (one nobody listens on) is replaced; anything else there
// is an error.
func ListenUnix(ctx context.Context, path string, gid int) (net.Listener, error) {
	if err := removeStaleSocket(ctx, path); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(filepath.Dir(path), ".nbd-sock-")
	if err != nil {
		return nil, fmt.Errorf("nbd: listen on %s: %w", path, err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	tmp := filepath.Join(dir, "s")
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("nbd: listen on %s: %w", path, err)
	}
	ul := l.(*net.UnixListener)
	// Removing the socket file is ours to do, at its final path.
	ul.SetUnlinkOnClose(false)
	mode := os.FileMode(0o600)
	if gid >= 0 {
		if err := os.Chown(tmp, -1, gid); err != nil {
			_ = l.Close()
			return nil, fmt.Errorf("nbd: socket group %d: %w", gid, err)
		}
		mode = 0o660
	}
	if err := os.Chmod(tmp, mode); err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("nbd: socket mode: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("nbd: listen on %s: %w", path, err)
	}
	return &unixListener{UnixListener: ul, path: path}, nil
}

// unixListener removes its socket file when closed.
type unixListener struct {
	*net.UnixListener
	path string
}

func (l *unixListener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

func (l *unixListener) Close() error {
	err := l.UnixListener.Close()
	_ = os.Remove(l.path)
	return err
}

func removeStaleSocket(ctx context.Context, path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("nbd: listen on %s: %w", path, err)
	}
	if st.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("nbd: listen on %s: exists and is not a socket", path)
	}
	var d net.Dialer
	if c, err := d.DialContext(ctx, "unix", path); err == nil {
		_ = c.Close()
		return fmt.Errorf("nbd: listen on %s: %w", path, syscall.EADDRINUSE)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("nbd: remove stale socket %s: %w", path, err)
	}
	return nil
}

// ListenTCP listens on a TCP address ("host:port"). Accepted connections
// have TCP_NODELAY: Go sets it on every TCP connection it accepts. Serve
// TCP with TLS (Server.TLS and RequireTLS): NBD has no other
// authentication.
func ListenTCP(ctx context.Context, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("nbd: listen on %s: %w", addr, err)
	}
	return l, nil
}

// listenFDsStart is the first file descriptor systemd passes (SD_LISTEN_FDS_START).
const listenFDsStart = 3

// SystemdListeners returns the sockets passed by systemd socket activation
// (LISTEN_PID, LISTEN_FDS), or none when the process was not activated.
// It unsets the variables so children do not inherit them.
func SystemdListeners() ([]net.Listener, error) {
	return systemdListeners(os.Getenv, os.Unsetenv, os.Getpid(), listenFDsStart)
}

func systemdListeners(getenv func(string) string, unsetenv func(string) error, pid, firstFD int) ([]net.Listener, error) {
	pidStr, fdsStr := getenv("LISTEN_PID"), getenv("LISTEN_FDS")
	if pidStr == "" || fdsStr == "" {
		return nil, nil
	}
	if p, err := strconv.Atoi(pidStr); err != nil || p != pid {
		return nil, nil // meant for another process
	}
	n, err := strconv.Atoi(fdsStr)
	if err != nil || n < 0 || n > 1024 {
		return nil, fmt.Errorf("nbd: bad LISTEN_FDS %q", fdsStr)
	}
	for _, v := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		_ = unsetenv(v)
	}
	ls := make([]net.Listener, 0, n)
	for fd := firstFD; fd < firstFD+n; fd++ {
		syscall.CloseOnExec(fd)
		f := os.NewFile(uintptr(fd), "LISTEN_FD_"+strconv.Itoa(fd))
		l, err := net.FileListener(f)
		_ = f.Close() // FileListener dup'ed it
		if err != nil {
			for _, l := range ls {
				_ = l.Close()
			}
			return nil, fmt.Errorf("nbd: systemd socket fd %d: %w", fd, err)
		}
		ls = append(ls, l)
	}
	return ls, nil
}
