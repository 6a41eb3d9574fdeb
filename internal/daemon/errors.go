package daemon

import (
	"errors"
	"net/http"

	"github.com/encblk/encblk/internal/backing"
	"github.com/encblk/encblk/pkg/keyring"
	"github.com/encblk/encblk/pkg/rotation"
	"github.com/encblk/encblk/pkg/volume"
)

// Errors of the control API.
var (
	// ErrNoVolume: the server serves no volume by that ID or export name.
	ErrNoVolume = errors.New("no such volume served")
	// ErrBadRequest: the request is malformed.
	ErrBadRequest = errors.New("bad request")
	// ErrNotServed: no running server could be reached for the backing.
	ErrNotServed = errors.New("volume is not served")
)

// errorKinds map sentinel errors to the "kind" of an API error and back,
// so a client's error wraps the same sentinel as the server's did.
var errorKinds = []struct {
	kind   string
	err    error
	status int
}{
	{"wrong-key", keyring.ErrNoMatchingKeyslot, http.StatusForbidden},
	{"busy", backing.ErrBusy, http.StatusConflict},
	{"locked", volume.ErrLocked, http.StatusConflict},
	{"corrupt", keyring.ErrCorrupt, http.StatusUnprocessableEntity},
	{"unsupported", keyring.ErrUnsupported, http.StatusUnprocessableEntity},
	{"not-luks", keyring.ErrNotLUKS, http.StatusUnprocessableEntity},
	{"io", keyring.ErrIO, http.StatusInternalServerError},
	{"no-space", keyring.ErrNoSpace, http.StatusInsufficientStorage},
	{"read-only", keyring.ErrReadOnly, http.StatusConflict},
	{"keyslot-not-found", keyring.ErrKeyslotNotFound, http.StatusNotFound},
	{"no-volume", ErrNoVolume, http.StatusNotFound},
	{"bad-request", ErrBadRequest, http.StatusBadRequest},
	{"bad-policy", rotation.ErrPolicy, http.StatusBadRequest},
	{"forbidden", ErrUntrustedPeer, http.StatusForbidden},
}

// apiError is the body of an error reply.
type apiError struct {
	Error string `json:"error"`
	Kind  string `json:"kind,omitempty"`
}

func classify(err error) (kind string, status int) {
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			return k.kind, k.status
		}
	}
	return "", http.StatusInternalServerError
}

// remoteError is an error the server reported: its message, wrapping the
// sentinel of its kind.
type remoteError struct {
	msg  string
	kind error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.kind }

// Answered reports whether err is the server's answer to a request: the
// server finished with the request before replying, so what it changed is
// final. After any other error (the connection failed, the caller gave up)
// the request may still be carried out.
func Answered(err error) bool {
	var re *remoteError
	return errors.As(err, &re)
}

func fromAPI(a apiError) error {
	for _, k := range errorKinds {
		if k.kind == a.Kind {
			return &remoteError{msg: a.Error, kind: k.err}
		}
	}
	return &remoteError{msg: a.Error}
}
