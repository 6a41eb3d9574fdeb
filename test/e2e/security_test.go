package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/encblk/encblk/internal/daemon"
	"github.com/encblk/encblk/internal/testutil"
)

// processMemory reads every readable mapping of process pid (as root may,
// through /proc/PID/mem, MADV_DONTDUMP or not).
func processMemory(t *testing.T, pid int) []byte {
	t.Helper()
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	var all bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[1][0] != 'r' {
			continue
		}
		if len(f) >= 6 && (f[5] == "[vvar]" || f[5] == "[vsyscall]") {
			continue
		}
		lo, hi, _ := strings.Cut(f[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end-start > 8<<30 {
			continue
		}
		buf := make([]byte, end-start)
		n, _ := mem.ReadAt(buf, int64(start))
		all.Write(buf[:n])
	}
	return all.Bytes()
}

// secretsIn names which of the secrets occur in the process's memory.
func secretsIn(t *testing.T, pid int, secrets map[string][]byte) []string {
	t.Helper()
	mem := processMemory(t, pid)
	var found []string
	for name, s := range secrets {
		if bytes.Contains(mem, s) {
			found = append(found, name)
		}
	}
	return found
}

// TestLockLeavesNoKey: after `encblk lock`, nothing in the server's memory
// can unwrap the DEK again: neither the key file given to serve, nor one
// sent with `encblk unlock` (raw or as the base64 the control API carries),
// nor the DEK itself (either XTS half). While unlocked the DEK is there,
// which shows the scan sees what it looks for.
func TestLockLeavesNoKey(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("reading another process's memory needs root")
	}
	require(t, cryptsetupT)
	e := newEnv(t)
	key := e.keyFile("disk.key")
	disk := e.format("disk.img", 64<<20, key)
	dek := testutil.VolumeKey(t, tool(t, "cryptsetup", "luksDump", "--dump-volume-key", "--batch-mode", "--key-file", key, disk))
	kf, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string][]byte{
		"key file":           kf,
		"key file in base64": []byte(base64.StdEncoding.EncodeToString(kf)),
		"DEK (first half)":   dek[:len(dek)/2],
		"DEK (second half)":  dek[len(dek)/2:],
	}

	s := e.serve("disk.nbd", "--key-file", key, disk)
	pid := s.cmd.Process.Pid
	if found := secretsIn(t, pid, secrets); !strings.Contains(strings.Join(found, ","), "DEK") {
		t.Fatalf("unlocked server: the scan does not find the DEK (found %v); it cannot prove its absence either", found)
	}
	e.must("lock", disk)
	if found := secretsIn(t, pid, secrets); len(found) > 0 {
		t.Fatalf("after serve --key-file and lock, the server's memory still holds: %v", found)
	}

	// The same through the control socket.
	e.must("unlock", "--key-file", key, disk)
	e.must("lock", disk)
	if found := secretsIn(t, pid, secrets); len(found) > 0 {
		t.Fatalf("after unlock over the control socket and lock, the server's memory still holds: %v", found)
	}
	s.stop()
}

// sharedDir is a new directory in the system's temp dir with mode perm,
// which other users can reach (a test's own TempDir is under a 0700 one).
func sharedDir(t *testing.T, perm os.FileMode) string {
	t.Helper()
	d, err := os.MkdirTemp("", "encblk-shared-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, perm); err != nil {
		t.Fatal(err)
	}
	return d
}

// asUser runs name with args as uid:gid (the test runs as root).
func asUser(uid, gid uint32, name string, args ...string) *exec.Cmd {
	c := exec.Command(name, args...)
	c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	return c
}

// captureServer is python3 listening on a unix socket as another user,
// writing whatever a client sends it to out: the socket a hostile local
// user puts where encblk looks for its server.
const captureServer = `
import os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o777); s.listen(4)
open(sys.argv[2] + ".ready", "w").close()
while True:
    c, _ = s.accept()
    c.settimeout(2)
    with open(sys.argv[2], "ab") as f:
        try:
            while True:
                b = c.recv(65536)
                if not b: break
                f.write(b); f.flush()
        except OSError: pass
    c.close()
`

// startCapture starts captureServer at sock as uid:gid; what it receives
// goes to the returned file.
func startCapture(t *testing.T, uid, gid uint32, sock string) string {
	t.Helper()
	out := sock + ".captured"
	c := asUser(uid, gid, "/usr/bin/python3", "-c", captureServer, sock, out)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	for range 200 {
		if _, err := os.Stat(out + ".ready"); err == nil {
			return out
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatal("capture server did not start")
	return ""
}

// TestRuntimeDirHijack: another local user who creates the runtime
// directory of a user without XDG_RUNTIME_DIR first ($TMPDIR/encblk-UID)
// and listens on the well-known control socket there receives nothing:
// `encblk unlock` refuses the directory; and a client named a socket
// (--control) served by another user refuses it before sending the KEK.
func TestRuntimeDirHijack(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to act as two other users")
	}
	require(t, [2]string{"/usr/bin/python3", "python3"})
	const victim, attacker = 4242, 65534
	tmp := sharedDir(t, 0o1777) // a shared /tmp
	e := newEnv(t)
	key := e.keyFile("disk.key")
	disk := e.format("disk.img", 32<<20, key)
	// The victim's own copies, readable by the victim alone.
	vdir := filepath.Join(tmp, "victim")
	os.Mkdir(vdir, 0o700)
	vkey, vdisk := filepath.Join(vdir, "disk.key"), filepath.Join(vdir, "disk.img")
	tool(t, "cp", "--sparse=always", disk, vdisk)
	tool(t, "cp", key, vkey)
	bin := filepath.Join(tmp, "encblk")
	tool(t, "cp", encblkBin, bin)
	for _, p := range []string{vdir, vkey, vdisk} {
		if err := os.Chown(p, victim, victim); err != nil {
			t.Fatal(err)
		}
	}
	id, err := daemon.VolumeID(vdisk)
	if err != nil {
		t.Fatal(err)
	}

	// The attacker's directory where the victim's runtime dir would be.
	rdir := filepath.Join(tmp, fmt.Sprintf("encblk-%d", victim))
	if out, err := asUser(attacker, attacker, "mkdir", "-m", "0777", rdir).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	captured := startCapture(t, attacker, attacker, filepath.Join(rdir, id+".ctl"))

	env := []string{"PATH=" + os.Getenv("PATH"), "TMPDIR=" + tmp, "HOME=" + vdir}
	run := func(args ...string) (string, int) {
		c := asUser(victim, victim, bin, args...)
		c.Env = env
		out, err := c.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	out, code := run("unlock", "--key-file", vkey, vdisk)
	if code == 0 || !strings.Contains(out, "unsafe runtime directory") || !strings.Contains(out, fmt.Sprint(attacker)) {
		t.Fatalf("unlock through the attacker's directory: exit %d: %s", code, out)
	}
	out, code = run("unlock", "--control", filepath.Join(rdir, id+".ctl"), "--key-file", vkey, vdisk)
	if code == 0 || !strings.Contains(out, "neither root nor the same user") {
		t.Fatalf("unlock through --control on the attacker's socket: exit %d: %s", code, out)
	}
	if got, _ := os.ReadFile(captured); len(got) > 0 {
		t.Fatalf("the attacker's socket received %d bytes: %q", len(got), got)
	}
	// A server started as the victim refuses the directory too, rather
	// than putting its sockets (NBD and control) there.
	c := asUser(victim, victim, bin, "serve", "--key-file", vkey, vdisk)
	c.Env = env
	sout, err := c.CombinedOutput()
	if err == nil || !strings.Contains(string(sout), "unsafe runtime directory") {
		t.Fatalf("serve with the attacker's runtime directory: %v: %s", err, sout)
	}
}

// TestControlPeerCheck: the server answers only root and its own user;
// members of --status-group may read status through a --control socket,
// and nothing else.
func TestControlPeerCheck(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to act as another user")
	}
	require(t, [2]string{"/usr/bin/python3", "python3"})
	const other, group = 65534, 4343
	e := newEnv(t)
	key := e.keyFile("disk.key")
	disk := e.format("disk.img", 32<<20, key)
	ctl := filepath.Join(sharedDir(t, 0o755), "status.ctl")
	s := e.serve("disk.nbd", "--key-file", key, "--control", ctl, "--status-group", fmt.Sprint(group), disk)
	ask := func(method, path string) string {
		c := asUser(other, group, "/usr/bin/python3", "-c", `
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(("%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}" % (sys.argv[2], sys.argv[3])).encode())
print(s.makefile("rb").readline().decode().strip())`, ctl, method, path)
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s as uid %d: %v: %s", method, path, other, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := ask("GET", "/v1/status"); !strings.Contains(got, "200") {
		t.Fatalf("status as a member of the status group: %s", got)
	}
	if got := ask("POST", "/v1/lock"); !strings.Contains(got, "403") {
		t.Fatalf("lock as a member of the status group: %s", got)
	}
	if st := statusJSON(t, e, disk); st.Volumes[0].State != "unlocked" {
		t.Fatalf("state after the refused lock: %s", st.Volumes[0].State)
	}
	s.stop()
}

// opensWith reports whether cryptsetup opens the LUKS header of img with
// the key file (the independent judge of which KEK works).
func opensWith(t *testing.T, img, key string) bool {
	t.Helper()
	out, err := exec.Command("cryptsetup", "open", "--test-passphrase", "--disable-locks", "--key-file", key, img).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return true
	case errors.As(err, &ee) && ee.ExitCode() == 2: // no key available with this passphrase
		return false
	}
	t.Fatalf("cryptsetup open --test-passphrase %s: %v: %s", img, err, out)
	return false
}

// TestRotateKilledAtEachSync: `encblk rotate` (offline, and by a server
// while it serves) is SIGKILLed at its Nth fsync/fdatasync, for every N
// until it completes (strace injects the signal as the call is entered).
// Afterwards cryptsetup must open the volume with exactly one of the old
// and the new key file; once the new one worked at some N it must keep
// working for every later N, and a completed rotation leaves only the new.
func TestRotateKilledAtEachSync(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a rotation per sync point")
	}
	require(t, cryptsetupT, [2]string{"strace", "strace"})
	e := newEnv(t)
	oldKey, newKey := e.keyFile("old.key"), e.keyFile("new.key")
	golden := e.format("golden.img", 32<<20, oldKey)
	kdf := []string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"}

	check := func(mode string, n int, img string, sawNew *bool) {
		t.Helper()
		o, nw := opensWith(t, img, oldKey), opensWith(t, img, newKey)
		switch {
		case o == nw:
			t.Fatalf("%s, killed at sync %d: old key opens %v, new key opens %v; want exactly one", mode, n, o, nw)
		case nw:
			*sawNew = true
		case *sawNew:
			t.Fatalf("%s, killed at sync %d: the old key opens again after an earlier kill left only the new", mode, n)
		}
	}
	strace := func(n int) []string {
		return []string{"-f", "-qq", "-o", "/dev/null", "-e", "trace=fsync,fdatasync",
			"-e", fmt.Sprintf("inject=fsync,fdatasync:signal=KILL:when=%d", n)}
	}

	t.Run("offline", func(t *testing.T) {
		sawNew := false
		for n := 1; ; n++ {
			if n > 32 {
				t.Fatal("rotate never completed")
			}
			img := e.path(fmt.Sprintf("offline-%d.img", n))
			tool(t, "cp", "--sparse=always", golden, img)
			args := append(strace(n), encblkBin, "rotate", "--key-file", oldKey, "--new-key-file", newKey)
			c := exec.Command("strace", append(append(args, kdf...), img)...)
			c.Env = append(os.Environ(), "ENCBLK_RUNTIME_DIR="+e.run)
			out, err := c.CombinedOutput()
			check("offline", n, img, &sawNew)
			if err == nil {
				if !opensWith(t, img, newKey) || opensWith(t, img, oldKey) {
					t.Fatalf("completed rotation: want only the new key to open")
				}
				t.Logf("offline rotation completed after %d syncs", n-1)
				return
			}
			if !strings.Contains(string(out), "killed by SIGKILL") && !strings.Contains(err.Error(), "signal: killed") && !strings.Contains(err.Error(), "exit status 137") {
				t.Logf("rotate killed at sync %d: %v: %s", n, err, out)
			}
		}
	})

	t.Run("served", func(t *testing.T) {
		sawNew := false
		for n := 1; ; n++ {
			if n > 32 {
				t.Fatal("rotate never completed")
			}
			img := e.path(fmt.Sprintf("served-%d.img", n))
			tool(t, "cp", "--sparse=always", golden, img)
			s := e.serve(fmt.Sprintf("served-%d.nbd", n), "--key-file", oldKey, img)
			// Attach to every thread of the running server; -f follows
			// the threads it starts later.
			tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", s.cmd.Process.Pid))
			args := strace(n)
			for _, tk := range tasks {
				args = append(args, "-p", tk.Name())
			}
			tr := exec.Command("strace", args...)
			var trOut syncBuffer
			tr.Stderr = &trOut
			if err := tr.Start(); err != nil {
				t.Fatal(err)
			}
			waitTraced(t, s.cmd.Process.Pid, tasks)
			_, errs, code := e.encblk(append(append([]string{"rotate", "--key-file", oldKey, "--new-key-file", newKey}, kdf...), img)...)
			completed := code == 0
			if completed {
				s.stop()
			} else {
				s.kill()
			}
			tr.Process.Kill()
			tr.Wait()
			check("served", n, img, &sawNew)
			if completed {
				if !opensWith(t, img, newKey) || opensWith(t, img, oldKey) {
					t.Fatalf("completed rotation: want only the new key to open")
				}
				t.Logf("served rotation completed after %d syncs", n-1)
				return
			}
			t.Logf("server killed at sync %d; rotate said: %s", n, strings.TrimSpace(errs))
		}
	})
}

// waitTraced waits until strace has attached to each of pid's tasks.
func waitTraced(t *testing.T, pid int, tasks []os.DirEntry) {
	t.Helper()
	for range 400 {
		all := true
		for _, tk := range tasks {
			st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, tk.Name()))
			if !strings.Contains(string(st), "TracerPid:\t") || strings.Contains(string(st), "TracerPid:\t0\n") {
				all = false
			}
		}
		if all {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("strace did not attach to the server")
}

// auditRecord is one record of the audit schema (internal/audit).
type auditRecord struct {
	Msg     string `json:"msg"`
	Event   string `json:"event"`
	Result  string `json:"result"`
	Volume  string `json:"volume"`
	Keyslot int    `json:"keyslot"`
	KEK     string `json:"kek"`
	Error   string `json:"error"`
	PeerUID int64  `json:"peer_uid"`
	PeerPID int64  `json:"peer_pid"`
}

// TestAuditRecords: a scripted session against a server logging JSON
// leaves one audit record per action, in order, with the schema's fields.
func TestAuditRecords(t *testing.T) {
	require(t, cryptsetupT)
	e := newEnv(t)
	key, other, extra := e.keyFile("disk.key"), e.keyFile("other.key"), e.keyFile("extra.key")
	disk := e.format("disk.img", 32<<20, key)
	uuid := strings.TrimSpace(tool(t, "cryptsetup", "luksUUID", disk))
	s := e.serve("disk.nbd", "--log-format", "json", "--locked", disk)
	kdf := []string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"}

	if _, _, code := e.encblk("unlock", "--key-file", other, disk); code != 2 {
		t.Fatalf("unlock with a wrong key: exit %d", code)
	}
	e.must("unlock", "--key-file", key, disk)
	e.must(append(append([]string{"keyslot", "add", "--key-file", key}, kdf...), disk, extra)...)
	e.must("keyslot", "remove", "--batch-mode", disk, "1")
	e.must(append(append([]string{"rotate", "--key-file", key, "--new-key-file", other}, kdf...), disk)...)
	e.must("lock", disk)
	s.stop()

	var got []auditRecord
	for _, line := range strings.Split(s.log.String(), "\n") {
		var r auditRecord
		if json.Unmarshal([]byte(line), &r) == nil && r.Msg == "audit" {
			got = append(got, r)
		}
	}
	want := []auditRecord{
		{Event: "unlock", Result: "failed", Keyslot: -1},
		{Event: "unlock", Result: "ok", Keyslot: 0, KEK: "secret"},
		{Event: "add-keyslot", Result: "ok", Keyslot: 1, KEK: "secret"},
		{Event: "remove-keyslot", Result: "ok", Keyslot: 1, KEK: "secret"},
		{Event: "rotate-kek", Result: "ok", Keyslot: 1, KEK: "secret"},
		{Event: "lock", Result: "ok", Keyslot: -1},
	}
	if len(got) != len(want) {
		t.Fatalf("%d audit records, want %d:\n%s", len(got), len(want), s.log)
	}
	for i, w := range want {
		g := got[i]
		if g.Event != w.Event || g.Result != w.Result || g.Keyslot != w.Keyslot || g.KEK != w.KEK ||
			g.Volume != uuid || g.PeerUID != int64(os.Getuid()) || g.PeerPID <= 0 || (g.Result == "ok") != (g.Error == "") {
			t.Errorf("record %d: %+v, want %+v with volume %s and this test's uid", i, g, w, uuid)
		}
	}
}

// scrape GETs url's metrics through client.
func scrape(t *testing.T, client *http.Client, url string) string {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s, %v", url, resp.Status, err)
	}
	return string(b)
}

// metricValue is the value of the series named exactly series ("name{labels}").
func metricValue(t *testing.T, text, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("no series %s in:\n%s", series, text)
	return 0
}

// TestMetrics: the Prometheus exposition on --metrics-listen and on the
// control socket passes promtool's lint, counts the requests a client
// made, and follows lock and unlock.
func TestMetrics(t *testing.T) {
	require(t, nbdcopyTool, [2]string{"promtool", "prometheus"})
	e := newEnv(t)
	key := e.keyFile("disk.key")
	disk := e.format("disk.img", 32<<20, key)
	s := e.serve("disk.nbd", "--key-file", key, "--metrics-listen", "tcp:127.0.0.1:0", disk)
	var addr string
	for _, line := range strings.Split(s.log.String(), "\n") {
		if _, a, ok := strings.Cut(line, "metrics="); ok {
			addr = strings.TrimSpace(a)
		}
	}
	if addr == "" {
		t.Fatalf("no metrics address logged:\n%s", s.log)
	}
	id, err := daemon.VolumeID(disk)
	if err != nil {
		t.Fatal(err)
	}
	data := e.path("data")
	if err := os.WriteFile(data, pattern(4<<20, 7), 0o600); err != nil {
		t.Fatal(err)
	}
	tool(t, "nbdcopy", data, s.uri())
	tool(t, "nbdcopy", s.uri(), e.path("back"))

	text := scrape(t, http.DefaultClient, "http://"+addr+"/metrics")
	lint := exec.Command("promtool", "check", "metrics")
	lint.Stdin = strings.NewReader(text)
	if out, err := lint.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	vol := fmt.Sprintf(`{volume="%s"}`, id)
	if w := metricValue(t, text, fmt.Sprintf(`encblk_request_bytes_total{op="write",volume="%s"}`, id)); w < 4<<20 {
		t.Errorf("bytes written %v, want >= 4 MiB", w)
	}
	if r := metricValue(t, text, fmt.Sprintf(`encblk_request_bytes_total{op="read",volume="%s"}`, id)); r < 4<<20 {
		t.Errorf("bytes read %v, want >= 4 MiB", r)
	}
	if n := metricValue(t, text, fmt.Sprintf(`encblk_request_duration_seconds_count{op="write",volume="%s"}`, id)); n < 1 {
		t.Errorf("write latency count %v", n)
	}
	if l := metricValue(t, text, "encblk_volume_locked"+vol); l != 0 {
		t.Errorf("locked %v while unlocked", l)
	}
	if k := metricValue(t, text, fmt.Sprintf(`encblk_keyslots{kind="secret",volume="%s"}`, id)); k != 1 {
		t.Errorf("keyslots %v, want 1", k)
	}

	e.must("lock", disk)
	ctl, err := daemon.ControlSocket(disk)
	if err != nil {
		t.Fatal(err)
	}
	// ControlSocket resolves the runtime dir from this process's
	// environment; the server's is e.run.
	ctl = filepath.Join(e.run, filepath.Base(ctl))
	unixClient := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", ctl)
	}}}
	text = scrape(t, unixClient, "http://encblk/metrics")
	if l := metricValue(t, text, "encblk_volume_locked"+vol); l != 1 {
		t.Errorf("locked %v after lock", l)
	}
	s.stop()
}
