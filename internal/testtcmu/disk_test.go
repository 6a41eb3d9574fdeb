package testtcmu

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/encblk/encblk/pkg/sed"
	"github.com/encblk/encblk/pkg/sed/sedsim"
)

// cdbTransport is sed.Transport over Disk.Execute with the CDBs pkg/sed's
// SG_IO transports send: SECURITY PROTOCOL IN/OUT, or TRUSTED RECEIVE/SEND
// in ATA PASS-THROUGH(16). The kernel path is tested in test/vm.
type cdbTransport struct {
	d   *Disk
	ata bool
}

func (c cdbTransport) run(cdb []byte, buf []byte) error {
	r := c.d.Execute(cdb, buf)
	if r.Status != statusGood {
		return fmt.Errorf("status 0x%02x sense % x", r.Status, r.Sense)
	}
	return nil
}

func (c cdbTransport) cdb(send bool, proto sed.SecurityProtocol, comID uint16, n int) []byte {
	if !c.ata {
		if send {
			b := sed.SecurityProtocolOutCDB(proto, comID, uint32(n))
			return b[:]
		}
		b := sed.SecurityProtocolInCDB(proto, comID, uint32(n))
		return b[:]
	}
	blocks := uint64(n / 512)
	a := sed.ATACommand{Protocol: 4, Command: 0x5C, Features: uint16(proto), Count: uint16(blocks & 0xFF), LBA: blocks>>8 | uint64(comID)<<8}
	if send {
		a.Protocol, a.Command = 5, 0x5E
	}
	b := a.CDB()
	return b[:]
}

func (c cdbTransport) IFRecv(_ context.Context, proto sed.SecurityProtocol, comID uint16, buf []byte) error {
	return c.run(c.cdb(false, proto, comID, len(buf)), buf)
}

func (c cdbTransport) IFSend(_ context.Context, proto sed.SecurityProtocol, comID uint16, data []byte) error {
	return c.run(c.cdb(true, proto, comID, len(data)), data)
}

func newOpalDisk(t testing.TB, vendor string) *Disk {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	drv, err := sedsim.New(path, sedsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { drv.Close() })
	return &Disk{Vendor: vendor, Product: "sedsim opal", Revision: "1.0", Serial: "T1", Size: 1 << 20, Opal: drv, Media: drv}
}

func read10(lba uint32, blocks uint16) []byte {
	return []byte{0x28, 0, byte(lba >> 24), byte(lba >> 16), byte(lba >> 8), byte(lba), 0, byte(blocks >> 8), byte(blocks), 0}
}

// TestOpalThroughCDBs takes a range through SECURITY PROTOCOL (a SCSI
// disk) and through ATA PASS-THROUGH (a SATA disk behind SAT): a locked
// range's READ fails with DATA PROTECT, ACCESS DENIED - NO ACCESS RIGHTS
// (20h/02h); unlocked, it reads what was written.
func TestOpalThroughCDBs(t *testing.T) {
	for _, tc := range []struct {
		vendor string
		ata    bool
	}{{"SEDSIM", false}, {"ATA", true}, {"ATA", false}} {
		t.Run(fmt.Sprintf("%s-ata=%v", tc.vendor, tc.ata), func(t *testing.T) {
			ctx := context.Background()
			d := newOpalDisk(t, tc.vendor)
			dev, err := sed.Open(ctx, cdbTransport{d, tc.ata})
			if err != nil {
				t.Fatal(err)
			}
			admin, key := []byte("admin-key"), bytes.Repeat([]byte{7}, 32)
			r := sed.OpalRange{Segment: 1, StartBlock: 0, LengthBlocks: 1024}
			if err := dev.SetupRange(ctx, admin, key, r); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 4096)
			resp := d.Execute(read10(8, 8), buf)
			if resp.Status != statusCheckCond || len(resp.Sense) < 14 || resp.Sense[2] != keyDataProtect || resp.Sense[12] != 0x20 || resp.Sense[13] != 0x02 {
				t.Fatalf("read of a locked range: %+v", resp)
			}
			if err := dev.UnlockRange(ctx, 1, key); err != nil {
				t.Fatal(err)
			}
			want := bytes.Repeat([]byte("plaintext"), 4096/9+1)[:4096]
			w := append([]byte{0x2A}, read10(8, 8)[1:]...)
			if resp := d.Execute(w, append([]byte(nil), want...)); resp.Status != statusGood {
				t.Fatalf("write: %+v", resp)
			}
			if resp := d.Execute(read10(8, 8), buf); resp.Status != statusGood || resp.ReadLen != 4096 || !bytes.Equal(buf, want) {
				t.Fatalf("read of the unlocked range: %+v", resp)
			}
		})
	}
}

// TestATAPassThroughCKCond: a non-data command with CK_COND returns the
// registers in an ATA Status Return descriptor with RECOVERED ERROR, ATA
// PASS-THROUGH INFORMATION AVAILABLE, and a refused one ABORTED COMMAND
// with ABRT, as SAT-3 specifies; pkg/sed's transport reads both.
func TestATAPassThroughCKCond(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ata.img")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	drv, err := sedsim.NewATA(path, []byte("master"))
	if err != nil {
		t.Fatal(err)
	}
	defer drv.Close()
	d := &Disk{Vendor: "ATA", Product: "sedsim ata", Size: 1 << 20, ATA: drv, Media: drv}
	freeze := sed.SecurityFreezeLock().Cmd.CDB()
	resp := d.Execute(freeze[:], nil)
	if resp.Status != statusCheckCond || resp.Sense[0] != 0x72 || resp.Sense[1] != keyRecovered || resp.Sense[3] != 0x1D || resp.Sense[8] != 0x09 || resp.Sense[21] != ataStatusOK {
		t.Fatalf("FREEZE LOCK: %+v", resp)
	}
	c, err := sed.SecuritySetPassword(sed.ATAUserPassword, []byte("pw"), false, 0)
	if err != nil {
		t.Fatal(err)
	}
	cdb := c.Cmd.CDB()
	resp = d.Execute(cdb[:], c.Data)
	if resp.Status != statusCheckCond || resp.Sense[1] != keyAborted || resp.Sense[11] != ataErrorAbort || resp.Sense[21] != ataStatusErr {
		t.Fatalf("SET PASSWORD while frozen: %+v", resp)
	}
	id := make([]byte, 512)
	cdb = sed.ATACommand{Protocol: 4, Command: 0xEC, Count: 1}.CDB()
	if resp := d.Execute(cdb[:], id); resp.Status != statusGood || resp.ReadLen != 512 {
		t.Fatalf("IDENTIFY: %+v", resp)
	}
	got, err := sed.ParseIdentify(id)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Security.Supported || !got.Security.Frozen {
		t.Fatalf("IDENTIFY security %+v, want supported and frozen", got.Security)
	}
}

// FuzzExecute: no CDB and data buffer makes the disk panic (the kernel
// hands it whatever an SG_IO user sends), and a CHECK CONDITION always
// carries sense data.
func FuzzExecute(f *testing.F) {
	for _, c := range [][]byte{
		read10(0, 1), {0x12, 0x01, 0x83, 0, 0xFF, 0}, {0x1A, 0, 0x3F, 0, 0xFF, 0},
		{0xA3, 0x0C, 0x01, 0xA2, 0, 0, 0, 0, 2, 0, 0, 0},
		{0x85, 0x08, 0x0E, 0, 0x01, 0, 0x01, 0, 0, 0, 0x01, 0, 0, 0, 0x5C, 0},
		{0xA1, 0x08, 0x0E, 0, 0x01, 0, 0, 0, 0, 0xEC, 0, 0},
		{0xA2, 0x01, 0x00, 0x01, 0, 0, 0, 0, 0x08, 0, 0, 0},
	} {
		f.Add(c, 512)
	}
	d := newOpalDisk(f, "ATA")
	f.Fuzz(func(t *testing.T, cdb []byte, n int) {
		if len(cdb) == 0 || n < 0 || n > 1<<16 {
			return
		}
		full := make([]byte, cdbLength(cdb[0]))
		copy(full, cdb)
		r := d.Execute(full, make([]byte, n))
		if r.Status == statusCheckCond && len(r.Sense) == 0 {
			t.Fatalf("CHECK CONDITION without sense for % x", full)
		}
		if r.ReadLen > n {
			t.Fatalf("read length %d of a %d-byte buffer", r.ReadLen, n)
		}
	})
}
