package main

import (
	"io"
	"strings"
	"testing"

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
