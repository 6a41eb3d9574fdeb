package keyring

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// fuzzResumeSegments fuzzes what a resume reads from metadata anyone may
// have written: the segments, which the verification digest does not
// cover. The volume records an operation in its header (hdrImg, or on
// the data img itself when hdrImg is nil) that key opens. The seeds are
// the segments of each state of a run (start, after each zone);
// arbitrary ones must be refused or resumed, never crash or write outside
// the devices (rwMem refuses).
func fuzzResumeSegments(f *testing.F, hdrImg, img, key []byte) {
	ctx := context.Background()
	dataEnd := uint64(len(img))
	open := func() (*Keyring, *rwMem, *Secret) {
		data := &rwMem{b: bytes.Clone(img)}
		hdr := data
		if hdrImg != nil {
			hdr = &rwMem{b: bytes.Clone(hdrImg)}
		}
		k, err := openDevice(hdr, false)
		if err != nil {
			f.Fatal(err)
		}
		id, err := secretOf(key)
		if err != nil {
			f.Fatal(err)
		}
		return k, data, id
	}
	k, data, id := open()
	rc, err := k.OpenReencryption(ctx, []Identity{id}, data, dataEnd, nil)
	if err != nil {
		f.Fatal(err)
	}
	for {
		text, _ := json.Marshal(k.meta.segments)
		f.Add(text)
		if rc.Done() {
			break
		}
		if err := rc.Step(); err != nil {
			f.Fatal(err)
		}
	}
	rc.Close()
	id.Destroy()
	f.Fuzz(func(t *testing.T, text []byte) {
		var segs map[string]json.RawMessage
		if json.Unmarshal(text, &segs) != nil {
			return
		}
		k, data, id := open()
		defer id.Destroy()
		e := k.meta.clone()
		e.segments = segs
		raw, err := e.marshal()
		if err != nil {
			return
		}
		m, err := parseMetadata(raw, k.bin.HdrSize)
		if err != nil {
			return
		}
		k.meta = m
		rc, err := k.OpenReencryption(ctx, []Identity{id}, data, dataEnd, nil)
		if err != nil {
			return
		}
		defer rc.Close()
		for i := 0; i < 8 && !rc.Done(); i++ {
			if rc.Step() != nil {
				return
			}
		}
	})
}

// FuzzDecryptResumeSegments is fuzzResumeSegments for a decryption in
// place of a detached-header volume, recorded by encblk (StartDecrypt).
func FuzzDecryptResumeSegments(f *testing.F) {
	hdrPath := filepath.Join(f.TempDir(), "hdr.img")
	if err := os.WriteFile(hdrPath, nil, 0o600); err != nil {
		f.Fatal(err)
	}
	keyBytes := make([]byte, 32)
	rand.Read(keyBytes)
	id, err := secretOf(keyBytes)
	if err != nil {
		f.Fatal(err)
	}
	defer id.Destroy()
	formatPath(f, hdrPath, id, &FormatOptions{KDF: fastKDF, Detached: true, SectorSize: 4096, KeySize: 32})
	fresh, err := os.ReadFile(hdrPath)
	if err != nil {
		f.Fatal(err)
	}
	hdr := &rwMem{b: fresh}
	k, err := openDevice(hdr, false)
	if err != nil {
		f.Fatal(err)
	}
	if err := k.StartDecrypt(context.Background(), []Identity{id}); err != nil {
		f.Fatal(err)
	}
	fuzzResumeSegments(f, hdr.b, make([]byte, decryptData), keyBytes)
}
