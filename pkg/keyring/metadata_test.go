package keyring

import (
	"errors"
	"strings"
	"testing"
)

// Bad metadata is refused with a message that says what is wrong.
func TestMetadataRejected(t *testing.T) {
	t.Parallel()
	const cfg = `"config":{"json_size":"12288","keyslots_size":"16744448"}`
	const seg = `"segments":{"0":{"type":"crypt","offset":"16777216","size":"dynamic","iv_tweak":"0","encryption":"aes-xts-plain64","sector_size":512}}`
	ks := func(off string) string {
		return `{"type":"luks2","key_size":64,"af":{"type":"luks1","stripes":4000,"hash":"sha256"},` +
			`"area":{"type":"raw","offset":"` + off + `","size":"258048","encryption":"aes-xts-plain64","key_size":64},` +
			`"kdf":{"type":"pbkdf2","hash":"sha256","iterations":1000,"salt":"AAAA"}}`
	}
	for _, tc := range []struct {
		name, json, want string
	}{
		{"not an object", `[1,2]`, "does not start with '{'"},
		{"malformed", `{"keyslots":`, "not a JSON object"},
		{"deeply nested", `{"keyslots":` + strings.Repeat("[", 6000) + strings.Repeat("]", 6000) + `}`, `"keyslots" section is not a JSON object`},
		{"missing section", `{"keyslots":{},"tokens":{},` + seg + `,` + cfg + `}`, `missing "digests" section`},
		{"json_size mismatch", `{"keyslots":{},"tokens":{},` + seg + `,"digests":{},"config":{"json_size":"4096","keyslots_size":"0"}}`, "json_size 4096 does not match"},
		{"number not a string", `{"keyslots":{},"tokens":{},` + seg + `,"digests":{},"config":{"json_size":12288,"keyslots_size":"0"}}`, "want a decimal string"},
		{"bad id", `{"keyslots":{"32":` + ks("32768") + `},"tokens":{},` + seg + `,"digests":{},` + cfg + `}`, `bad id "32"`},
		{"area outside", `{"keyslots":{"0":` + ks("4096") + `},"tokens":{},` + seg + `,"digests":{},` + cfg + `}`, "outside the keyslots area"},
		{"overlapping areas", `{"keyslots":{"0":` + ks("32768") + `,"1":` + ks("36864") + `},"tokens":{},` + seg + `,"digests":{},` + cfg + `}`, "overlapping areas"},
		{"digest names missing keyslot", `{"keyslots":{},"tokens":{},` + seg + `,"digests":{"0":{"type":"pbkdf2","keyslots":["3"],"segments":["0"],"hash":"sha256","iterations":1000,"salt":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","digest":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}},` + cfg + `}`, "names keyslot 3"},
		{"token without type", `{"keyslots":{},"tokens":{"0":{"keyslots":[]}},` + seg + `,"digests":{},` + cfg + `}`, "type and keyslots are required"},
		{"bad sector size", strings.Replace(`{"keyslots":{},"tokens":{},`+seg+`,"digests":{},`+cfg+`}`, `"sector_size":512`, `"sector_size":513`, 1), "sector_size 513"},
	} {
		dev := sealHeader(t, []byte(tc.json))
		_, err := openDevice(&memDevice{b: dev}, true)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want ErrCorrupt mentioning %q", tc.name, err, tc.want)
		}
		if err != nil && !strings.Contains(err.Error(), "primary:") {
			t.Errorf("%s: error does not name the copy: %v", tc.name, err)
		}
	}
}

// Trailing bytes after the JSON text, or JSON that does not start with
// '{', are refused like cryptsetup refuses them.
func TestJSONAreaFraming(t *testing.T) {
	t.Parallel()
	for _, area := range [][]byte{
		[]byte(" {}\x00\x00"),
		[]byte("{}\x00x\x00"),
		[]byte("{}"),
	} {
		if _, err := extractJSON(area); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%q: %v", area, err)
		}
	}
}

// Requested KDF parameters below cryptsetup's minimums are refused.
func TestKDFParamsRefused(t *testing.T) {
	t.Parallel()
	for _, p := range []KDFParams{
		{Type: "pbkdf2", Iterations: 999},
		{Type: "argon2id", Iterations: 3, MemoryKiB: 32},
		{Type: "argon2i", Iterations: 4, Parallel: 1000},
		{Type: "scrypt"},
		{Type: "pbkdf2", Hash: "md5", Iterations: 1000},
	} {
		if k, err := p.resolve(t.Context(), 64); err == nil {
			t.Errorf("%+v accepted as %+v", p, k)
		}
	}
}
