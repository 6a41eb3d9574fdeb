package xts

import (
	"testing"
	"unsafe"
)

// TestScheduleLayout keeps schedule_amd64.h in step with the Go struct.
func TestScheduleLayout(t *testing.T) {
	var ks schedule
	for _, f := range []struct {
		name      string
		got, want uintptr
	}{
		{"enc", unsafe.Offsetof(ks.enc), 0},
		{"dec", unsafe.Offsetof(ks.dec), 240},
		{"tweak", unsafe.Offsetof(ks.tweak), 480},
		{"enc0", unsafe.Offsetof(ks.enc0), 720},
		{"dec0", unsafe.Offsetof(ks.dec0), 784},
		{"tweak0", unsafe.Offsetof(ks.tweak0), 848},
		{"rounds", unsafe.Offsetof(ks.rounds), 912},
	} {
		if f.got != f.want {
			t.Errorf("offset of %s is %d, schedule_amd64.h says %d", f.name, f.got, f.want)
		}
	}
}

// TestScheduleProtected checks that the round keys live in the secmem
// buffer and that Close destroys (wipes and unmaps) it.
func TestScheduleProtected(t *testing.T) {
	for _, p := range paths {
		if p == pathGeneric {
			continue
		}
		c, err := newPath(make([]byte, 64), p)
		if err != nil {
			t.Fatal(err)
		}
		mem := c.mem
		if unsafe.Pointer(c.ks) != unsafe.Pointer(&mem.Bytes()[0]) {
			t.Fatalf("%s: schedule is not in the protected buffer", p)
		}
		if c.ks.rounds != 14 || c.ks.enc[14] == [16]byte{} {
			t.Fatalf("%s: schedule not filled in", p)
		}
		c.Close()
		if mem.Len() != 0 || c.ks != nil {
			t.Fatalf("%s: Close did not destroy the schedule", p)
		}
	}
}
