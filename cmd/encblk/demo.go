package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/encblk/encblk/internal/daemon"
	"github.com/encblk/encblk/internal/secmem"
	"github.com/encblk/encblk/pkg/kek/keyfile"
	"github.com/encblk/encblk/pkg/keyring"
	"github.com/encblk/encblk/pkg/nbd"
)

func init() { subcommands = append(subcommands, newDemoCmd) }

// demoKDF is fast but real: argon2id with 32 MiB and 4 passes. The KEK
// is a 256-bit random key file, so the KDF's cost protects nothing here.
var demoKDF = keyring.KDFParams{Type: "argon2id", Iterations: 4, MemoryKiB: 32 << 10, Parallel: 2}

func newDemoCmd(a *app) *cobra.Command {
	var (
		dir        string
		size       string
		sectorSize int
		noServe    bool
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Format a sparse backing file with a generated key file and serve it",
		Long: `Demo creates a state directory (--dir, default a new one in $TMPDIR) with a
sparse backing file, a generated key file (mode 0600), formats the backing as
LUKS2 (AES-256-XTS, 4096-byte sectors), serves it on a unix socket in the
directory and prints the NBD URI and the commands that attach it. It serves
until Ctrl-C. Run again with the same --dir to serve the same disk again.
--no-serve stops after formatting.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := parseSize(size)
			if err != nil {
				return withExit(exitUsage, fmt.Errorf("--size: %w", err))
			}
			if dir == "" {
				if dir, err = os.MkdirTemp("", "encblk-demo-"); err != nil {
					return err
				}
			} else if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			if dir, err = filepath.Abs(dir); err != nil {
				return err
			}
			if err := secmem.SetNonDumpable(); err != nil {
				return err
			}
			disk, key := filepath.Join(dir, "disk.img"), filepath.Join(dir, "disk.key")
			if err := demoFormat(cmd, disk, key, n, sectorSize); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if noServe {
				fmt.Fprintf(out, "state dir: %s\nbacking:   %s\nkey file:  %s\nserve it:  encblk serve --key-file %s --listen unix:%s %s\n",
					dir, disk, key, key, filepath.Join(dir, "nbd.sock"), disk)
				return nil
			}
			return demoServe(cmd, a, dir, disk, key)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&dir, "dir", "", "state directory (default: a new directory in $TMPDIR)")
	fs.StringVar(&size, "size", "1G", "size of the sparse backing file (K, M, G, T suffixes: powers of 1024)")
	fs.IntVar(&sectorSize, "sector-size", 4096, "encryption sector size")
	fs.BoolVar(&noServe, "no-serve", false, "format only; print how to serve")
	return cmd
}

// demoFormat creates and formats the backing unless it exists already.
func demoFormat(cmd *cobra.Command, disk, key string, size int64, sectorSize int) error {
	if _, err := os.Stat(disk); err == nil {
		if _, err := os.Stat(key); err != nil {
			return fmt.Errorf("%s exists but its key file %s does not", disk, key)
		}
		return nil
	}
	if err := generateKeyFile(key); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	kf, err := keyfile.Open(key)
	if err != nil {
		return err
	}
	defer kf.Destroy()
	f, err := os.OpenFile(disk, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		os.Remove(disk)
		return withExit(exitIO, err)
	}
	_, dek, err := keyring.Format(cmd.Context(), f, kf, &keyring.FormatOptions{SectorSize: sectorSize, KDF: demoKDF})
	if err != nil {
		os.Remove(disk)
		return fmt.Errorf("format %s: %w", disk, err)
	}
	dek.Destroy()
	if err := f.Sync(); err != nil {
		return withExit(exitIO, err)
	}
	return nil
}

func demoServe(cmd *cobra.Command, a *app, dir, disk, key string) error {
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	kf, err := keyfile.Open(key)
	if err != nil {
		return err
	}
	defer kf.Destroy()
	v, err := daemon.OpenVolume(ctx, daemon.VolumeSpec{Backing: disk}, kf)
	if err != nil {
		return err
	}
	sock, ctl := filepath.Join(dir, "nbd.sock"), filepath.Join(dir, "control.sock")
	l, err := nbd.ListenUnix(ctx, sock, -1)
	if err != nil {
		v.Close()
		return err
	}
	d, err := daemon.New(daemon.Config{Volumes: []*daemon.Volume{v}, Listeners: []net.Listener{l},
		ControlPaths: []string{ctl}, Logger: a.log,
		Ready: func() { printDemo(cmd.OutOrStdout(), dir, disk, key, sock, ctl, v.Device().Size()) }})
	if err != nil {
		v.Close()
		l.Close()
		return err
	}
	limitServeMemory()
	return d.Run(ctx)
}

func printDemo(w io.Writer, dir, disk, key, sock, ctl string, size int64) {
	uri := "nbd+unix:///?socket=" + sock
	mnt := filepath.Join(dir, "mnt")
	fmt.Fprintf(w, `encblk demo: serving an encrypted disk of %[1]d bytes (LUKS2, aes-xts-plain64)
  state dir: %[2]s
  backing:   %[3]s
  key file:  %[4]s (mode 0600)

NBD URI: %[5]s

Look at it:
  nbdinfo '%[5]s'
Attach it as a block device (needs the nbd kernel module):
  nbd-client -unix %[6]s /dev/nbd0
Or through FUSE and a loop device:
  mkdir -p %[7]s && nbdfuse %[7]s --unix %[6]s &
  losetup --find --show %[7]s/nbd
Manage it:
  %[12]s status --control %[9]s
  %[12]s lock --control %[9]s
  %[12]s unlock --control %[9]s --key-file %[4]s
  cryptsetup luksDump --disable-locks %[3]s
Stop it: press Ctrl-C here (or kill -TERM %[10]d); serve it again with
  %[12]s demo --dir %[2]s
`, size, dir, disk, key, uri, sock, mnt, mnt, ctl, os.Getpid(), dir, self())
}

// self is how to run this encblk again: its path, or "go run ./cmd/encblk"
// when it is a temporary binary of go run.
func self() string {
	if exe, err := os.Executable(); err == nil && !strings.Contains(exe, "go-build") {
		return exe
	}
	return "go run ./cmd/encblk"
}

// parseSize parses a byte count with an optional K, M, G or T suffix
// (powers of 1024).
func parseSize(s string) (int64, error) {
	mult := int64(1)
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	if n := len(t); n > 0 {
		if i := strings.IndexByte("KMGT", t[n-1]); i >= 0 {
			mult, t = 1<<(10*(i+1)), t[:n-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q: want a positive number of bytes with an optional K, M, G or T suffix", s)
	}
	return n * mult, nil
}
