package secmem

import (
	"testing"
	"unsafe"

	"github.com/encblk/encblk/internal/testutil"
)

func TestBufferLifecycle(t *testing.T) {
	src := []byte("0123456789abcdef0123456789abcdef")
	want := string(src)
	b, err := FromBytes(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range src {
		if c != 0 {
			t.Fatal("FromBytes did not wipe its source")
		}
	}
	if string(b.Bytes()) != want || b.Len() != len(want) {
		t.Fatalf("Bytes = %q", b.Bytes())
	}
	addr := uintptr(unsafe.Pointer(&b.Bytes()[0]))
	flags := testutil.VmFlags(t, addr)
	// lo = locked, dd = do not include in core dump.
	for _, f := range []string{"lo", "dd"} {
		if !flags[f] {
			t.Errorf("mapping at %#x lacks VmFlag %q (flags: %v)", addr, f, flags)
		}
	}
	b.Destroy()
	b.Destroy()
	if b.Len() != 0 || b.Bytes() != nil {
		t.Fatal("destroyed buffer still has bytes")
	}
}

func TestBadSize(t *testing.T) {
	for _, n := range []int{0, -1, MaxSize + 1} {
		if _, err := New(n); err == nil {
			t.Errorf("New(%d) succeeded", n)
		}
	}
}
