package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// RuntimeDirEnv overrides the directory of the well-known control sockets.
const RuntimeDirEnv = "ENCBLK_RUNTIME_DIR"

// ErrUnsafeRuntimeDir: the runtime directory is not the user's own (another
// user created it, it is a symlink, or others may write to it). A server
// there could be someone else's, listening for the KEKs clients send.
var ErrUnsafeRuntimeDir = errors.New("unsafe runtime directory")

// RuntimeDir is where a server puts the well-known control socket of each
// volume it serves: $ENCBLK_RUNTIME_DIR, else /run/encblk for root, else
// $XDG_RUNTIME_DIR/encblk, else encblk-UID in the temp dir.
//
// The directory must be the user's own, mode 0700 and not a symlink (see
// PrepareRuntimeDir): in a shared temp dir another local user could
// otherwise create it first, listen on a well-known name and receive the
// KEK an `encblk unlock` sends.
func RuntimeDir() string {
	if d := os.Getenv(RuntimeDirEnv); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/run/encblk"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "encblk")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("encblk-%d", os.Geteuid()))
}

// PrepareRuntimeDir creates RuntimeDir (mode 0700, its parents as needed)
// unless it exists, and checks it with CheckRuntimeDir. Servers call it
// before they put a socket there.
func PrepareRuntimeDir() (string, error) {
	dir := RuntimeDir()
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return "", fmt.Errorf("runtime directory: %w", err)
	}
	// Mkdir, not MkdirAll: an existing entry (a symlink, another user's
	// directory) must be checked, never followed or reused blindly.
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("runtime directory: %w", err)
	}
	return dir, CheckRuntimeDir(dir)
}

// CheckRuntimeDir fails with an error wrapping ErrUnsafeRuntimeDir unless
// dir is a directory (not a symlink) owned by the effective user with mode
// 0700 or stricter, in a parent that other users cannot rename it out of
// (not writable by them, or sticky as /tmp is). Clients call it before
// they trust a well-known socket in dir.
func CheckRuntimeDir(dir string) error {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("runtime directory %s: %w", dir, err)
	}
	euid := uint32(os.Geteuid())
	hint := fmt.Sprintf("remove it, or set %s or XDG_RUNTIME_DIR to a directory of your own", RuntimeDirEnv)
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return fmt.Errorf("%w: %s is a symlink (%s)", ErrUnsafeRuntimeDir, dir, hint)
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return fmt.Errorf("%w: %s is not a directory (%s)", ErrUnsafeRuntimeDir, dir, hint)
	case st.Uid != euid:
		return fmt.Errorf("%w: %s belongs to uid %d, not to you (uid %d): another user may have created it (%s)", ErrUnsafeRuntimeDir, dir, st.Uid, euid, hint)
	case st.Mode&0o077 != 0:
		return fmt.Errorf("%w: %s has mode %04o, want 0700 (chmod 700 %s)", ErrUnsafeRuntimeDir, dir, st.Mode&0o7777, dir)
	}
	parent := filepath.Dir(dir)
	if err := unix.Stat(parent, &st); err != nil {
		return fmt.Errorf("runtime directory %s: %w", parent, err)
	}
	if st.Uid != euid && st.Uid != 0 && st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0 {
		return fmt.Errorf("%w: its parent %s is writable by other users and not sticky (%s)", ErrUnsafeRuntimeDir, parent, hint)
	}
	return nil
}

// VolumeID names the storage behind path however it is spelt: the device
// number of a block device, the device and inode of a regular file.
func VolumeID(path string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "", fmt.Errorf("backing %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFBLK {
		return fmt.Sprintf("b%x", st.Rdev), nil
	}
	return fmt.Sprintf("f%x-%x", st.Dev, st.Ino), nil
}

// ControlSocket is the well-known control socket of the server of the
// backing at path.
func ControlSocket(path string) (string, error) {
	id, err := VolumeID(path)
	if err != nil {
		return "", err
	}
	return filepath.Join(RuntimeDir(), id+".ctl"), nil
}
