package main

import (
	"io"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/encblk/encblk/pkg/kek/passphrase"
)

// confirm and passphrase.ReadLine share one line reader: each takes its
// line and leaves what follows (the next answer or passphrase) unread.
func TestReadLineLeavesTheRest(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		confirm bool
		pass    string // the passphrase read after the confirmation
	}{
		{"YES\nsecret\nmore", true, "secret"},
		{"  YES \nsecret", true, "secret"},
		{"yes\nsecret\n", false, "secret"},
		{"\nsecret", false, "secret"},
		{strings.Repeat("Y", 64) + "ES\nsecret", false, "ES"},
	} {
		r := strings.NewReader(tc.in)
		err := confirm(r, io.Discard, false, "test")
		if (err == nil) != tc.confirm {
			t.Errorf("%q: confirm = %v, want confirmed %v", tc.in, err, tc.confirm)
		}
		p, err := passphrase.ReadLine(r)
		if err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		want, err := passphrase.New([]byte(tc.pass))
		if err != nil {
			t.Fatal(err)
		}
		if !p.Equal(want) {
			t.Errorf("%q: the passphrase read after the confirmation is not %q", tc.in, tc.pass)
		}
		p.Destroy()
		want.Destroy()
	}
	if err := confirm(strings.NewReader(""), io.Discard, false, "test"); err == nil {
		t.Error("confirm accepted empty input")
	}
}

// The long help of the commands that take KEK flags names each of them
// (kekHelp), new KEK sources included (--tang, --sss, --tpm2-device).
func TestKEKHelpNamesEveryFlag(t *testing.T) {
	t.Parallel()
	var old, fresh kekFlags
	kf := pflag.NewFlagSet("kek", pflag.ContinueOnError)
	old.register(kf, "")
	fresh.register(kf, "new-")
	root := newRootCmd()
	for _, path := range [][]string{{"rotate"}, {"keyslot", "add"}, {"unlock"}, {"serve"}} {
		cmd, _, err := root.Find(path)
		if err != nil {
			t.Fatal(err)
		}
		kf.VisitAll(func(f *pflag.Flag) {
			if cmd.Flags().Lookup(f.Name) == nil {
				if path[0] == "rotate" || path[0] == "keyslot" {
					t.Errorf("encblk %s has no --%s", strings.Join(path, " "), f.Name)
				}
			} else if !regexp.MustCompile(`--` + f.Name + `\b`).MatchString(cmd.Long) {
				t.Errorf("encblk %s --help does not mention --%s", strings.Join(path, " "), f.Name)
			}
		})
	}
}

// Commands that make a volume take its first KEK directly (key file,
// passphrase file, KMIP): flags that only open existing keyslots are not
// theirs.
func TestMakingCommandsTakeNoOpeningFlags(t *testing.T) {
	t.Parallel()
	root := newRootCmd()
	for _, path := range [][]string{{"format"}, {"sed", "setup"}} {
		cmd, _, err := root.Find(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"key-file", "passphrase-file", "kmip"} {
			if cmd.Flags().Lookup(name) == nil {
				t.Errorf("encblk %s has no --%s", strings.Join(path, " "), name)
			}
		}
		for _, name := range []string{"age-identity", "tpm2-pin-file"} {
			if cmd.Flags().Lookup(name) != nil {
				t.Errorf("encblk %s takes --%s, which opens keyslots it does not have", strings.Join(path, " "), name)
			}
		}
	}
}
