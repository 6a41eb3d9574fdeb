package volume

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/encblk/encblk/internal/backing"
	"github.com/encblk/encblk/internal/blockdevtest"
	"github.com/encblk/encblk/internal/secmem"
	"github.com/encblk/encblk/internal/testutil"
	"github.com/encblk/encblk/pkg/blockdev"
)

// testVolume is a volume over a sparse backing file in a temp dir.
type testVolume struct {
	*Volume
	backing *backing.File
	path    string
	key     []byte // a copy of the DEK, for the independent check
}

const testDataOffset = 32 << 10

func newTestVolume(t testing.TB, cfg Config) *testVolume {
	t.Helper()
	if cfg.Size == 0 {
		cfg.Size = 1 << 20
	}
	if cfg.DataOffset == 0 {
		cfg.DataOffset = testDataOffset
	}
	path := filepath.Join(t.TempDir(), "backing")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, cfg.DataOffset+cfg.Size); err != nil {
		t.Fatal(err)
	}
	b, err := backing.Open(path, backing.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	key := make([]byte, 64)
	crand.Read(key)
	v, err := New(b, cfg, newDEK(t, key))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return &testVolume{Volume: v, backing: b, path: path, key: key}
}

func newDEK(t testing.TB, key []byte) *secmem.Buffer {
	t.Helper()
	dek, err := secmem.FromBytes(bytes.Clone(key))
	if err != nil {
		t.Fatal(err)
	}
	return dek
}

// TestRoundTrip writes and reads at every alignment, through
// blockdev.ByteGranular as the NBD server does, against a model of the
// plaintext, for both sector sizes and a non-zero iv_tweak.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, c := range []struct {
		ss    int
		tweak uint64
	}{{512, 0}, {4096, 0}, {4096, 8 * 1000}, {1024, 3}} {
		t.Run("", func(t *testing.T) {
			t.Parallel()
			const size = 64 << 10
			tv := newTestVolume(t, Config{SectorSize: c.ss, IVTweak: c.tweak, Size: size})
			v := blockdev.ByteGranular(tv)
			model := make([]byte, size)
			// Fresh sectors read back as whatever a zero-filled backing
			// decrypts to; start from a known state instead.
			if err := v.Zero(ctx, 0, size, 0); err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(uint64(c.ss), c.tweak))
			edges := []int64{0, 1, 511, 512, 513, 4095, 4096, 4097, 8191}
			for i := 0; i < len(edges)*len(edges)+60; i++ {
				var off, n int64
				if i < len(edges)*len(edges) {
					off = edges[i%len(edges)] + 4096
					n = edges[i/len(edges)] + 1
				} else {
					off = rng.Int64N(size)
					n = 1 + rng.Int64N(min(size-off, 20<<10))
				}
				n = min(n, size-off)
				p := make([]byte, n)
				for j := range p {
					p[j] = byte(rng.Uint32())
				}
				if err := v.WriteAt(ctx, bytes.Clone(p), off, i%7 == 0); err != nil {
					t.Fatalf("write %d+%d: %v", off, n, err)
				}
				copy(model[off:], p)
				roff := rng.Int64N(size)
				got := make([]byte, 1+rng.Int64N(min(size-roff, 20<<10)))
				if err := v.ReadAt(ctx, got, roff); err != nil {
					t.Fatalf("read %d+%d: %v", roff, len(got), err)
				}
				if !bytes.Equal(got, model[roff:roff+int64(len(got))]) {
					t.Fatalf("after write %d+%d: read %d+%d differs from model", off, n, roff, len(got))
				}
			}
			got := make([]byte, size)
			if err := v.ReadAt(ctx, got, 0); err != nil || !bytes.Equal(got, model) {
				t.Fatalf("full read differs (%v)", err)
			}
			st := tv.Stats()
			if st.BytesRead == 0 || st.BytesWritten < size {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestCiphertextOpenSSL decrypts the backing with OpenSSL's AES-XTS (via
// python3-cryptography) and compares with what was written through the
// volume; the backing must not contain the plaintext.
func TestCiphertextOpenSSL(t *testing.T) {
	t.Parallel()
	py := testutil.RequirePythonModule(t, "cryptography", "python3-cryptography")
	ctx := context.Background()
	for _, c := range []struct {
		ss    int
		tweak uint64
	}{{512, 0}, {4096, 0}, {4096, 123}} {
		v := newTestVolume(t, Config{SectorSize: c.ss, IVTweak: c.tweak, Size: 1 << 20})
		plain := bytes.Repeat([]byte("encblk independent check "), 13000)[:300<<10]
		if err := v.WriteAt(ctx, bytes.Clone(plain), 64<<10, true); err != nil {
			t.Fatal(err)
		}
		ct, err := os.ReadFile(v.path)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(ct, []byte("encblk independent")) {
			t.Fatal("backing contains plaintext")
		}
		ranges := [][2]int64{{64 << 10, 300 << 10}, {128 << 10, int64(c.ss)}}
		out := opensslDecrypt(t, py, v, ranges)
		for i, r := range ranges {
			want := plain[r[0]-64<<10 : r[0]-64<<10+r[1]]
			if !bytes.Equal(out[i], want) {
				t.Fatalf("ss %d tweak %d range %v: OpenSSL's plaintext differs", c.ss, c.tweak, r)
			}
		}
	}
}

func opensslDecrypt(t *testing.T, py string, v *testVolume, ranges [][2]int64) [][]byte {
	t.Helper()
	req, _ := json.Marshal(map[string]any{
		"key": hex.EncodeToString(v.key), "path": v.path, "data_offset": v.cfg.DataOffset,
		"sector_size": v.cfg.SectorSize, "iv_tweak": v.cfg.IVTweak, "ranges": ranges,
	})
	cmd := exec.Command(py, "../../testdata/xts-decrypt.py")
	cmd.Stdin = bytes.NewReader(req)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("xts-decrypt.py: %v: %s", err, stderr.String())
	}
	var res [][]byte
	for _, line := range strings.Fields(string(out)) {
		b, err := hex.DecodeString(line)
		if err != nil {
			t.Fatal(err)
		}
		res = append(res, b)
	}
	if len(res) != len(ranges) {
		t.Fatalf("xts-decrypt.py returned %d ranges, want %d", len(res), len(ranges))
	}
	return res
}

// TestConcurrentOverlappingWrites races unaligned and whole-sector writes
// over the same sectors of a volume, through blockdev.ByteGranular as the
// NBD server does, and checks the result is linearizable (see
// blockdevtest.OverlappingWrites): no lost update, no torn sector.
func TestConcurrentOverlappingWrites(t *testing.T) {
	t.Parallel()
	for _, ss := range []int{512, 4096} {
		tv := newTestVolume(t, Config{SectorSize: ss, Size: int64(32 * ss)})
		// A backing that yields after every read, like slow storage,
		// widens the window between a read-modify-write's read and write.
		v, err := New(slowBacking{tv.backing}, tv.cfg, newDEK(t, tv.key))
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		blockdevtest.OverlappingWrites(t, blockdev.ByteGranular(v), int64(ss), 6, 300)
	}
}

// slowBacking yields the processor after every read.
type slowBacking struct{ *backing.File }

func (b slowBacking) ReadAt(p []byte, off int64) (int, error) {
	n, err := b.File.ReadAt(p, off)
	time.Sleep(10 * time.Microsecond)
	return n, err
}

// blockingBacking holds its first read until release is closed, to keep
// a request in flight while the test locks the volume.
type blockingBacking struct {
	*backing.File
	first   atomic.Bool
	started chan struct{}
	release chan struct{}
}

func (b *blockingBacking) ReadAt(p []byte, off int64) (int, error) {
	if b.first.CompareAndSwap(false, true) {
		b.started <- struct{}{}
		<-b.release
	}
	return b.File.ReadAt(p, off)
}

func TestLockUnlock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tv := newTestVolume(t, Config{SectorSize: 4096, Size: 64 << 10})
	data := bytes.Repeat([]byte{0x5a}, 8192)
	if err := tv.WriteAt(ctx, bytes.Clone(data), 4096, false); err != nil {
		t.Fatal(err)
	}
	bb := &blockingBacking{File: tv.backing, started: make(chan struct{}), release: make(chan struct{})}
	v, err := New(bb, tv.cfg, newDEK(t, tv.key))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()

	// A read in flight: Lock must wait for it.
	inflight := make(chan error, 1)
	go func() { inflight <- v.ReadAt(ctx, make([]byte, 4096), 4096) }()
	<-bb.started
	locked := make(chan error, 1)
	go func() { locked <- v.Lock(ctx) }()
	waitState(t, v, Locking)
	select {
	case err := <-locked:
		t.Fatalf("Lock returned (%v) with a request in flight", err)
	default:
	}
	// A request arriving while locking waits too.
	waiter := make(chan error, 1)
	got := make([]byte, 8192)
	go func() { waiter <- v.ReadAt(ctx, got, 4096) }()
	close(bb.release)
	if err := <-inflight; err != nil {
		t.Fatalf("in-flight read: %v", err)
	}
	if err := <-locked; err != nil {
		t.Fatal(err)
	}
	if v.State() != Locked {
		t.Fatalf("state %v", v.State())
	}
	select {
	case err := <-waiter:
		t.Fatalf("request completed while locked: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	// Unlock lets the waiting request through with the right data.
	if err := v.Unlock(newDEK(t, tv.key)); err != nil {
		t.Fatal(err)
	}
	if err := <-waiter; err != nil || !bytes.Equal(got, data) {
		t.Fatalf("waiting read after unlock: %v", err)
	}
	if v.State() != Unlocked {
		t.Fatalf("state %v", v.State())
	}
}

func waitState(t *testing.T, v *Volume, want State) {
	t.Helper()
	for range 1000 {
		if v.State() == want {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("state %v, want %v", v.State(), want)
}

func TestLockedRequestsFail(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, c := range []struct {
		name string
		cfg  Config
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"fail mode", Config{LockMode: LockFail}, nil, syscall.EIO},
		{"timeout", Config{LockTimeout: 20 * time.Millisecond}, nil, syscall.EIO},
		{"client gone", Config{}, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(ctx, 20*time.Millisecond)
		}, syscall.ESHUTDOWN},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.SectorSize = 512
			v := newTestVolume(t, c.cfg)
			if err := v.Lock(ctx); err != nil {
				t.Fatal(err)
			}
			rctx := ctx
			if c.ctx != nil {
				var cancel context.CancelFunc
				rctx, cancel = c.ctx()
				defer cancel()
			}
			for name, op := range map[string]func() error{
				"read":  func() error { return v.ReadAt(rctx, make([]byte, 512), 0) },
				"write": func() error { return v.WriteAt(rctx, make([]byte, 512), 0, false) },
				"flush": func() error { return v.Flush(rctx) },
			} {
				err := op()
				if !errors.Is(err, c.want) {
					t.Errorf("%s: %v, want %v", name, err, c.want)
				}
				if c.want == syscall.EIO && !errors.Is(err, ErrLocked) {
					t.Errorf("%s: %v does not wrap ErrLocked", name, err)
				}
			}
		})
	}
}

func TestCloseFailsRequests(t *testing.T) {
	t.Parallel()
	v := newTestVolume(t, Config{SectorSize: 512})
	if err := v.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	waiter := make(chan error, 1)
	go func() { waiter <- v.ReadAt(context.Background(), make([]byte, 512), 0) }()
	waitState(t, v.Volume, Locked)
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-waiter; !errors.Is(err, ErrClosed) || !errors.Is(err, syscall.ESHUTDOWN) {
		t.Fatalf("waiting request after Close: %v", err)
	}
	if err := v.Unlock(newDEK(t, v.key)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Unlock after Close: %v", err)
	}
}

func TestZeroWritesCiphertext(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	v := newTestVolume(t, Config{SectorSize: 4096, Size: 4 << 20})
	if err := v.WriteAt(ctx, bytes.Repeat([]byte{1}, 3<<20), 0, false); err != nil {
		t.Fatal(err)
	}
	// Unaligned (through ByteGranular) and spanning several zero chunks.
	const off, n = 1000, 2<<20 + 12345
	if err := blockdev.ByteGranular(v).Zero(ctx, off, n, blockdev.ZeroFUA); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 3<<20)
	if err := v.ReadAt(ctx, got, 0); err != nil {
		t.Fatal(err)
	}
	for i, b := range got {
		want := byte(1)
		if i >= off && i < off+n {
			want = 0
		}
		if b != want {
			t.Fatalf("byte %d is %d, want %d", i, b, want)
		}
	}
	// The backing holds ciphertext of zeros, not zeros (no hole).
	raw := make([]byte, 4096)
	if _, err := v.backing.ReadAt(raw, testDataOffset+8192); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(raw, make([]byte, 4096)) {
		t.Fatal("zeroed sector is zeros in the backing")
	}
	if err := v.Zero(ctx, 0, 4096, blockdev.ZeroFast); !errors.Is(err, syscall.ENOTSUP) {
		t.Fatalf("fast zero: %v, want ENOTSUP", err)
	}
}

func TestTrim(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, allow := range []bool{false, true} {
		v := newTestVolume(t, Config{SectorSize: 4096, Size: 1 << 20, AllowDiscards: allow})
		if err := v.WriteAt(ctx, bytes.Repeat([]byte{7}, 1<<20), 0, false); err != nil {
			t.Fatal(err)
		}
		// Through ByteGranular only whole sectors inside the range are
		// discarded.
		if err := blockdev.ByteGranular(v).Trim(ctx, 100, 64<<10, true); err != nil {
			t.Fatal(err)
		}
		raw := make([]byte, 68<<10)
		if _, err := v.backing.ReadAt(raw, testDataOffset); err != nil {
			t.Fatal(err)
		}
		holed := bytes.Equal(raw[4096:65536], make([]byte, 65536-4096))
		if holed != allow {
			t.Fatalf("allow-discards %v: backing punched %v", allow, holed)
		}
		if bytes.Equal(raw[:4096], make([]byte, 4096)) || bytes.Equal(raw[65536:], make([]byte, 4096)) {
			t.Fatal("a partially trimmed sector was discarded")
		}
		if allow && v.Stats().BytesDiscarded != 65536-4096 {
			t.Fatalf("stats %+v", v.Stats())
		}
	}
}

func TestReadOnlyAndBounds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	v := newTestVolume(t, Config{SectorSize: 512, ReadOnly: true, Size: 64 << 10})
	if !v.Info().ReadOnly {
		t.Fatal("Info not read-only")
	}
	for name, err := range map[string]error{
		"write": v.WriteAt(ctx, make([]byte, 512), 0, false),
		"zero":  v.Zero(ctx, 0, 512, 0),
		"trim":  v.Trim(ctx, 0, 512, false),
	} {
		if !errors.Is(err, syscall.EPERM) {
			t.Errorf("%s: %v, want EPERM", name, err)
		}
	}
	rw := newTestVolume(t, Config{SectorSize: 4096, Size: 64 << 10})
	for name, err := range map[string]error{
		"read past the end": v.ReadAt(ctx, make([]byte, 1024), 64<<10-512),
		"unaligned offset":  v.ReadAt(ctx, make([]byte, 512), 100),
		"unaligned length":  v.ReadAt(ctx, make([]byte, 100), 512),
		"negative offset":   v.ReadAt(ctx, make([]byte, 512), -512),
		"unaligned write":   rw.WriteAt(ctx, make([]byte, 4096), 512, false),
		"unaligned zero":    rw.Zero(ctx, 0, 512, 0),
		"unaligned trim":    rw.Trim(ctx, 4096, 100, false),
	} {
		if !errors.Is(err, syscall.EINVAL) {
			t.Errorf("%s: %v, want EINVAL", name, err)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "b")
	os.WriteFile(path, make([]byte, 64<<10), 0o600)
	b, err := backing.Open(path, backing.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, cfg := range []Config{
		{SectorSize: 300, Size: 4096},
		{SectorSize: 512, Size: 1000},
		{SectorSize: 512, Size: 4096, DataOffset: 100},
		{SectorSize: 512, Size: 64 << 10, DataOffset: 512}, // beyond the backing
		{SectorSize: 512, Size: 4096, LockTimeout: -1},
	} {
		if _, err := New(b, cfg, nil); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: %v, want ErrConfig", cfg, err)
		}
	}
	if _, err := New(b, Config{SectorSize: 512, Size: 4096}, newDEK(t, make([]byte, 48))); err == nil {
		t.Error("48-byte key accepted")
	}
}
