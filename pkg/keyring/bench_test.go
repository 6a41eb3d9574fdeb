package keyring

import (
	"context"
	"testing"
)

// BenchmarkUnlock measures one unlock with a fast KDF: the keyring's own
// cost (header read, keyslot area decrypt, AF merge, digest check).
func BenchmarkUnlock(b *testing.B) {
	path := newBacking(b, 17<<20)
	formatPath(b, path, passphrase(b, "bench"), &FormatOptions{KDF: fastKDF})
	k := openPath(b, path)
	id := passphrase(b, "bench")
	for b.Loop() {
		dek, err := k.Unlock(context.Background(), id)
		if err != nil {
			b.Fatal(err)
		}
		dek.Destroy()
	}
}

// BenchmarkRotateKEK measures a whole rotation (unlock, new keyslot,
// two commits with fsyncs, wipe) with a fast KDF.
func BenchmarkRotateKEK(b *testing.B) {
	path := newBacking(b, 17<<20)
	formatPath(b, path, passphrase(b, "a"), &FormatOptions{KDF: fastKDF})
	k := openPath(b, path)
	keks := []*Secret{passphrase(b, "a"), passphrase(b, "b")}
	i := 0
	for b.Loop() {
		if _, _, err := k.RotateKEK(context.Background(), keks[i%2], keks[(i+1)%2], &KeyslotOptions{KDF: fastKDF}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
