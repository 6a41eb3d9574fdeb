// Package agekeys reads age recipients and identities as the age command
// line spells them, so that a key made by age-keygen or ssh-keygen works
// with encblk as it works with age:
//
//	recipient   age1… (X25519), age1pq1… (ML-KEM-768 + X25519 hybrid),
//	            ssh-ed25519 AAAA…, ssh-rsa AAAA… (2048 bits or more)
//	recipients  a file of recipients, one a line; "#" comments and empty
//	file        lines are skipped
//	identity    a file of AGE-SECRET-KEY-1… / AGE-SECRET-KEY-PQ-1… lines (what
//	file        age-keygen writes), or one unencrypted OpenSSH private key
//
// Not supported: age plugins (age1yubikey1…, AGE-PLUGIN-…), which run
// external programs; passphrase-protected identity files and SSH keys,
// which would need a prompt in the middle of an unlock. The errors say so.
//
// Errors never quote an identity file's content, nor a line of a
// recipients file: either may hold a private key put there by mistake.
package agekeys

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"filippo.io/age"
	"filippo.io/age/agessh"
	"filippo.io/age/armor"
	"golang.org/x/crypto/ssh"
)

// Limits on what is read, as the age command line has them.
const (
	maxFileSize = 16 << 20 // a recipients or identity file
	maxLineLen  = 8 << 10  // a recipient, as sshd(8) limits a key line
	maxSSHKey   = 16 << 10 // an SSH private key
)

// Magic is how every binary age file starts.
const Magic = "age-encryption.org/v1\n"

// IsAgeFile reports whether head, the first bytes of a file, starts an
// age file, binary or armored (age -a). len(head) >= 64 is enough.
func IsAgeFile(head []byte) bool {
	return bytes.HasPrefix(head, []byte(Magic)) || bytes.HasPrefix(bytes.TrimLeft(head, " \t\r\n"), []byte(armor.Header))
}

// NewReader returns r, or an armor decoder over r if r holds an armored
// age file. r must be buffered enough to peek 1 KiB.
func NewReader(r *bufio.Reader) io.Reader {
	head, _ := r.Peek(1024)
	if bytes.HasPrefix(bytes.TrimLeft(head, " \t\r\n"), []byte(armor.Header)) {
		return armor.NewReader(r)
	}
	return r
}

// Recipient is a parsed recipient and its text: as given, but an SSH
// key without its comment.
type Recipient struct {
	age.Recipient
	Text string
}

// Ages returns the age recipients of rs.
func Ages(rs []Recipient) []age.Recipient {
	out := make([]age.Recipient, len(rs))
	for i, r := range rs {
		out[i] = r.Recipient
	}
	return out
}

// ParseRecipient parses one recipient. A string that looks like a private
// key is not quoted back.
func ParseRecipient(s string) (Recipient, error) {
	r, err := parseRecipient(s)
	if err != nil {
		return Recipient{}, err
	}
	text := s
	if strings.HasPrefix(s, "ssh-") {
		if f := strings.Fields(s); len(f) >= 2 {
			text = f[0] + " " + f[1]
		}
	}
	return Recipient{r, text}, nil
}

func parseRecipient(s string) (age.Recipient, error) {
	switch {
	case strings.HasPrefix(s, "AGE-"):
		return nil, errors.New("this is an identity (a private key), not a recipient: use its public key, which age-keygen -y prints")
	case len(s) > maxLineLen:
		return nil, fmt.Errorf("recipient longer than %d bytes", maxLineLen)
	case strings.HasPrefix(s, "age1pq1"):
		return age.ParseHybridRecipient(s)
	case strings.HasPrefix(s, "age1") && strings.Count(s, "1") > 1:
		return nil, fmt.Errorf("%q: age plugin recipients are not supported", s)
	case strings.HasPrefix(s, "age1"):
		return age.ParseX25519Recipient(s)
	case strings.HasPrefix(s, "ssh-"):
		return agessh.ParseRecipient(s)
	}
	return nil, fmt.Errorf("%q: not an age recipient (age1…, ssh-ed25519 or ssh-rsa)", s)
}

// ReadRecipients reads a recipients file; name is how errors call it.
func ReadRecipients(r io.Reader, name string) ([]Recipient, error) {
	lr := &io.LimitedReader{R: r, N: maxFileSize + 1}
	sc := bufio.NewScanner(lr)
	sc.Buffer(nil, maxLineLen+2)
	var out []Recipient
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !utf8.ValidString(line) {
			return nil, fmt.Errorf("recipients file %s: line %d is not UTF-8", name, n)
		}
		rcpt, err := ParseRecipient(line)
		if err != nil {
			if strings.HasPrefix(line, "AGE-") {
				return nil, fmt.Errorf("recipients file %s: line %d is an identity (a private key), not a recipient", name, n)
			}
			return nil, fmt.Errorf("recipients file %s: line %d is not a recipient age accepts", name, n)
		}
		out = append(out, rcpt)
	}
	if err := sc.Err(); errors.Is(err, bufio.ErrTooLong) {
		return nil, fmt.Errorf("recipients file %s: line %d is longer than %d bytes", name, n+1, maxLineLen)
	} else if err != nil {
		return nil, fmt.Errorf("recipients file %s: %w", name, err)
	}
	if lr.N == 0 {
		return nil, fmt.Errorf("recipients file %s is larger than %d bytes", name, maxFileSize)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("recipients file %s names no recipient", name)
	}
	return out, nil
}

// ReadIdentities reads an identity file; name is how errors call it.
func ReadIdentities(r io.Reader, name string) ([]age.Identity, error) {
	br := bufio.NewReader(io.LimitReader(r, maxFileSize+1))
	head, _ := br.Peek(1024)
	trimmed := bytes.TrimLeft(head, " \t\r\n")
	switch {
	case IsAgeFile(head):
		return nil, fmt.Errorf("identity file %s is itself age-encrypted: decrypt a copy with age -d first", name)
	case bytes.HasPrefix(trimmed, []byte("-----BEGIN")):
		pem, err := io.ReadAll(io.LimitReader(br, maxSSHKey+1))
		if err != nil {
			return nil, fmt.Errorf("identity file %s: %w", name, err)
		}
		if len(pem) > maxSSHKey {
			return nil, fmt.Errorf("identity file %s: SSH private key larger than %d bytes", name, maxSSHKey)
		}
		id, err := agessh.ParseIdentity(pem)
		var missing *ssh.PassphraseMissingError
		if errors.As(err, &missing) {
			return nil, fmt.Errorf("identity file %s: passphrase-protected SSH keys are not supported", name)
		}
		if err != nil {
			return nil, fmt.Errorf("identity file %s: not an SSH private key age accepts: %w", name, err)
		}
		return []age.Identity{id}, nil
	}
	data, err := io.ReadAll(br)
	if err != nil {
		return nil, fmt.Errorf("identity file %s: %w", name, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("identity file %s is larger than %d bytes", name, maxFileSize)
	}
	if bytes.Contains(data, []byte("AGE-PLUGIN-")) {
		return nil, fmt.Errorf("identity file %s: age plugin identities are not supported", name)
	}
	ids, err := age.ParseIdentities(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("identity file %s: %w", name, err)
	}
	return ids, nil
}
