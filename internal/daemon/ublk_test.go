package daemon

import (
	"context"
	"testing"

	"github.com/encblk/encblk/pkg/blockdev"
	"github.com/encblk/encblk/pkg/ublk"
)

// TestUblkConfig: ublk serving makes NBD listeners optional; a device id
// needs exactly one volume; the device pkg/ublk gets has the volume's
// sector size and capabilities; the owner tag follows the LUKS UUID.
func TestUblkConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secret := []byte("ublk config secret")
	ctx := context.Background()
	var vols []*Volume
	for _, name := range []string{"a.img", "b.img"} {
		v, err := OpenVolume(ctx, VolumeSpec{Backing: newBacking(t, dir, name, secret, 32<<20), Export: name}, keyFile(t, secret))
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		vols = append(vols, v)
	}
	if _, err := New(Config{Volumes: vols[:1]}); err == nil {
		t.Error("New without listeners or ublk: no error")
	}
	if _, err := New(Config{Volumes: vols[:1], Ublk: &UblkConfig{ID: ublk.AutoID}}); err != nil {
		t.Errorf("New with ublk and no listener: %v", err)
	}
	if _, err := New(Config{Volumes: vols, Ublk: &UblkConfig{ID: 3}}); err == nil {
		t.Error("New with a ublk id and two volumes: no error")
	}
	if _, err := New(Config{Volumes: vols, Ublk: &UblkConfig{ID: 3, Recover: true}}); err == nil {
		t.Error("New with a ublk recovery id and two volumes: no error")
	}

	info := vols[0].Device().Info()
	want := blockdev.Info{LogicalBlockSize: 4096, PhysicalBlockSize: 4096, CanTrim: true, CanZero: true,
		CanFUA: true, CanFlush: true, SerialWrites: info.SerialWrites}
	if info != want {
		t.Errorf("block device info %+v, want %+v", info, want)
	}
	a, b := vols[0].ublkOwner(), vols[1].ublkOwner()
	if a == b || a == 0 {
		t.Errorf("owner tags %#x and %#x: want distinct, non-zero", a, b)
	}
}
