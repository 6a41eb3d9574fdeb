package sedsim

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/encblk/encblk/pkg/sed"
)

func newTestDrive(t testing.TB) *Drive {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, make([]byte, 64*512), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := New(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestDiscoveryParses(t *testing.T) {
	d := newTestDrive(t)
	d0, err := sed.Discover(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	if d0.OpalV2 == nil || d0.OpalV2.BaseComID != 0x07FE || d0.DataRemoval == nil || d0.DataRemoval.Mechanisms != 0x04 ||
		!d0.Locking.MediaEncryption || d0.Locking.LockingEnabled || d0.Geometry.LogicalBlockSize != 512 {
		t.Fatalf("%+v", d0)
	}
}

func TestMediaChecks(t *testing.T) {
	d := newTestDrive(t)
	if _, err := d.ReadAt(make([]byte, 100), 0); !errors.Is(err, ErrAlignment) {
		t.Errorf("unaligned: %v", err)
	}
	if _, err := d.WriteAt(make([]byte, 512), 64*512); !errors.Is(err, ErrRange) {
		t.Errorf("past end: %v", err)
	}
	if err := d.IFRecv(context.Background(), sed.ProtocolTCGManagement, 0x07FE, make([]byte, 512)); !errors.Is(err, ErrProtocol) {
		t.Errorf("protocol 2: %v", err)
	}
	if err := d.IFSend(context.Background(), sed.ProtocolTCG, 0x1000, make([]byte, 512)); !errors.Is(err, ErrProtocol) {
		t.Errorf("wrong ComID: %v", err)
	}
}

// FuzzIFSend: whatever a host sends, the simulated TPer neither panics nor
// answers with something the host's parsers reject.
func FuzzIFSend(f *testing.F) {
	for _, tokens := range [][]byte{
		{0xfa},
		mustEncode(sed.PropertiesCall(sed.DefaultHostProperties)),
		mustEncode(sed.StartSessionCall(1, sed.AdminSP, true, sed.UID{}, nil)),
		mustEncode(sed.StartSessionCall(1, sed.LockingSP, true, sed.AuthorityAdmin1, []byte("x"))),
	} {
		b, _ := sed.NewComPacket(0x07FE, 0, 0, tokens).MarshalBinary()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d := newTestDrive(t)
		ctx := context.Background()
		if err := d.IFSend(ctx, sed.ProtocolTCG, 0x07FE, b); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		if err := d.IFRecv(ctx, sed.ProtocolTCG, 0x07FE, buf); err != nil {
			t.Fatal(err)
		}
		cp, err := sed.ParseComPacket(buf)
		if err != nil {
			t.Fatalf("reply unparsable: %v", err)
		}
		if len(cp.Packets) > 0 {
			_, payload, err := cp.Payload()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := sed.ParseMethodResult(payload); err != nil && !errors.Is(err, sed.ErrSessionEnded) {
				t.Fatalf("reply unparsable: %v", err)
			}
		}
	})
}

func mustEncode(m sed.MethodCall) []byte {
	b, err := m.Encode()
	if err != nil {
		panic(err)
	}
	return b
}
