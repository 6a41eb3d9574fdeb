package nbd

import (
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
)

func TestSystemdListeners(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// The "passed" socket: a raw dup, owned by systemdListeners once it
	// accepts it (an *os.File here would close it again when collected).
	rc, err := l.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	if err := rc.Control(func(s uintptr) { fd, err = syscall.Dup(int(s)) }); err != nil || fd < 0 {
		t.Fatal(err)
	}
	consumed := false
	defer func() {
		if !consumed {
			syscall.Close(fd)
		}
	}()
	pid := os.Getpid()

	for _, tc := range []struct {
		name     string
		env      map[string]string
		want     int
		wantErr  bool
		unsetAll bool
	}{
		{"not activated", map[string]string{}, 0, false, false},
		{"other process", map[string]string{"LISTEN_PID": strconv.Itoa(pid + 1), "LISTEN_FDS": "1"}, 0, false, false},
		{"bad count", map[string]string{"LISTEN_PID": strconv.Itoa(pid), "LISTEN_FDS": "x"}, 0, true, false},
		{"one socket", map[string]string{"LISTEN_PID": strconv.Itoa(pid), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "nbd"}, 1, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range tc.env {
				env[k] = v
			}
			ls, err := systemdListeners(func(k string) string { return env[k] },
				func(k string) error { delete(env, k); return nil }, pid, fd)
			if (err != nil) != tc.wantErr || len(ls) != tc.want {
				t.Fatalf("got %d listeners, err %v", len(ls), err)
			}
			if len(ls) > 0 {
				consumed = true
			}
			if tc.unsetAll && len(env) != 0 {
				t.Errorf("environment left: %v", env)
			}
			for _, sl := range ls {
				// The activated listener accepts on the original socket.
				go func() {
					c, err := net.Dial("tcp", l.Addr().String())
					if err == nil {
						c.Close()
					}
				}()
				c, err := sl.Accept()
				if err != nil {
					t.Fatal(err)
				}
				c.Close()
				sl.Close()
			}
		})
	}
}
