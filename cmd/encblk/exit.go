package main

import (
	"errors"
)

// Exit statuses, documented in the README and relied on by scripts.
const (
	exitOK       = 0 // success
	exitUsage    = 1 // bad flags or arguments, or any error not listed below
	exitWrongKey = 2 // wrong key: no keyslot matches
	exitBusy     = 3 // volume busy or locked
	exitCorrupt  = 4 // corrupt or unsupported metadata
	exitIO       = 5 // I/O error
)

// codedError carries the exit status an error should produce.
type codedError struct {
	code int
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

// withExit tags err with an exit status; nil stays nil.
func withExit(code int, err error) error {
	if err == nil {
		return nil
	}
	return &codedError{code: code, err: err}
}

// exitCodeMappers translate package sentinel errors into exit statuses. Each
// subcommand file may add its mapper from an init function; the slice is not
// changed after init.
var exitCodeMappers []func(error) (int, bool)

// exitCode picks the exit status for err: an explicit codedError wins, then
// the registered sentinel mappers, then exitUsage.
func exitCode(err error) int {
	var ce *codedError
	if errors.As(err, &ce) {
		return ce.code
	}
	for _, m := range exitCodeMappers {
		if code, ok := m(err); ok {
			return code
		}
	}
	return exitUsage
}
