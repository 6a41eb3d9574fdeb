package e2e

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/encblk/encblk/internal/testutil"
)

// attach exposes a served volume as a loop device: nbdfuse makes it a
// file, losetup a block device. detach undoes both.
func attach(t *testing.T, e *env, s *server, name string) (dev string, detach func()) {
	t.Helper()
	dir := e.path(name)
	os.MkdirAll(dir, 0o755)
	fuse := exec.Command("nbdfuse", dir, "--unix", s.sock)
	var out syncBuffer
	fuse.Stdout, fuse.Stderr = &out, &out
	if err := fuse.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- fuse.Wait() }()
	file := filepath.Join(dir, "nbd")
	for i := 0; ; i++ {
		if _, err := os.Stat(file); err == nil {
			break
		}
		if i == 400 {
			fuse.Process.Kill()
			t.Fatalf("nbdfuse did not come up: %s", out.String())
		}
		time.Sleep(25 * time.Millisecond)
	}
	dev = strings.TrimSpace(tool(t, "losetup", "--find", "--show", file))
	var once sync.Once
	detach = func() {
		once.Do(func() {
			exec.Command("losetup", "-d", dev).Run()
			for range 100 {
				if exec.Command("fusermount3", "-u", dir).Run() == nil {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				fuse.Process.Kill()
				<-done
			}
		})
	}
	t.Cleanup(detach)
	return dev, detach
}

// TestFilesystemSurvivesRestart: format, serve, nbdfuse, losetup,
// mkfs.ext4, mount, write a tree of files, unmount, stop the server, serve
// again, mount: every file's sha256 matches and fsck.ext4 -n is clean.
func TestFilesystemSurvivesRestart(t *testing.T) {
	testutil.RequireRoot(t)
	require(t, nbdfuseTool, losetupTool, mkfsTool, fsckTool, fusermountTl)
	e := newEnv(t)
	key := e.keyFile("key")
	disk := e.format("disk.img", 80<<20, key, "--sector-size", "4096")
	files := map[string][]byte{}
	for i := range 24 {
		name := filepath.Join(fmt.Sprintf("d%d", i%4), fmt.Sprintf("sub%d", i%3), fmt.Sprintf("f%d.bin", i))
		files[name] = pattern(1+i*37000, byte(i))
	}
	mnt := e.path("mnt")
	os.MkdirAll(mnt, 0o755)

	s := e.serve("nbd.sock", "--key-file", key, disk)
	dev, detach := attach(t, e, s, "fuse1")
	tool(t, "mkfs.ext4", "-q", "-F", dev)
	tool(t, "mount", dev, mnt)
	for name, data := range files {
		p := filepath.Join(mnt, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			exec.Command("umount", mnt).Run()
			t.Fatal(err)
		}
	}
	tool(t, "umount", mnt)
	detach()
	s.stop()

	s = e.serve("nbd2.sock", "--key-file", key, disk)
	dev, detach = attach(t, e, s, "fuse2")
	tool(t, "mount", "-o", "ro", dev, mnt)
	for name, data := range files {
		got, err := os.ReadFile(filepath.Join(mnt, name))
		if err != nil || sha(got) != sha(data) {
			exec.Command("umount", mnt).Run()
			t.Fatalf("%s after restart: sha256 differs (%v)", name, err)
		}
	}
	tool(t, "umount", mnt)
	tool(t, "fsck.ext4", "-n", "-f", dev)
	detach()
	s.stop()
}

// TestLockWithActiveReader: a reader's I/O waits while the volume is
// locked and completes with the right data after unlock; a wrong KEK
// exits 2 and leaves it locked; with --lock-mode=fail I/O gets EIO.
func TestLockWithActiveReader(t *testing.T) {
	require(t, nbdcopyTool)
	e := newEnv(t)
	key := e.keyFile("key")
	wrong := e.keyFile("wrong")
	disk := e.format("disk.img", 24<<20, key)
	data := pattern(8<<20, 1)
	os.WriteFile(e.path("data.bin"), data, 0o600)

	s := e.serve("nbd.sock", "--key-file", key, disk)
	tool(t, "nbdcopy", "--flush", e.path("data.bin"), s.uri())
	e.must("lock", disk)
	if out := e.must("status", disk); !strings.Contains(out, "locked") {
		t.Fatalf("status after lock:\n%s", out)
	}
	reader := exec.Command("nbdcopy", s.uri(), "-")
	var got bytes.Buffer
	reader.Stdout = &got
	if err := reader.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- reader.Wait() }()
	time.Sleep(500 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("reader finished while locked: %v", err)
	default:
	}
	if _, errs, code := e.encblk("unlock", "--key-file", wrong, disk); code != 2 || strings.Count(errs, "\n") != 1 {
		t.Fatalf("unlock with a wrong KEK: exit %d, stderr %q; want 2 and one line", code, errs)
	}
	st := statusJSON(t, e, disk)
	if st.Volumes[0].State != "locked" {
		t.Fatalf("state after wrong KEK: %s", st.Volumes[0].State)
	}
	e.must("unlock", "--key-file", key, disk)
	select {
	case err := <-done:
		if err != nil || sha(got.Bytes()) != sha(data) {
			t.Fatalf("reader after unlock: %v, %d bytes, data differs", err, got.Len())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("reader did not complete after unlock")
	}

	// A reader already busy when the lock comes: qemu-io reads and checks
	// a pattern thousands of times; locking stalls it, unlocking resumes
	// it, and every read still checks out.
	require(t, qemuIOTool)
	tool(t, "qemu-io", "-f", "raw", s.uri(), "-c", "write -P 0x3c 0 64k", "-c", "flush")
	args := []string{"-f", "raw", s.uri()}
	for range 20000 {
		args = append(args, "-c", "read -q -P 0x3c 0 64k")
	}
	busy := exec.Command("qemu-io", args...)
	var busyOut bytes.Buffer
	busy.Stdout, busy.Stderr = &busyOut, &busyOut
	if err := busy.Start(); err != nil {
		t.Fatal(err)
	}
	busyDone := make(chan error, 1)
	go func() { busyDone <- busy.Wait() }()
	// Lock as soon as the reader's reads show in the counters.
	before := statusJSON(t, e, disk).Volumes[0].BytesRead
	for i := 0; i < 400 && statusJSON(t, e, disk).Volumes[0].BytesRead == before; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	e.must("lock", disk)
	lockedAt := statusJSON(t, e, disk).Volumes[0]
	time.Sleep(300 * time.Millisecond)
	if st := statusJSON(t, e, disk).Volumes[0]; st.BytesRead != lockedAt.BytesRead {
		t.Fatalf("reads went on while locked (%d -> %d bytes)", lockedAt.BytesRead, st.BytesRead)
	}
	select {
	case err := <-busyDone:
		t.Logf("the reader finished before the lock (%v); the stall was not exercised", err)
		busyDone <- err
	default:
	}
	e.must("unlock", "--key-file", key, disk)
	select {
	case err := <-busyDone:
		if err != nil || strings.Contains(busyOut.String(), "failed") || strings.Contains(busyOut.String(), "mismatch") {
			t.Fatalf("busy reader: %v\n%.300s", err, busyOut.String())
		}
	case <-time.After(120 * time.Second):
		t.Fatal("busy reader did not complete after unlock")
	}
	s.stop()

	s = e.serve("nbd2.sock", "--key-file", key, "--lock-mode", "fail", disk)
	e.must("lock", disk)
	out, err := exec.Command("nbdcopy", s.uri(), "-").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Input/output error") {
		t.Fatalf("read with --lock-mode=fail: %v: %.200s", err, out)
	}
	s.stop()
}

type status struct {
	Volumes []struct {
		State    string `json:"state"`
		Keyslots []struct {
			ID int `json:"id"`
		} `json:"keyslots"`
		BytesRead    uint64 `json:"bytes_read"`
		BytesWritten uint64 `json:"bytes_written"`
	} `json:"volumes"`
}

func statusJSON(t *testing.T, e *env, disk string) status {
	t.Helper()
	var st status
	if err := json.Unmarshal([]byte(e.must("status", "--json", disk)), &st); err != nil || len(st.Volumes) != 1 {
		t.Fatalf("status --json: %v", err)
	}
	return st
}

// TestRotateOnlineUnderLoad: a KEK rotation while a client writes fails no
// request; afterwards the old KEK opens nothing, the new one does,
// cryptsetup luksDump agrees, and the data is intact. The writes (1 MiB,
// FUA) go over one connection that is open before the rotation starts and
// still writing after it ends, and a write provably runs inside the
// rotation: one starts and completes while rotate runs.
func TestRotateOnlineUnderLoad(t *testing.T) {
	require(t, qemuIOTool, nbdcopyTool, cryptsetupT)
	e := newEnv(t)
	key1 := e.keyFile("key1")
	disk := e.format("disk.img", 24<<20, key1, "--sector-size", "4096")
	s := e.serve("nbd.sock", "--key-file", key1, disk)

	// The server derives the new keyslot's key with argon2id (64 MiB, 4
	// passes: a good part of a second) while the writer keeps writing. A
	// rotation counts as overlapped once the writer completed two writes
	// between the moment rotate started and the moment it returned: its
	// writes are sequential, so the second one started after the first
	// completed, inside the rotation, and finished inside it too. A
	// rotation that did not overlap (a starved writer) is retried with
	// the next key, a few times at most; none overlapping fails the test.
	w := startWriter(t, s.uri())
	w.waitFor(t, 1)
	key, slot := key1, ""
	for i := 2; slot == ""; i++ {
		if i == 7 {
			t.Fatal("no write started and completed during any of 5 rotations")
		}
		next := e.path(fmt.Sprintf("key%d", i))
		before := w.writes.Load()
		out := e.must("rotate", "--key-file", key, "--generate-key-file", next,
			"--pbkdf", "argon2id", "--pbkdf-force-iterations", "4", "--pbkdf-memory", "65536", disk)
		after := w.writes.Load()
		m := regexp.MustCompile(`replaced by keyslot (\d+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("rotate: %q", out)
		}
		t.Logf("rotation %d: %d writes completed while it ran", i-1, after-before)
		key = next
		if after-before >= 2 {
			slot = m[1]
		}
	}
	w.waitFor(t, w.writes.Load()+1)
	all := w.stop(t)
	t.Logf("writes completed: %d in all", all)
	key2 := key
	if fi, err := os.Stat(key2); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("generated key file: %v %v", fi, err)
	}
	data := pattern(8<<20, 9)
	os.WriteFile(e.path("data.bin"), data, 0o600)
	tool(t, "nbdcopy", "--flush", e.path("data.bin"), s.uri())

	e.must("lock", disk)
	if _, _, code := e.encblk("unlock", "--key-file", key1, disk); code != 2 {
		t.Fatalf("unlock with the old KEK: exit %d, want 2", code)
	}
	e.must("unlock", "--key-file", key2, disk)
	if st := statusJSON(t, e, disk); len(st.Volumes[0].Keyslots) != 1 || fmt.Sprint(st.Volumes[0].Keyslots[0].ID) != slot {
		t.Fatalf("keyslots after rotation: %+v, want keyslot %s alone", st.Volumes[0].Keyslots, slot)
	}
	s.stop()

	dump := tool(t, "cryptsetup", "luksDump", disk)
	if slots := regexp.MustCompile(`(?m)^\s+(\d+): luks2`).FindAllStringSubmatch(dump, -1); len(slots) != 1 || slots[0][1] != slot {
		t.Fatalf("luksDump does not show keyslot %s alone:\n%s", slot, dump)
	}
	if err := exec.Command("cryptsetup", "open", "--test-passphrase", "--key-file", key1, disk).Run(); err == nil {
		t.Fatal("cryptsetup opens the volume with the old KEK")
	}
	tool(t, "cryptsetup", "open", "--test-passphrase", "--key-file", key2, disk)

	s = e.serve("nbd2.sock", "--key-file", key2, disk)
	got, err := exec.Command("nbdcopy", s.uri(), "-").Output()
	if err != nil || sha(got[:len(data)]) != sha(data) {
		t.Fatalf("data after rotation and restart differs (%v)", err)
	}
	s.stop()
}

// writer is one qemu-io process writing 1 MiB blocks with FUA, one after
// another, over a single NBD connection, and counting completed writes.
type writer struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	writes atomic.Int64
	done   chan struct{} // closed when the write loop has ended
	quit   chan struct{}
	err    error // why the loop ended early; read after done
}

func startWriter(t *testing.T, uri string) *writer {
	t.Helper()
	w := &writer{cmd: exec.Command("qemu-io", "-f", "raw", uri), done: make(chan struct{}), quit: make(chan struct{})}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	w.cmd.Stdout, w.cmd.Stderr = pw, pw
	if w.stdin, err = w.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	go func() {
		w.err = w.loop(bufio.NewScanner(pr))
		close(w.done)
		io.Copy(io.Discard, pr) // qemu-io's last prompt, so it never gets EPIPE
		pr.Close()
	}()
	t.Cleanup(func() { w.cmd.Process.Kill(); w.cmd.Wait() })
	return w
}

// loop writes until quit, then reads the last block back.
func (w *writer) loop(sc *bufio.Scanner) error {
	await := func(cmd, want string) error {
		if _, err := fmt.Fprintln(w.stdin, cmd); err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
		for sc.Scan() {
			switch line := sc.Text(); {
			case strings.Contains(line, "failed") || strings.Contains(line, "error"):
				return fmt.Errorf("%s: %s", cmd, line)
			case strings.Contains(line, want):
				return nil
			}
		}
		return fmt.Errorf("%s: qemu-io ended: %v", cmd, sc.Err())
	}
	for i := 0; ; i++ {
		pat, off := i%250+1, (i%7)<<20
		if err := await(fmt.Sprintf("write -f -P %d %d 1M", pat, off), "wrote 1048576/1048576"); err != nil {
			return err
		}
		w.writes.Add(1)
		select {
		case <-w.quit:
			return await(fmt.Sprintf("read -P %d %d 1M", pat, off), "read 1048576/1048576")
		default:
		}
	}
}

// waitFor waits until n writes have completed and returns the count.
func (w *writer) waitFor(t *testing.T, n int64) int64 {
	t.Helper()
	for {
		if c := w.writes.Load(); c >= n {
			return c
		}
		select {
		case <-w.done:
			t.Fatalf("writer stopped after %d writes: %v", w.writes.Load(), w.err)
		case <-time.After(time.Millisecond):
		}
	}
}

// stop ends the writes, checks that the last one reads back, and returns
// the number of writes completed.
func (w *writer) stop(t *testing.T) int64 {
	t.Helper()
	close(w.quit)
	<-w.done
	if w.err != nil {
		t.Fatalf("after %d writes: %v", w.writes.Load(), w.err)
	}
	fmt.Fprintln(w.stdin, "quit")
	w.stdin.Close()
	if err := w.cmd.Wait(); err != nil {
		t.Fatalf("qemu-io: %v", err)
	}
	return w.writes.Load()
}

// TestCiphertextMatchesOpenSSL decrypts the backing with the DEK that
// cryptsetup reveals and OpenSSL's AES-XTS (python3-cryptography),
// independently of encblk: it equals what was written through NBD, and
// the backing holds no plaintext.
func TestCiphertextMatchesOpenSSL(t *testing.T) {
	require(t, nbdcopyTool, cryptsetupT)
	py := testutil.RequirePythonModule(t, "cryptography", "python3-cryptography")
	for _, ss := range []int{512, 4096} {
		t.Run(strconv.Itoa(ss), func(t *testing.T) {
			e := newEnv(t)
			key := e.keyFile("key")
			disk := e.format("disk.img", 20<<20, key, "--sector-size", strconv.Itoa(ss))
			data := pattern(4<<20, byte(ss))
			os.WriteFile(e.path("data.bin"), data, 0o600)
			s := e.serve("nbd.sock", "--key-file", key, disk)
			tool(t, "nbdcopy", "--flush", e.path("data.bin"), s.uri())
			s.stop()

			dump := tool(t, "cryptsetup", "luksDump", "--dump-volume-key", "--batch-mode", "--key-file", key, disk)
			dek := testutil.VolumeKey(t, dump)
			if len(dek) != 64 {
				t.Fatalf("volume key of %d bytes, want 64", len(dek))
			}
			// luksDump --dump-volume-key prints the data offset in
			// 512-byte sectors ("Payload offset").
			m := regexp.MustCompile(`Payload offset:\s*(\d+)`).FindStringSubmatch(dump)
			if m == nil {
				t.Fatalf("no data offset in luksDump:\n%s", dump)
			}
			offset, _ := strconv.Atoi(m[1])
			offset *= 512
			ranges := [][2]int{{0, 4096}, {ss * 300, 2 * ss}, {len(data) - ss, ss}}
			req, _ := json.Marshal(map[string]any{"key": hex.EncodeToString(dek), "path": disk,
				"data_offset": offset, "sector_size": ss, "iv_tweak": 0, "ranges": ranges})
			cmd := exec.Command(py, "../../testdata/xts-decrypt.py")
			cmd.Stdin = bytes.NewReader(req)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("xts-decrypt.py: %v: %s", err, out)
			}
			lines := strings.Fields(string(out))
			for i, r := range ranges {
				got, _ := hex.DecodeString(lines[i])
				if !bytes.Equal(got, data[r[0]:r[0]+r[1]]) {
					t.Fatalf("sectors at %d: OpenSSL's plaintext differs from what was written", r[0])
				}
			}
			raw, _ := os.ReadFile(disk)
			if bytes.Contains(raw, data[8192:8192+64]) {
				t.Fatal("the backing contains plaintext")
			}
		})
	}
}

// TestBadInput: each failure exits with its documented status and one
// line on stderr; a server killed mid-write leaves a header that opens and
// the data of every completed flush.
func TestBadInput(t *testing.T) {
	require(t, cryptsetupT, qemuIOTool)
	e := newEnv(t)
	key := e.keyFile("key")
	os.WriteFile(e.path("tiny"), []byte("not a volume"), 0o600)
	disk := e.format("disk.img", 20<<20, key)
	short := e.format("short.img", 20<<20, key)
	os.Truncate(short, 1<<20)
	luks1 := e.path("luks1.img")
	os.WriteFile(e.path("pass"), []byte("right passphrase"), 0o600)
	os.WriteFile(e.path("wrongpass"), []byte("wrong passphrase\n"), 0o600)
	os.WriteFile(luks1, nil, 0o600)
	os.Truncate(luks1, 8<<20)
	tool(t, "cryptsetup", "luksFormat", "--type", "luks1", "--batch-mode", "--pbkdf-force-iterations", "1000",
		"--key-file", e.path("pass"), luks1)

	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"missing backing", []string{"serve", "--key-file", key, e.path("nope.img")}, 1, "no such file"},
		{"not LUKS", []string{"serve", "--key-file", key, e.path("tiny")}, 4, "LUKS"},
		{"smaller than its header", []string{"serve", "--key-file", key, short}, 4, "too small"},
		{"LUKS1 wrong passphrase", []string{"serve", "--passphrase-file", e.path("wrongpass"), luks1}, 2, "no key slot matches"},
		{"plain on a LUKS backing", []string{"serve", "--plain", disk}, 4, "LUKS header"},
		{"bad lock mode", []string{"serve", "--lock-mode", "maybe", disk}, 1, "lock mode"},
		{"unlock unserved", []string{"unlock", "--key-file", key, disk}, 1, "not served"},
	} {
		_, errs, code := e.encblk(c.args...)
		if code != c.code || strings.Count(errs, "\n") != 1 || !strings.Contains(strings.ToLower(errs), strings.ToLower(c.want)) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d and one line with %q", c.name, code, errs, c.code, c.want)
		}
	}

	s := e.serve("nbd.sock", "--key-file", key, disk)
	if _, errs, code := e.encblk("serve", "--listen", "unix:"+e.path("other.sock"), "--key-file", key, disk); code != 3 || !strings.Contains(errs, "busy") {
		t.Errorf("second serve: exit %d, stderr %q; want 3 and busy", code, errs)
	}
	tool(t, "qemu-io", "-f", "raw", s.uri(), "-c", "write -P 0xa5 0 2M", "-c", "flush")
	writer := exec.Command("qemu-io", "-f", "raw", s.uri(), "-c", "write -P 0x5a 2M 2M", "-c", "write -P 0x5a 4M 2M", "-c", "write -P 0x5a 6M 2M")
	writer.Start()
	time.Sleep(20 * time.Millisecond)
	s.kill()
	writer.Wait()

	if out := e.must("status", disk); !strings.Contains(out, "not served") {
		t.Fatalf("status after SIGKILL:\n%s", out)
	}
	s = e.serve("nbd2.sock", "--key-file", key, disk)
	tool(t, "qemu-io", "-f", "raw", s.uri(), "-c", "read -P 0xa5 0 2M")
	s.stop()
}
