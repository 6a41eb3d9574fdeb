package secmem

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"
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
	flags := smapsFlags(t, addr)
	// lo = locked, dd = do not include in core dump.
	for _, f := range []string{"lo", "dd"} {
		if !strings.Contains(" "+flags+" ", " "+f+" ") {
			t.Errorf("mapping at %#x lacks VmFlag %q (flags: %s)", addr, f, flags)
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

// smapsFlags returns the VmFlags line of the mapping containing addr.
func smapsFlags(t *testing.T, addr uintptr) string {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in := false
	for sc.Scan() {
		line := sc.Text()
		var lo, hi uintptr
		if n, _ := fmt.Sscanf(line, "%x-%x ", &lo, &hi); n == 2 && !strings.HasPrefix(line, "VmFlags") {
			in = addr >= lo && addr < hi
			continue
		}
		if in && strings.HasPrefix(line, "VmFlags:") {
			return strings.TrimSpace(strings.TrimPrefix(line, "VmFlags:"))
		}
	}
	t.Fatalf("mapping for %#x not found", addr)
	return ""
}
