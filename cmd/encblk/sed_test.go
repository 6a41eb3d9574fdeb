package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/encblk/encblk/pkg/sed"
	"github.com/encblk/encblk/pkg/sed/sedsim"
)

// TestSedInfoOutput prints the discovery of a simulated Opal 2 drive in
// both forms.
func TestSedInfoOutput(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	sim, err := sedsim.New(path, sedsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	d, err := sed.Discover(context.Background(), sim)
	if err != nil {
		t.Fatal(err)
	}
	ssc, comID, _ := d.SSC()
	r := sed.ScanResult{Name: "sdz", Kind: sed.KindSCSI, SSC: ssc, ComID: comID, Discovery: d, Status: "Opal 2, locking not enabled"}
	var out bytes.Buffer
	printSedInfo(&out, r)
	for _, want := range []string{
		"Device:   sdz (scsi)",
		"SSC:      Opal 2, base ComID 0x07fe",
		"Locking (v1): supported yes, enabled no, locked no, media encryption yes",
		"Opal 2 (v1): base ComID 0x07fe, 1 ComIDs, range crossing no, 4 admins, 8 users",
		"Data Removal (v1): crypto erase",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("missing %q in\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := writeJSON(&out, r); err != nil {
		t.Fatal(err)
	}
	var back struct {
		SSC       string `json:"ssc"`
		Discovery struct {
			OpalV2 struct {
				BaseComID uint16 `json:"base_comid"`
			} `json:"opal_v2"`
		} `json:"discovery"`
	}
	if err := json.Unmarshal(out.Bytes(), &back); err != nil || back.SSC != "Opal 2" || back.Discovery.OpalV2.BaseComID != 0x07FE {
		t.Fatalf("%v %+v\n%s", err, back, out.String())
	}
}

// A drive PIN file is read like a key file (every byte, into protected
// memory) and must hold 1 to 32 bytes.
func TestReadSmallKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		content string
		err     string
	}{
		{"p", ""},
		{"pin with newline\n", ""},
		{strings.Repeat("x", 32), ""},
		{strings.Repeat("x", 33), "a drive PIN is 1 to 32 bytes"},
		{"", "key file is empty"},
	} {
		path := filepath.Join(dir, "pin")
		if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		pin, err := readSmallKey(path, "admin-key-file")
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "--admin-key-file: ") {
				t.Errorf("%d bytes: error %v, want --admin-key-file: ...%s", len(tc.content), err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%d bytes: %v", len(tc.content), err)
		}
		if got := string(pin.Bytes()); got != tc.content {
			t.Errorf("read %q, want %q", got, tc.content)
		}
		pin.Destroy()
	}
	if _, err := readSmallKey(filepath.Join(dir, "missing"), "psid-file"); err == nil || !strings.HasPrefix(err.Error(), "--psid-file: ") {
		t.Errorf("missing file: %v", err)
	}
}
