package main

import (
	"testing"

	"github.com/spf13/pflag"

	"github.com/encblk/encblk/pkg/kek/kmipkek"
	"github.com/encblk/encblk/pkg/keyring"
)

// Every flag kdfFlags registers counts as a PBKDF change, shorthands
// included, and a new KMIP KEK's keyslot gets the cheap KDF only when none
// was given.
func TestKDFFlagsOptions(t *testing.T) {
	t.Parallel()
	var probe kdfFlags
	probe.register(pflag.NewFlagSet("probe", pflag.ContinueOnError))
	if len(probe.flags) != 6 {
		t.Fatalf("register recorded %d flags, want the 6 PBKDF flags", len(probe.flags))
	}
	for _, tc := range []struct {
		args    []string
		kmip    bool
		changed bool
		kdf     string
	}{
		{nil, false, false, "argon2id"},
		{nil, true, false, "pbkdf2"},
		{[]string{"--pbkdf", "argon2i"}, true, true, "argon2i"},
		{[]string{"--hash", "sha512"}, true, true, "argon2id"},
		{[]string{"--pbkdf-memory", "65536"}, true, true, "argon2id"},
		{[]string{"--pbkdf-parallel", "1"}, true, true, "argon2id"},
		{[]string{"--pbkdf-force-iterations", "4"}, true, true, "argon2id"},
		{[]string{"-i", "100"}, true, true, "argon2id"},
		{[]string{"--other", "x"}, true, false, "pbkdf2"},
	} {
		var f kdfFlags
		var other string
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		fs.StringVar(&other, "other", "", "not a PBKDF flag")
		f.register(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if got := f.changed(); got != tc.changed {
			t.Errorf("%v: changed = %v, want %v", tc.args, got, tc.changed)
		}
		var source *keyring.KeyslotOptions
		if tc.kmip {
			source = kmipkek.KeyslotOptions()
		}
		opts, err := f.options(source)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if opts.KDF.Type != tc.kdf {
			t.Errorf("%v (kmip %v): KDF %q, want %q", tc.args, tc.kmip, opts.KDF.Type, tc.kdf)
		}
	}
}
