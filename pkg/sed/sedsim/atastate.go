package sedsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// An ATADrive opened with OpenATA keeps its security state (passwords,
// security level, locked, frozen, attempt counter) in a JSON file, so that
// separate processes (CLI invocations in tests) talk to the same drive. As
// for the Opal simulator the file holds the passwords in clear: testing
// only, written 0600, replaced atomically. A power cycle happens only when
// PowerCycle is called.
type ataStateFile struct {
	User, Master     []byte
	UserSet, Maximum bool
	MasterID         uint16
	Locked, Frozen   bool
	Attempts         int
}

// OpenATA is NewATA with the state kept in statePath: loaded when the
// file exists (masterPassword is then ignored), written after every
// command and power cycle that changed it.
func OpenATA(path, statePath string, masterPassword []byte) (*ATADrive, error) {
	a, err := NewATA(path, masterPassword)
	if err != nil {
		return nil, err
	}
	a.state.path = statePath
	b, err := os.ReadFile(statePath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		err = a.save()
	case err == nil:
		var s ataStateFile
		if err = json.Unmarshal(b, &s); err == nil {
			a.state.last = b
			a.user, a.master, a.userSet, a.maximum = s.User, pad32(s.Master), s.UserSet, s.Maximum
			a.masterID, a.locked, a.frozen, a.attempts = s.MasterID, s.Locked, s.Frozen, s.Attempts
		}
	}
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("sedsim: state %s: %w", statePath, err)
	}
	return a, nil
}

// save writes the state file, if there is one. The caller holds a.mu.
func (a *ATADrive) save() error {
	if a.state.path == "" {
		return nil
	}
	return a.state.write(ataStateFile{User: a.user, Master: a.master, UserSet: a.userSet, Maximum: a.maximum,
		MasterID: a.masterID, Locked: a.locked, Frozen: a.frozen, Attempts: a.attempts})
}
