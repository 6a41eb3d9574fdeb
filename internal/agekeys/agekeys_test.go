package agekeys

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/encblk/encblk/internal/testutil"
)

// keys makes one identity of each kind age supports with the real tools,
// and returns, per kind, the identity file and its recipient string.
func keys(t *testing.T) map[string][2]string {
	t.Helper()
	keygen := testutil.RequireTool(t, "age-keygen", "age")
	sshKeygen := testutil.RequireTool(t, "ssh-keygen", "openssh-client")
	dir := t.TempDir()
	out := map[string][2]string{}
	x := filepath.Join(dir, "x25519.txt")
	testutil.Run(t, keygen, "-o", x)
	out["X25519"] = [2]string{x, strings.TrimSpace(string(testutil.Run(t, keygen, "-y", x)))}
	for _, kind := range []string{"ed25519", "rsa"} {
		k := filepath.Join(dir, "id_"+kind)
		testutil.Run(t, sshKeygen, "-q", "-t", kind, "-N", "", "-C", "host@example", "-f", k)
		pub, err := os.ReadFile(k + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		out["ssh-"+kind] = [2]string{k, strings.TrimSpace(string(pub))}
	}
	return out
}

// Every kind of key the real tools make reads back, and a file encrypted
// to the recipient opens with the identity and with nothing else.
func TestRealKeys(t *testing.T) {
	t.Parallel()
	ks := keys(t)
	for kind, k := range ks {
		r, err := ParseRecipient(k[1])
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		f, err := os.Open(k[0])
		if err != nil {
			t.Fatal(err)
		}
		ids, err := ReadIdentities(f, k[0])
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		var ct bytes.Buffer
		w, err := age.Encrypt(&ct, r.Recipient)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, "the secret")
		w.Close()
		pr, err := age.Decrypt(bytes.NewReader(ct.Bytes()), ids...)
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		if got, _ := io.ReadAll(pr); string(got) != "the secret" {
			t.Fatalf("%s: decrypted %q", kind, got)
		}
		for other, o := range ks {
			if other == kind {
				continue
			}
			f, _ := os.Open(o[0])
			wrong, err := ReadIdentities(f, o[0])
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := age.Decrypt(bytes.NewReader(ct.Bytes()), wrong...); err == nil {
				t.Fatalf("a file to %s opened with the %s identity", kind, other)
			}
		}
	}
	// A recipients file takes them all, with comments and empty lines.
	var file strings.Builder
	file.WriteString("# the hosts\n\n")
	for _, k := range ks {
		file.WriteString(k[1] + "\r\n")
	}
	rs, err := ReadRecipients(strings.NewReader(file.String()), "hosts")
	if err != nil || len(rs) != len(ks) {
		t.Fatalf("recipients file: %d recipients, %v", len(rs), err)
	}
}

// wantError checks that err says want and quotes none of the private keys
// the tests use (all of them spell GFPYY).
func wantError(t *testing.T, call string, err error, want string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("%s = %v, want %q", call, err, want)
	}
	if err != nil && strings.Contains(err.Error(), "GFPYY") {
		t.Errorf("%s: the error quotes a private key: %v", call, err)
	}
}

func TestBadRecipients(t *testing.T) {
	t.Parallel()
	const secret = "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX"
	for _, tc := range []struct{ in, want string }{
		{"", "not an age recipient"},
		{"bob@example.com", `"bob@example.com": not an age recipient`},
		{"age1xyz", "malformed"},
		{"age1yubikey1qwerty", "plugin recipients are not supported"},
		{"ssh-ed25519 AAAA", "malformed SSH recipient"},
		{"ssh-dss AAAAB3NzaC1kc3MAAACBAP", "SSH"},
		{secret, "an identity (a private key), not a recipient"},
	} {
		_, err := ParseRecipient(tc.in)
		wantError(t, fmt.Sprintf("ParseRecipient(%.20q)", tc.in), err, tc.want)
	}
	for _, tc := range []struct{ in, want string }{
		{"", "names no recipient"},
		{"# only a comment\n", "names no recipient"},
		{"age1xyz\n", "line 1 is not a recipient"},
		{"\n" + secret + "\n", "line 2 is an identity"},
		{strings.Repeat("#\n", maxFileSize/2+1), "larger than"},
		{strings.Repeat("x", maxLineLen+10), "line 1 is longer than"},
	} {
		_, err := ReadRecipients(strings.NewReader(tc.in), "F")
		wantError(t, fmt.Sprintf("ReadRecipients(%.20q)", tc.in), err, tc.want)
	}
}

func TestBadIdentities(t *testing.T) {
	t.Parallel()
	sshKeygen := testutil.RequireTool(t, "ssh-keygen", "openssh-client")
	locked := filepath.Join(t.TempDir(), "id")
	testutil.Run(t, sshKeygen, "-q", "-t", "ed25519", "-N", "a passphrase", "-f", locked)
	lockedPEM, err := os.ReadFile(locked)
	if err != nil {
		t.Fatal(err)
	}
	const secret = "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEY"
	for _, tc := range []struct{ in, want string }{
		{"", "no identities"},
		{secret + "\n", "malformed secret key"},
		{"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\n", "unknown identity type"},
		{"AGE-PLUGIN-YUBIKEY-1ABC\n", "plugin identities are not supported"},
		{Magic + "-> X25519 abc\n", "itself age-encrypted"},
		{"-----BEGIN AGE ENCRYPTED FILE-----\n", "itself age-encrypted"},
		{string(lockedPEM), "passphrase-protected SSH keys are not supported"},
		{"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n", "not an SSH private key"},
	} {
		_, err := ReadIdentities(strings.NewReader(tc.in), "F")
		wantError(t, fmt.Sprintf("ReadIdentities(%.30q)", tc.in), err, tc.want)
	}
}

func TestIsAgeFile(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]bool{
		Magic + "-> X25519":                      true,
		"\n-----BEGIN AGE ENCRYPTED FILE-----\n": true,
		"LUKS\xba\xbe\x00\x02":                   false,
		"age-encryption.org/v2\n":                false,
		"":                                       false,
	} {
		if got := IsAgeFile([]byte(in)); got != want {
			t.Errorf("IsAgeFile(%q) = %v", in, got)
		}
	}
}

// The parsers take any bytes without panicking, and what they accept
// works as a recipient or an identity.
func FuzzReadRecipients(f *testing.F) {
	f.Add([]byte("age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\n# c\n\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN x@y\n"))
	f.Add([]byte("AGE-SECRET-KEY-1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := ReadRecipients(bytes.NewReader(data), "F")
		if err != nil {
			return
		}
		if _, err := age.Encrypt(io.Discard, Ages(rs)...); err != nil && !strings.Contains(err.Error(), "incompatible recipients") {
			t.Fatalf("accepted recipients do not encrypt: %v", err)
		}
	})
}

func FuzzReadIdentities(f *testing.F) {
	f.Add([]byte("# created: 2026\n# public key: age1…\nAGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX\n"))
	f.Add([]byte("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ids, err := ReadIdentities(bytes.NewReader(data), "F")
		if err == nil && len(ids) == 0 {
			t.Fatal("no error and no identity")
		}
	})
}
