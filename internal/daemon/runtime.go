package daemon

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// RuntimeDirEnv overrides the directory of the well-known control sockets.
const RuntimeDirEnv = "ENCBLK_RUNTIME_DIR"

// RuntimeDir is where a server puts the well-known control socket of each
// volume it serves: $ENCBLK_RUNTIME_DIR, else /run/encblk for root, else
// $XDG_RUNTIME_DIR/encblk, else encblk-UID in the temp dir.
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
