package xts

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"encoding/binary"
	"encoding/hex"
	"os"
	"strconv"
	"strings"
	"testing"
)

// vector is one known answer: key (data key || tweak key), the 16-byte
// tweak value before encryption, and plaintext/ciphertext.
type vector struct {
	name     string
	key      []byte
	dataUnit uint64 // the sequence number, when the tweak is plain64
	tweak    [16]byte
	pt, ct   []byte
}

// readVectors parses "name = value" records separated by blank lines;
// a line "[SECTION]" names the records after it (NIST .rsp style).
func readVectors(t *testing.T, path string) []map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []map[string]string
	cur := map[string]string{}
	section := ""
	flush := func() {
		if len(cur) > 0 {
			cur["section"] = section
			recs = append(recs, cur)
			cur = map[string]string{}
		}
	}
	s := bufio.NewScanner(f)
	s.Buffer(nil, 1<<20)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		switch {
		case strings.HasPrefix(line, "#"):
		case line == "":
			flush()
		case strings.HasPrefix(line, "["):
			flush()
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, " = ")
			if !ok {
				t.Fatalf("%s: bad line %q", path, line)
			}
			cur[k] = v
		}
	}
	flush()
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return recs
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func seqTweak(n uint64) (tw [16]byte) {
	binary.LittleEndian.PutUint64(tw[:8], n)
	return tw
}

// unitGeneric runs XTS over one data unit of any whole number of blocks
// with an arbitrary 128-bit tweak value, for vectors shorter than a sector.
func unitGeneric(t *testing.T, v vector, encrypt bool) []byte {
	t.Helper()
	half := len(v.key) / 2
	d, err := aes.NewCipher(v.key[:half])
	if err != nil {
		t.Fatal(err)
	}
	tk, err := aes.NewCipher(v.key[half:])
	if err != nil {
		t.Fatal(err)
	}
	tw := v.tweak
	tk.Encrypt(tw[:], tw[:])
	src := v.ct
	if encrypt {
		src = v.pt
	}
	out := make([]byte, len(src))
	cryptUnitGeneric(d, out, src, &tw, encrypt)
	return out
}

// checkVector checks v both ways: whole 512-byte sectors through path p,
// shorter units through the pure-Go unit function (when p is generic).
func checkVector(t *testing.T, v vector, p path) {
	t.Helper()
	if len(v.pt)%512 != 0 {
		if p != pathGeneric {
			return
		}
		if got := unitGeneric(t, v, true); !bytes.Equal(got, v.ct) {
			t.Errorf("%s: encrypt gives %x, want %x", v.name, got, v.ct)
		}
		if got := unitGeneric(t, v, false); !bytes.Equal(got, v.pt) {
			t.Errorf("%s: decrypt gives %x, want %x", v.name, got, v.pt)
		}
		return
	}
	if v.tweak != seqTweak(v.dataUnit) {
		t.Fatalf("%s: tweak is not a plain64 sector number", v.name)
	}
	c := mustNew(t, v.key, p)
	got := make([]byte, len(v.pt))
	if err := c.EncryptSectors(got, v.pt, 512, v.dataUnit, 1); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, v.ct) {
		t.Errorf("%s: ciphertext differs", v.name)
	}
	if err := c.DecryptSectors(got, v.ct, 512, v.dataUnit, 1); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, v.pt) {
		t.Errorf("%s: plaintext differs", v.name)
	}
}

// TestIEEE1619 checks the whole-block vectors of IEEE 1619-2007 Annex B.
func TestIEEE1619(t *testing.T) {
	var vs []vector
	for _, r := range readVectors(t, "testdata/ieee1619-2007.txt") {
		n, err := strconv.ParseUint(r["dataunit"], 16, 64)
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, vector{
			name: "IEEE 1619 vector " + r["vector"], key: mustHex(t, r["key"]),
			dataUnit: n, tweak: seqTweak(n), pt: mustHex(t, r["pt"]), ct: mustHex(t, r["ct"]),
		})
	}
	if len(vs) != 15 {
		t.Fatalf("read %d vectors, want 15", len(vs))
	}
	forEachPath(t, func(t *testing.T, p path) {
		for _, v := range vs {
			checkVector(t, v, p)
		}
	})
}

// TestNISTCAVP checks a subset of NIST's XTSGenAES128/256 vectors with
// whole-block data units (16 to 48 bytes; shorter than any sector, so they
// exercise the pure-Go construction with arbitrary 128-bit tweaks).
func TestNISTCAVP(t *testing.T) {
	for _, file := range []string{"testdata/XTSGenAES128.subset.rsp", "testdata/XTSGenAES256.subset.rsp"} {
		recs := readVectors(t, file)
		if len(recs) < 30 {
			t.Fatalf("%s: only %d vectors", file, len(recs))
		}
		for _, r := range recs {
			v := vector{name: file + " " + r["section"] + " COUNT " + r["COUNT"],
				key: mustHex(t, r["Key"]), pt: mustHex(t, r["PT"]), ct: mustHex(t, r["CT"])}
			if strings.HasSuffix(r["section"], "SEQNO") {
				n, err := strconv.ParseUint(r["DataUnitSeqNumber"], 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				v.dataUnit, v.tweak = n, seqTweak(n)
			} else {
				copy(v.tweak[:], mustHex(t, r["i"]))
			}
			if l, _ := strconv.Atoi(r["DataUnitLen"]); l != 8*len(v.pt) {
				t.Fatalf("%s: DataUnitLen %d but %d bytes", v.name, l, len(v.pt))
			}
			checkVector(t, v, pathGeneric)
		}
	}
}
