package daemon

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/encblk/encblk/pkg/keyring"
)

// recordReencryption records a reencryption in the header at path, as
// encblk reencrypt --init-only does, for the key file secret.
func recordReencryption(t *testing.T, path string, secret []byte) {
	t.Helper()
	kr, err := keyring.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer kr.Close()
	if err := kr.StartReencrypt(context.Background(), []keyring.Identity{keyFile(t, secret)}, nil); err != nil {
		t.Fatal(err)
	}
}

// A served volume whose header records a reencryption is reencrypted in
// the background while clients read and write: every read returns what
// the model says was written last, across the moving boundary and the
// hot zone; at the end the header holds only the new key and the volume
// keeps serving the same data.
func TestOnlineReencryption(t *testing.T) {
	t.Parallel()
	ctx := ctxWithTimeout(t)
	secret := []byte("online reencryption key file")
	path := newBacking(t, t.TempDir(), "vol.img", secret, 16<<20+24<<20)
	const size = 24 << 20

	v, err := OpenVolume(ctx, VolumeSpec{Backing: path}, keyFile(t, secret))
	if err != nil {
		t.Fatal(err)
	}
	model := make([]byte, size)
	rand.Read(model)
	if err := v.Device().WriteAt(ctx, bytes.Clone(model), 0, false); err != nil {
		t.Fatal(err)
	}
	v.Close()

	recordReencryption(t, path, secret)

	v, err = OpenVolume(ctx, VolumeSpec{Backing: path}, keyFile(t, secret))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if st := v.Status(); st.Reencryption == nil || st.Reencryption.Mode != "reencrypt" {
		t.Fatalf("status: %+v", st.Reencryption)
	}
	// Clients: 4 KiB and 64 KiB writes and reads at random places until
	// the reencryption is over, against a model under one lock.
	var mu sync.Mutex
	finished := make(chan error, 1)
	go func() { finished <- v.WaitReencryption(ctx) }()
	rng := mrand.New(mrand.NewPCG(1, 2))
	requests := 0
	for running := true; running; requests++ {
		select {
		case err := <-finished:
			if err != nil {
				t.Fatalf("reencryption: %v", err)
			}
			running = false
		default:
		}
		n := int64(4096 << (4 * rng.IntN(2)))
		off := rng.Int64N(size/n) * n
		if rng.IntN(2) == 0 {
			p := make([]byte, n)
			rand.Read(p)
			mu.Lock()
			copy(model[off:], p)
			err := v.Device().WriteAt(ctx, p, off, false)
			mu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
		} else {
			got := make([]byte, n)
			mu.Lock()
			err := v.Device().ReadAt(ctx, got, off)
			ok := bytes.Equal(got, model[off:off+n])
			mu.Unlock()
			if err != nil || !ok {
				t.Fatalf("read %d+%d during reencryption: %v, equal %v", off, n, err, ok)
			}
		}
	}
	got := make([]byte, size)
	if err := v.Device().ReadAt(ctx, got, 0); err != nil || !bytes.Equal(got, model) {
		t.Fatalf("after reencryption: %v, data equal %v", err, bytes.Equal(got, model))
	}
	if st := v.Status(); st.Reencryption != nil {
		t.Fatalf("reencryption still recorded: %+v", st.Reencryption)
	}
	t.Logf("%d client requests during the reencryption", requests)
	v.Close()
	// A fresh open sees a plain LUKS2 volume with the same data.
	v, err = OpenVolume(ctx, VolumeSpec{Backing: path}, keyFile(t, secret))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Device().ReadAt(ctx, got, 0); err != nil || !bytes.Equal(got, model) {
		t.Fatalf("reopened: %v, data equal %v", err, bytes.Equal(got, model))
	}
}

// A volume cryptsetup left with a hot zone (SIGKILL) is recovered from the
// resilience area by the next open, finished in the background, and
// serves the plaintext it was made with.
func TestOnlineReencryptionRecoversCrash(t *testing.T) {
	t.Parallel()
	ctx := ctxWithTimeout(t)
	fixtures := "../../pkg/keyring/testdata/reencrypt"
	zf, err := os.Open(filepath.Join(fixtures, "reencrypt-crash.img.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer zf.Close()
	zr, err := gzip.NewReader(zf)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "crash.img")
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, zr); err != nil {
		t.Fatal(err)
	}
	out.Close()
	key, err := os.ReadFile(filepath.Join(fixtures, "key"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(fixtures, "plaintext.sha256"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := OpenVolume(ctx, VolumeSpec{Backing: path}, keyFile(t, key))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if err := v.WaitReencryption(ctx); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, v.Device().Size())
	if err := v.Device().ReadAt(ctx, got, 0); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(got)
	if hex.EncodeToString(sum[:]) != strings.TrimSpace(string(want)) {
		t.Fatal("plaintext differs after recovery and online reencryption")
	}
}
