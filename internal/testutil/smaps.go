package testutil

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"
)

// VmFlags returns the VmFlags of this process's mapping that contains
// addr, from /proc/self/smaps ("lo": locked, "dd": left out of core
// dumps, ...), as a set. No /proc skips.
func VmFlags(tb testing.TB, addr uintptr) map[string]bool {
	tb.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		tb.Skipf("no /proc/self/smaps: %v", err)
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
			set := map[string]bool{}
			for _, fl := range strings.Fields(strings.TrimPrefix(line, "VmFlags:")) {
				set[fl] = true
			}
			return set
		}
	}
	tb.Fatalf("mapping for %#x not found", addr)
	return nil
}
