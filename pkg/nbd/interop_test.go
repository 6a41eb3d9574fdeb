package nbd_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/encblk/encblk/internal/testutil"
	"github.com/encblk/encblk/pkg/nbd"
)

func TestQemuImgCompare(t *testing.T) {
	t.Parallel()
	qemuImg := testutil.RequireTool(t, "qemu-img", "qemu-utils")
	const size = 32 << 20
	b, _ := newFileExport(t, size, allCaps())
	s := startServer(t, nbd.StaticExports{"": fullExport(b)}, nil)
	src := filepath.Join(t.TempDir(), "src.raw")
	data := make([]byte, size)
	_, _ = rand.Read(data[:size/2]) // second half zeros: qemu writes zeroes/trims
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	uri := s.uri("")
	run(t, qemuImg, "convert", "-n", "-f", "raw", "-O", "raw", src, uri)
	run(t, qemuImg, "compare", "-f", "raw", "-F", "raw", src, uri)
	// A difference must be seen.
	data[12345] ^= 1
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(qemuImg, "compare", "-f", "raw", "-F", "raw", src, uri).CombinedOutput(); err == nil {
		t.Fatalf("qemu-img compare missed a difference: %s", out)
	}
}

func TestQemuIOPatterns(t *testing.T) {
	t.Parallel()
	qemuIO := testutil.RequireTool(t, "qemu-io", "qemu-utils")
	b, _ := newFileExport(t, 16<<20, allCaps())
	s := startServer(t, nbd.StaticExports{"": fullExport(b)}, nil)
	cmds := []string{
		"write -P 0xab 0 1M",
		"write -P 0xcd -f 1M 512k", // FUA
		"aio_write -P 0x11 4M 64k", "aio_write -P 0x22 5M 64k", "aio_flush",
		"write -z 8M 1M",
		"discard 10M 1M",
		"flush",
		"read -P 0xab 0 1M",
		"read -P 0xcd 1M 512k",
		"read -P 0x11 4M 64k",
		"read -P 0x22 5M 64k",
		"read -P 0 8M 1M",
		"readv -P 0xab 0 4k 4k 8k",
	}
	args := []string{"-f", "raw"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out := run(t, qemuIO, append(args, s.uri(""))...)
	if strings.Contains(out, "fail") || strings.Contains(out, "error") {
		t.Fatalf("qemu-io:\n%s", out)
	}
	// And a mismatch is caught, so the check above means something.
	bad, err := exec.Command(qemuIO, "-f", "raw", "-c", "read -P 0xee 0 4k", s.uri("")).CombinedOutput()
	if err == nil || !strings.Contains(string(bad), "Pattern verification failed") {
		t.Fatalf("qemu-io did not notice a wrong pattern: %v\n%s", err, bad)
	}
}

func TestFioVerify(t *testing.T) {
	t.Parallel()
	fio := testutil.RequireTool(t, "fio", "fio")
	const jobs, per = 4, 8 << 20
	b, _ := newFileExport(t, jobs*per, allCaps())
	s := startServer(t, nbd.StaticExports{"": fullExport(b)}, nil)
	// fio keeps verify state files in its working directory: use a temporary one.
	cmd := exec.Command(fio, "--name=verify", "--ioengine=nbd", "--uri="+s.uri(""),
		"--rw=randwrite", "--bs=4k", "--bsrange=4k-64k", "--iodepth=64",
		fmt.Sprint("--numjobs=", jobs), fmt.Sprint("--size=", per), fmt.Sprint("--offset_increment=", per),
		"--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--verify_state_save=0", "--group_reporting")
	cmd.Dir = t.TempDir()
	outb, err := cmd.CombinedOutput()
	out := string(outb)
	if err != nil {
		t.Fatalf("fio: %v\n%s", err, out)
	}
	// fio exits non-zero on a verify error (verify_fatal); also insist that
	// the verify pass read everything back.
	if !strings.Contains(out, "READ: bw=") || !strings.Contains(out, "WRITE: bw=") {
		t.Fatalf("fio did not write and verify:\n%s", out)
	}
}

// TestNbdfuseExt4 attaches an export through nbdfuse and a loop device,
// makes an ext4 filesystem on it, mounts it and writes a file, then checks
// the file through a second mount of the same export.
func TestNbdfuseExt4(t *testing.T) {
	testutil.RequireRoot(t)
	nbdfuse := testutil.RequireTool(t, "nbdfuse", "libnbd-bin")
	fusermount := testutil.RequireTool(t, "fusermount3", "fuse3")
	losetup := testutil.RequireTool(t, "losetup", "mount")
	mkfs := testutil.RequireTool(t, "mkfs.ext4", "e2fsprogs")
	testutil.RequireFile(t, "/dev/fuse", "fuse3")
	testutil.RequireFile(t, "/dev/loop-control", "util-linux")
	t.Parallel()

	b, _ := newFileExport(t, 64<<20, allCaps())
	s := startServer(t, nbd.StaticExports{"": fullExport(b)}, nil)
	dir := t.TempDir()
	fuseDir, mnt := filepath.Join(dir, "fuse"), filepath.Join(dir, "mnt")
	for _, d := range []string{fuseDir, mnt} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	attach := func() (loop string, detach func()) {
		pidfile := filepath.Join(dir, "pid")
		_ = os.Remove(pidfile)
		cmd := exec.Command(nbdfuse, "-P", pidfile, fuseDir+"/disk", s.uri(""))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		for i := 0; ; i++ {
			if st, err := os.Stat(pidfile); err == nil && st.Size() > 0 {
				break
			}
			if i == 1200 { // 30 s: generous on a loaded machine
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatalf("nbdfuse did not come up: %s", stderr.String())
			}
			time.Sleep(25 * time.Millisecond)
		}
		loop = strings.TrimSpace(run(t, losetup, "-f", "--show", fuseDir+"/disk"))
		return loop, func() {
			run(t, losetup, "-d", loop)
			run(t, fusermount, "-u", fuseDir)
			if err := cmd.Wait(); err != nil {
				t.Errorf("nbdfuse: %v: %s", err, stderr.String())
			}
		}
	}

	loop, detach := attach()
	run(t, mkfs, "-q", "-F", loop)
	run(t, "mount", loop, mnt)
	want := make([]byte, 3<<20)
	_, _ = rand.Read(want)
	if err := os.WriteFile(filepath.Join(mnt, "f"), want, 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, "umount", mnt)
	detach()

	loop, detach = attach()
	defer detach()
	run(t, "mount", "-o", "ro", loop, mnt)
	defer run(t, "umount", mnt)
	got, err := os.ReadFile(filepath.Join(mnt, "f"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("file read back through a second mount differs")
	}
}

// TestSideBySideNbdkit runs the same nbdinfo queries against nbdkit's file
// plugin and against pkg/nbd over the same file and compares the answers
// that do not depend on the server's implementation.
func TestSideBySideNbdkit(t *testing.T) {
	t.Parallel()
	nbdkit := testutil.RequireTool(t, "nbdkit", "nbdkit")
	nbdinfoBin := testutil.RequireTool(t, "nbdinfo", "libnbd-bin")
	b, path := newFileExport(t, 8<<20, allCaps())
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteAt(bytes.Repeat([]byte{1}, 1<<20), 2<<20)
	_, _ = f.WriteAt(bytes.Repeat([]byte{2}, 64<<10), 6<<20)
	_ = f.Close()
	ours := startServer(t, nbd.StaticExports{"": fullExport(b)}, nil)

	kitDir := t.TempDir()
	kitSock, kitPID := filepath.Join(kitDir, "kit.sock"), filepath.Join(kitDir, "kit.pid")
	// nbdkit writes its pid file once it accepts connections; the socket
	// file exists a moment before that (bind, then listen), and a client
	// that connects in between is refused.
	kit := exec.Command(nbdkit, "--foreground", "--exit-with-parent", "-U", kitSock, "-P", kitPID, "file", path)
	if err := kit.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kit.Process.Kill(); _ = kit.Wait() })
	for i := 0; ; i++ {
		if pid, err := os.ReadFile(kitPID); err == nil && bytes.HasSuffix(pid, []byte("\n")) {
			break
		}
		if i == 1200 { // 30 s: generous on a loaded machine
			t.Fatal("nbdkit did not start")
		}
		time.Sleep(25 * time.Millisecond)
	}
	kitURI := "nbd+unix:///?socket=" + kitSock

	v1, v2 := nbdinfo(t, kitURI), nbdinfo(t, ours.uri(""))
	e1, e2 := v1.Exports[0], v2.Exports[0]
	pairs := []struct {
		name string
		a, b any
	}{
		{"protocol", v1.ProtocolVersion, v2.ProtocolVersion},
		{"size", e1.Size, e2.Size},
		{"read-only", e1.ReadOnly, e2.ReadOnly},
		{"rotational", e1.Rotational, e2.Rotational},
		{"can_df", e1.CanDF, e2.CanDF},
		{"can_flush", e1.CanFlush, e2.CanFlush},
		{"can_fua", e1.CanFUA, e2.CanFUA},
		{"can_trim", e1.CanTrim, e2.CanTrim},
		{"can_zero", e1.CanZero, e2.CanZero},
		{"can_multi_conn", e1.CanMultiConn, e2.CanMultiConn},
		{"can_cache", e1.CanCache, e2.CanCache},
		{"contexts", strings.Join(e1.Contexts, ","), strings.Join(e2.Contexts, ",")},
	}
	for _, p := range pairs {
		if p.a != p.b {
			t.Errorf("%s: nbdkit %v, pkg/nbd %v", p.name, p.a, p.b)
		}
	}
	m1, m2 := run(t, nbdinfoBin, "--map", kitURI), run(t, nbdinfoBin, "--map", ours.uri(""))
	if m1 != m2 {
		t.Errorf("nbdinfo --map differs:\nnbdkit:\n%s\npkg/nbd:\n%s", m1, m2)
	}
	// The same content through both.
	c1 := run(t, nbdinfoBin, "--map", "--totals", kitURI)
	c2 := run(t, nbdinfoBin, "--map", "--totals", ours.uri(""))
	if c1 != c2 {
		t.Errorf("nbdinfo --map --totals differs:\nnbdkit:\n%s\npkg/nbd:\n%s", c1, c2)
	}
}
