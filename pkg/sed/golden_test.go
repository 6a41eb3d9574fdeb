package sed

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readHex reads a testdata .hex file: '#' starts a comment, the rest is
// whitespace-separated hex.
func readHex(t testing.TB, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	for _, line := range strings.Split(string(raw), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		sb.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(sb.String())
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return b
}

func golden(t testing.TB, name string) []byte {
	return readHex(t, filepath.Join("testdata", "golden", name))
}

// TestGoldenCalls compares the encoder with hand-derived byte streams.
func TestGoldenCalls(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file string
		call MethodCall
	}{
		{"properties.hex", PropertiesCall(DefaultHostProperties)},
		{"get-msid-pin.hex", GetCall(CPINMSID, ColCPINPIN, ColCPINPIN)},
		{"set-sid-pin.hex", SetCall(CPINSID, Col(ColCPINPIN, Secret{1, 2, 3, 4, 5, 6, 7, 8}))},
		{"lock-range1.hex", SetCall(LockingRange(1), Col(ColReadLocked, Bool(true)), Col(ColWriteLocked, Bool(true)))},
		{"activate-lockingsp.hex", MethodCall{Invoking: LockingSP, Method: MethodActivate}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := tt.call.Encode()
			if err != nil {
				t.Fatal(err)
			}
			want := golden(t, tt.file)
			if !bytes.Equal(got, want) {
				t.Fatalf("encoding differs\n got %x\nwant %x", got, want)
			}
			// And the decoder reads the golden bytes back to the same call.
			vals, err := Decode(want)
			if err != nil {
				t.Fatal(err)
			}
			if len(vals) != 6 || vals[0] != TokenCall || vals[5].String() != "[0 0 0]" {
				t.Fatalf("decoded %v", vals)
			}
			again, err := Encode(vals...)
			if err != nil || !bytes.Equal(again, want) {
				t.Fatalf("decode+encode differs: %x %v", again, err)
			}
		})
	}
}

func TestGoldenStartSessionComPacket(t *testing.T) {
	t.Parallel()
	call := StartSessionCall(0x41, AdminSP, true, AuthoritySID, []byte("password"))
	tokens, err := call.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := NewComPacket(0x1000, 0, 0, tokens).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	want := golden(t, "startsession-adminsp-sid.hex")
	if !bytes.Equal(got, want) {
		t.Fatalf("ComPacket differs\n got %x\nwant %x", got, want)
	}
	cp, err := ParseComPacket(want)
	if err != nil {
		t.Fatal(err)
	}
	p, payload, err := cp.Payload()
	if err != nil {
		t.Fatal(err)
	}
	if cp.ComID != 0x1000 || p.TSN != 0 || p.HSN != 0 || !bytes.Equal(payload, tokens) {
		t.Fatalf("parsed %+v payload %x", cp, payload)
	}
	// The call's String must not show the challenge.
	if s := call.Args[3].String(); strings.Contains(s, "password") {
		t.Fatalf("challenge printed: %s", s)
	}
}

func TestGoldenReplies(t *testing.T) {
	t.Parallel()
	r, err := ParseMethodResult(golden(t, "syncsession-reply.hex"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Call == nil || r.Call.Invoking != SMUID || r.Call.Method != MethodSyncSession || r.Status != StatusSuccess {
		t.Fatalf("got %+v", r)
	}
	if len(r.Results) != 2 || r.Results[0] != Uint(0x41) || r.Results[1] != Uint(4096) {
		t.Fatalf("results %v", r.Results)
	}

	r, err = ParseMethodResult(golden(t, "not-authorized-reply.hex"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != StatusNotAuthorized || r.Err() != StatusNotAuthorized || len(r.Results) != 0 {
		t.Fatalf("got %+v", r)
	}
}

func TestDiscoveryRealDrives(t *testing.T) {
	t.Parallel()
	dir := filepath.Join("testdata", "discovery")

	d, err := ParseDiscovery(readHex(t, filepath.Join(dir, "samsung-860-evo.hex")))
	if err != nil {
		t.Fatal(err)
	}
	if *d.TPer != (TPerFeature{Version: 1, Sync: true, Streaming: true}) {
		t.Errorf("TPer %+v", *d.TPer)
	}
	if *d.Locking != (LockingFeature{Version: 1, LockingSupported: true, LockingEnabled: true, Locked: true, MediaEncryption: true, MBREnabled: true}) {
		t.Errorf("Locking %+v", *d.Locking)
	}
	if *d.Geometry != (GeometryFeature{Version: 1, Align: true, LogicalBlockSize: 512, AlignmentGranularity: 8}) {
		t.Errorf("Geometry %+v", *d.Geometry)
	}
	if *d.DataStore != (DataStoreFeature{Version: 1, MaxTables: 9, MaxTotalSize: 10 << 20, SizeAlignment: 1}) {
		t.Errorf("DataStore %+v", *d.DataStore)
	}
	if *d.OpalV2 != (SSCV2Feature{Version: 1, BaseComID: 0x1004, NumComIDs: 1, NumAdmins: 4, NumUsers: 9}) {
		t.Errorf("OpalV2 %+v", *d.OpalV2)
	}
	if ssc, comID, ok := d.SSC(); !ok || ssc != SSCOpalV2 || comID != 0x1004 {
		t.Errorf("SSC %v %x %v", ssc, comID, ok)
	}
	if len(d.Features) != 5 || d.BlockSID != nil {
		t.Errorf("features %d", len(d.Features))
	}

	d, err = ParseDiscovery(readHex(t, filepath.Join(dir, "samsung-970-evo-plus.hex")))
	if err != nil {
		t.Fatal(err)
	}
	if *d.Locking != (LockingFeature{Version: 1, LockingSupported: true, MediaEncryption: true}) {
		t.Errorf("Locking %+v", *d.Locking)
	}
	if d.BlockSID == nil || *d.BlockSID != (BlockSIDFeature{Version: 1}) {
		t.Errorf("BlockSID %+v", d.BlockSID)
	}
	// 0x0403 (configurable namespace locking) is kept raw.
	last := d.Features[len(d.Features)-1]
	if len(d.Features) != 7 || last.Code != FeatureNamespaceLock || last.Version != 1 || len(last.Data) != 16 || last.Data[0] != 0x80 {
		t.Errorf("features %+v", d.Features)
	}

	d, err = ParseDiscovery(readHex(t, filepath.Join(dir, "sabrent-rocket-4.hex")))
	if err != nil {
		t.Fatal(err)
	}
	if d.OpalV2 != nil || d.PyriteV1 == nil || *d.PyriteV1 != (PyriteFeature{Version: 1, BaseComID: 0x07FE, NumComIDs: 1}) {
		t.Errorf("Pyrite %+v", d.PyriteV1)
	}
	if *d.Locking != (LockingFeature{Version: 2, LockingSupported: true, MBRShadowingNotSupported: true}) {
		t.Errorf("Locking %+v", *d.Locking)
	}
	if ssc, comID, ok := d.SSC(); !ok || ssc != SSCPyriteV1 || comID != 0x07FE {
		t.Errorf("SSC %v %x %v", ssc, comID, ok)
	}

	// The MZ1LB1T9HALS dump was published 4 bytes short of its length.
	if _, err := ParseDiscovery(readHex(t, filepath.Join(dir, "samsung-mz1lb1t9hals-truncated.hex"))); err == nil {
		t.Error("truncated discovery accepted")
	}
}
