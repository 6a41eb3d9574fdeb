package backing

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"

	"github.com/encblk/encblk/pkg/blockdev"
)

func TestPlainRefusesLUKS(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		header []byte
		ok     bool
	}{
		{"luks", []byte("LUKS\xba\xbe\x00\x02"), false},
		{"luks1", []byte("LUKS\xba\xbe\x00\x01"), false},
		{"zeros", make([]byte, 8), true},
		{"almost", []byte("LUKS\xba\xbf"), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := newSparse(t, 1<<16)
			if err := os.WriteFile(path, c.header, 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := Open(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			_, err = NewPlain(f)
			if c.ok != (err == nil) || (!c.ok && !errors.Is(err, ErrLUKSHeader)) {
				t.Fatalf("NewPlain: %v", err)
			}
		})
	}
}

func TestPlainDevice(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, err := Open(newSparse(t, 1<<20), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := NewPlain(f)
	if err != nil {
		t.Fatal(err)
	}
	if p.Size() != 1<<20 || !p.Info().CanTrim || p.Info().ReadOnly {
		t.Fatalf("size %d info %+v", p.Size(), p.Info())
	}
	data := bytes.Repeat([]byte("plain"), 20000)
	if err := p.WriteAt(ctx, data, 4096, true); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if err := p.ReadAt(ctx, got, 4096); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("round trip: %v", err)
	}
	for _, flags := range []blockdev.ZeroFlags{0, blockdev.ZeroNoHole | blockdev.ZeroFUA, blockdev.ZeroFast} {
		if err := p.WriteAt(ctx, data[:8192], 8192, false); err != nil {
			t.Fatal(err)
		}
		if err := p.Zero(ctx, 8192, 8192, flags); err != nil {
			t.Fatalf("zero %v: %v", flags, err)
		}
		if err := p.ReadAt(ctx, got[:8192], 8192); err != nil || !bytes.Equal(got[:8192], make([]byte, 8192)) {
			t.Fatalf("zero %v: not zeros (%v)", flags, err)
		}
	}
	if err := p.Trim(ctx, 0, 1<<20, false); err != nil {
		t.Fatal(err)
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Prefetch(ctx, 0, 1<<20); err != nil {
		t.Fatal(err)
	}
	// After trimming everything the file is one hole; then one data run.
	if err := p.WriteAt(ctx, data[:4096], 64<<10, false); err != nil {
		t.Fatal(err)
	}
	ext, err := p.Extents(ctx, nil, 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, e := range ext {
		total += e.Length
	}
	if total != 1<<20 {
		t.Fatalf("extents cover %d bytes: %+v", total, ext)
	}
	if len(ext) == 3 && !(ext[0].Hole && !ext[1].Hole && ext[2].Hole && ext[1].Length == 4096) {
		t.Fatalf("extents %+v", ext)
	}
}
