package keyring

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// Interop test 1: cryptsetup formats, encblk unlocks, and the DEK equals
// the one cryptsetup dumps.
func TestInteropCryptsetupFormats(t *testing.T) {
	t.Parallel()
	for _, kdf := range [][]string{
		{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"},
		{"--pbkdf", "pbkdf2", "--hash", "sha512", "--pbkdf-force-iterations", "1000"},
		{"--pbkdf", "argon2id", "--pbkdf-memory", "32", "--pbkdf-parallel", "1", "--pbkdf-force-iterations", "4"},
		{"--pbkdf", "argon2i", "--pbkdf-memory", "64", "--pbkdf-parallel", "2", "--pbkdf-force-iterations", "4"},
	} {
		// Each KDF with both sector sizes and both kinds of KEK, paired to
		// keep the number of cryptsetup runs down.
		for _, c := range []struct{ sector, keyKind string }{{"512", "keyfile"}, {"4096", "passphrase"}} {
			sector, keyKind := c.sector, c.keyKind
			name := fmt.Sprintf("%s-%s-%s-%s", kdf[1], kdf[3], sector, keyKind)
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				path := newBacking(t, 20<<20)
				args := append([]string{"luksFormat", "--type", "luks2", "--batch-mode", "--sector-size", sector}, kdf...)
				var id Identity
				var keyFile string
				if keyKind == "keyfile" {
					raw := make([]byte, 32)
					rand.Read(raw)
					keyFile = writeFile(t, raw)
					cryptsetup(t, "", append(args, "--key-file", keyFile, path)...)
					kf, err := openKeyFile(keyFile)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(kf.Destroy)
					id = kf
				} else {
					// A typed passphrase: cryptsetup stops at the newline.
					cryptsetup(t, "hunter2 with spaces\n", append(args, path)...)
					keyFile = writeFile(t, []byte("hunter2 with spaces"))
					id = passphrase(t, "hunter2 with spaces")
				}
				want := dumpVolumeKey(t, path, keyFile)
				k := openPath(t, path)
				if got := unlockBytes(t, k, id); !bytes.Equal(got, want) || len(got) != 64 {
					t.Fatalf("DEK mismatch: encblk %x, cryptsetup %x", got, want)
				}
				seg, err := k.DataSegment()
				if err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(seg.SectorSize) != sector || seg.Offset != 16<<20 {
					t.Errorf("segment = %+v", seg)
				}
				if _, err := k.Unlock(context.Background(), passphrase(t, "nope")); !errors.Is(err, ErrNoMatchingKeyslot) {
					t.Errorf("wrong key: %v", err)
				}
			})
		}
	}
}

// Interop test 2: encblk formats; cryptsetup dumps it, gets the same DEK,
// adds a keyslot encblk opens, kills one and encblk still opens the rest,
// and finds nothing to repair.
func TestInteropEncblkFormats(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts FormatOptions
	}{
		{"pbkdf2-512", FormatOptions{KDF: fastKDF}},
		{"argon2id-4096-discards", FormatOptions{KDF: fastArgon, SectorSize: 4096, AllowDiscards: true}},
		{"sha512-32k-metadata", FormatOptions{KDF: KDFParams{Type: "pbkdf2", Hash: "sha512", Iterations: 1000}, MetadataSize: 32 << 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := newBacking(t, 20<<20)
			key1 := writeFile(t, []byte("first key\n"))
			kf, err := openKeyFile(key1)
			if err != nil {
				t.Fatal(err)
			}
			defer kf.Destroy()
			_, dek := formatPath(t, path, kf, &tc.opts)

			dump := cryptsetup(t, "", "luksDump", path)
			for _, want := range []string{"Version:       \t2", "aes-xts-plain64", "0: luks2", fmt.Sprintf("sector: %d", max(tc.opts.SectorSize, 512))} {
				if !strings.Contains(dump, want) {
					t.Errorf("luksDump lacks %q:\n%s", want, dump)
				}
			}
			if tc.opts.AllowDiscards && !strings.Contains(dump, "allow-discards") {
				t.Errorf("luksDump lacks allow-discards:\n%s", dump)
			}
			if got := dumpVolumeKey(t, path, key1); !bytes.Equal(got, dek) {
				t.Fatalf("cryptsetup DEK %x, encblk %x", got, dek)
			}

			key2 := writeFile(t, []byte("second key"))
			cryptsetup(t, "", "luksAddKey", "--batch-mode", "--key-file", key1, "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", path, key2)
			k := openPath(t, path)
			if got := unlockBytes(t, k, passphrase(t, "second key")); !bytes.Equal(got, dek) {
				t.Fatal("keyslot added by cryptsetup does not give the DEK")
			}
			if n := len(k.Keyslots()); n != 2 {
				t.Fatalf("%d keyslots after luksAddKey, want 2", n)
			}

			cryptsetup(t, "", "luksKillSlot", "--batch-mode", "--key-file", key2, path, "0")
			k = openPath(t, path)
			if _, err := k.Unlock(context.Background(), kf); !errors.Is(err, ErrNoMatchingKeyslot) {
				t.Fatalf("killed keyslot still opens: %v", err)
			}
			if got := unlockBytes(t, k, passphrase(t, "second key")); !bytes.Equal(got, dek) {
				t.Fatal("remaining keyslot does not give the DEK")
			}

			out := cryptsetup(t, "", "repair", "--batch-mode", "--debug", path)
			if strings.Contains(out, "requires recovery") || strings.Contains(out, "Repairing") {
				t.Errorf("cryptsetup repair found something to repair:\n%s", out)
			}
			before := k.SeqID()
			k = openPath(t, path)
			if p, s := k.HeaderStatus(); p != nil || s != nil || k.SeqID() != before {
				t.Errorf("after repair: primary %v, secondary %v, seqid %d (was %d)", p, s, k.SeqID(), before)
			}
		})
	}
}
