package tpm2

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// systemdToken is a systemd-cryptenroll 252 token (PCRs 7+11, swtpm).
const systemdToken = `{"type":"systemd-tpm2","keyslots":["2"],"tpm2-blob":"AJ4AIDP+LLTTB9gTcwCKljbWwXIJeLH/UK+cNbcHKwIz8N+SABAN30tNzRy/Xg1tBkNlERyoKIye3kolc4UBt7N3KLpkuyjXnaLAGUge7/VUPRFH8HK2qvpuQvm7mK0Ts2ehjL1vO+edtJ9jgonKwxcXGEiJcbd9dTv9WyiH7Y+tD65dEvH3MuAES8Sk+0reQ4Lff5aSvngtzXE40451qQBOAAgACwAAABIAIDhDeMrt3JaQsqyViYJ6dWpcRsizMXiy/kaMgFMbl6U+ABAAIPq07i53u2eM38br3et9VWNuX9QfdZfo26vDf0gXwtXt","tpm2-pcrs":[7,11],"tpm2-pcr-bank":"sha256","tpm2-primary-alg":"ecc","tpm2-policy-hash":"384378caeddc9690b2ac9589827a756a5c46c8b33178b2fe468c80531b97a53e","tpm2-pin":false}`

// silentTPM is a socket that takes commands and never answers, or
// answers garbage.
func silentTPM(t *testing.T, answer []byte) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "tpm.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			if answer != nil {
				c.Write(answer)
			}
		}
	}()
	return "swtpm:path=" + sock
}

// A TPM that never answers does not hang unlocking: each command is
// bounded, and so is the caller's context.
func TestSilentTPMIsBounded(t *testing.T) {
	old := commandTimeout
	commandTimeout = 200 * time.Millisecond
	t.Cleanup(func() { commandTimeout = old })
	dev := silentTPM(t, nil)
	_, err := NewIdentity(dev).unwrapToken(context.Background(), []byte(systemdToken))
	if err == nil || !strings.Contains(err.Error(), "did not answer within 200ms") {
		t.Fatalf("silent TPM: %v", err)
	}
	commandTimeout = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := NewIdentity(dev).unwrapToken(ctx, []byte(systemdToken)); err == nil || !strings.Contains(err.Error(), "context deadline exceeded") {
		t.Fatalf("silent TPM, context ends: %v", err)
	}
	// A TPM answering garbage: one error, no panic.
	for _, answer := range [][]byte{{0x80, 0x01, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}, {0x80, 0x01, 0, 0, 0, 10, 0, 0, 0, 0}, []byte("not a TPM at all")} {
		if _, err := NewIdentity(silentTPM(t, answer)).unwrapToken(context.Background(), []byte(systemdToken)); err == nil {
			t.Fatalf("garbage %x accepted", answer)
		}
	}
}
