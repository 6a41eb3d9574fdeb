package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"

	"github.com/encblk/encblk/pkg/kek/passphrase"
	"github.com/encblk/encblk/pkg/keyring"
)

// Exit statuses for the keyring's sentinel errors.
func init() {
	exitCodeMappers = append(exitCodeMappers, func(err error) (int, bool) {
		switch {
		case errors.Is(err, keyring.ErrNoMatchingKeyslot):
			return exitWrongKey, true
		case errors.Is(err, keyring.ErrUnavailable) && onlyCorrupt(err):
			// Every keyslot tried was out of reach because its token is
			// damaged (an age token whose file does not authenticate).
			return exitCorrupt, true
		case errors.Is(err, keyring.ErrUnavailable):
			// A keyslot's source withheld its secret: the volume stays locked.
			return exitBusy, true
		case errors.Is(err, keyring.ErrIO):
			return exitIO, true
		case errors.Is(err, keyring.ErrStale):
			return exitBusy, true
		case errors.Is(err, keyring.ErrCorrupt), errors.Is(err, keyring.ErrUnsupported), errors.Is(err, keyring.ErrNotLUKS):
			return exitCorrupt, true
		}
		return 0, false
	})
}

// headerFlag is cryptsetup's --header: the LUKS header lives in FILE, not
// on the device.
type headerFlag struct{ path string }

func (h *headerFlag) register(fs *pflag.FlagSet) {
	fs.StringVar(&h.path, "header", "", "the LUKS header is in this file (detached header), not on the device")
}

// location is where the header of device is.
func (h *headerFlag) location(device string) string {
	if h.path != "" {
		return h.path
	}
	return device
}

// openKeyring opens the header of device (or of --header).
func (h *headerFlag) open(device string, readOnly bool) (*keyring.Keyring, error) {
	return keyring.Open(h.location(device), &keyring.Options{ReadOnly: readOnly})
}

// onlyCorrupt reports whether err is a *keyring.LockedError all of whose
// reasons are corrupt metadata.
func onlyCorrupt(err error) bool {
	var le *keyring.LockedError
	if !errors.As(err, &le) || len(le.Reasons) == 0 {
		return false
	}
	for _, r := range le.Reasons {
		if !errors.Is(r, keyring.ErrCorrupt) {
			return false
		}
	}
	return true
}

// confirm asks for an explicit YES, as cryptsetup does before destroying
// something, unless batch is set.
func confirm(in io.Reader, out io.Writer, batch bool, warning string) error {
	if batch {
		return nil
	}
	fmt.Fprintf(out, "WARNING!\n========\n%s\n\nAre you sure? (Type 'yes' in capital letters): ", warning)
	var line [64]byte
	n, _ := passphrase.Line(in, line[:]) // unreadable input is no YES
	if strings.TrimSpace(string(line[:n])) != "YES" {
		return withExit(exitUsage, errors.New("operation aborted (not confirmed with YES)"))
	}
	return nil
}
