package main

import (
	"fmt"
	"slices"
	"time"

	"github.com/spf13/pflag"

	"github.com/encblk/encblk/pkg/keyring"
)

// kdfFlags are cryptsetup's PBKDF flags for commands that make keyslots.
type kdfFlags struct {
	pbkdf      string
	hash       string
	memory     int
	parallel   int
	iterations int
	iterTimeMS int

	flags []*pflag.Flag // the flags register added, for changed
}

func (f *kdfFlags) register(fs *pflag.FlagSet) {
	own := pflag.NewFlagSet("pbkdf", pflag.ContinueOnError)
	own.StringVar(&f.pbkdf, "pbkdf", "argon2id", "key derivation for the keyslot: argon2id, argon2i or pbkdf2")
	own.StringVar(&f.hash, "hash", "sha256", "hash for pbkdf2: sha256 or sha512")
	own.IntVar(&f.memory, "pbkdf-memory", 0, "argon2 memory cost in KiB (default 1 GiB, at most half the RAM)")
	own.IntVar(&f.parallel, "pbkdf-parallel", 0, "argon2 threads (default 4, at most the CPU count)")
	own.IntVar(&f.iterations, "pbkdf-force-iterations", 0, "fixed pbkdf2 iterations or argon2 time cost (no benchmark)")
	own.IntVarP(&f.iterTimeMS, "iter-time", "i", 0, "benchmark target for unlocking, in milliseconds (default 2000)")
	// fs shares the *pflag.Flag values, so their Changed is set on parsing.
	own.VisitAll(func(fl *pflag.Flag) { f.flags = append(f.flags, fl) })
	fs.AddFlagSet(own)
}

func (f *kdfFlags) params() (keyring.KDFParams, error) {
	switch f.pbkdf {
	case "argon2id", "argon2i", "pbkdf2":
	default:
		return keyring.KDFParams{}, withExit(exitUsage, fmt.Errorf("--pbkdf %q: want argon2id, argon2i or pbkdf2", f.pbkdf))
	}
	if f.memory < 0 || f.parallel < 0 || f.iterations < 0 || f.iterTimeMS < 0 {
		return keyring.KDFParams{}, withExit(exitUsage, fmt.Errorf("PBKDF parameters must not be negative"))
	}
	return keyring.KDFParams{
		Type: f.pbkdf, Hash: f.hash, Iterations: f.iterations, MemoryKiB: f.memory,
		Parallel: f.parallel, IterTime: time.Duration(f.iterTimeMS) * time.Millisecond,
	}, nil
}

// changed reports whether any PBKDF flag was given.
func (f *kdfFlags) changed() bool {
	return slices.ContainsFunc(f.flags, func(fl *pflag.Flag) bool { return fl.Changed })
}

// options are the keyslot options for a new KEK. A KEK whose secret is
// random (KMIP, clevis) brings its own cheap options (source, from
// kekFlags.keyslotOptions): unless a PBKDF flag was given its keyslot gets
// them, as a slow KDF would protect nothing.
func (f *kdfFlags) options(source *keyring.KeyslotOptions) (*keyring.KeyslotOptions, error) {
	params, err := f.params()
	if err != nil {
		return nil, err
	}
	if source != nil && !f.changed() {
		return source, nil
	}
	return &keyring.KeyslotOptions{KDF: params}, nil
}
