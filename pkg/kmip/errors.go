package kmip

import (
	"errors"
	"fmt"
)

// ErrOperationFailed is matched (errors.Is) by every *ResultError: a server
// answered and refused the operation. Such answers are authoritative and
// are not retried on another server.
var ErrOperationFailed = errors.New("kmip: operation failed")

// ErrUnavailable is wrapped when no configured server gave a usable answer
// (unreachable, TLS refused, timed out, or malformed responses). The error
// names every server tried and why it failed.
var ErrUnavailable = errors.New("kmip: no key server available")

// ErrUnexpectedResponse is wrapped when a well-formed response does not
// answer the request (wrong operation, missing fields, wrong item types).
var ErrUnexpectedResponse = errors.New("kmip: unexpected response")

// ResultError is a failed batch item: the server's Result Status, Result
// Reason and Result Message, with the server's address.
type ResultError struct {
	Server    string // host:port that answered
	Operation Operation
	Status    ResultStatus
	Reason    ResultReason
	Message   string // the server's Result Message, if any
}

func (e *ResultError) Error() string {
	s := fmt.Sprintf("kmip server %s: %v: %v", e.Server, e.Operation, e.Status)
	if e.Reason != 0 {
		s += ": " + e.Reason.String()
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Is makes errors.Is(err, ErrOperationFailed) true for result errors.
func (e *ResultError) Is(target error) bool { return target == ErrOperationFailed }

// ServerError is a failure to get a usable answer from one server: it could
// not be reached, the TLS handshake failed, it timed out, or its answer was
// malformed.
type ServerError struct {
	Server string
	Err    error
}

func (e *ServerError) Error() string { return fmt.Sprintf("kmip server %s: %v", e.Server, e.Err) }
func (e *ServerError) Unwrap() error { return e.Err }

// Reason returns the KMIP Result Reason carried by err, if err is (or wraps)
// a *ResultError.
func Reason(err error) (ResultReason, bool) {
	var re *ResultError
	if errors.As(err, &re) {
		return re.Reason, true
	}
	return 0, false
}
