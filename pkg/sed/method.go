package sed

import (
	"errors"
	"fmt"
)

// MethodCall invokes Method on the object Invoking with Args (Core 2.01
// section 3.2.4.1). Args are the required parameters in order, followed by
// optional ones as Name values with integer names.
type MethodCall struct {
	Invoking UID
	Method   UID
	Args     []Value
}

// String names the object and method, never the arguments (they may hold
// PINs).
func (m MethodCall) String() string { return m.Invoking.String() + "." + m.Method.String() }

// Encode returns the token stream of the call:
//
//	Call Invoking Method StartList Args... EndList EndOfData
//	StartList 0 0 0 EndList
//
// The trailing list is the method status list, all zeros when the host
// calls (Core 3.2.4.1: "the status code list ... SHALL be [0, 0, 0]").
func (m MethodCall) Encode() ([]byte, error) {
	return Encode(TokenCall, m.Invoking.Value(), m.Method.Value(), List(m.Args),
		TokenEndOfData, List{Uint(0), Uint(0), Uint(0)})
}

// MethodResult is a TPer's reply to one method call.
type MethodResult struct {
	// Call is the method the TPer invokes in reply, for session manager
	// methods (Properties and StartSession are answered by a Properties or
	// SyncSession call on SMUID); nil otherwise.
	Call *MethodCall
	// Results is the result list (for a Call, its argument list).
	Results List
	// Status is the first element of the method status list.
	Status Status
}

// ErrSessionEnded is returned when a TPer answers with EndOfSession: the
// session was closed (by the host, or by the TPer after a timeout or an
// error) and no method result follows.
var ErrSessionEnded = errors.New("sed: session ended by the TPer")

// ParseMethodResult decodes a reply token stream. It accepts
//
//	StartList results EndList EndOfData StatusList
//	Call Invoking Method StartList args EndList EndOfData StatusList
//
// and returns ErrSessionEnded for a lone EndOfSession. The status is
// returned in the result, not as an error; see MethodResult.Err.
func ParseMethodResult(tokens []byte) (*MethodResult, error) {
	vals, err := Decode(tokens)
	if err != nil {
		return nil, err
	}
	if len(vals) == 1 && vals[0] == TokenEndOfSession {
		return nil, ErrSessionEnded
	}
	r := &MethodResult{}
	rest := vals
	if len(rest) > 0 && rest[0] == TokenCall {
		if len(rest) < 4 {
			return nil, fmt.Errorf("%w: truncated method call in reply", ErrMalformed)
		}
		inv, ok1 := rest[1].(Bytes)
		meth, ok2 := rest[2].(Bytes)
		args, ok3 := rest[3].(List)
		if !ok1 || !ok2 || !ok3 {
			return nil, fmt.Errorf("%w: reply call is not UID UID List", ErrMalformed)
		}
		c := &MethodCall{Args: args}
		if c.Invoking, err = UIDFromBytes(inv); err != nil {
			return nil, err
		}
		if c.Method, err = UIDFromBytes(meth); err != nil {
			return nil, err
		}
		r.Call, r.Results = c, args
		rest = rest[4:]
	} else {
		if len(rest) == 0 {
			return nil, fmt.Errorf("%w: empty reply", ErrMalformed)
		}
		l, ok := rest[0].(List)
		if !ok {
			return nil, fmt.Errorf("%w: reply starts with %v, not a result list", ErrMalformed, rest[0])
		}
		r.Results = l
		rest = rest[1:]
	}
	if len(rest) != 2 || rest[0] != TokenEndOfData {
		return nil, fmt.Errorf("%w: reply does not end with EndOfData and a status list", ErrMalformed)
	}
	st, ok := rest[1].(List)
	if !ok || len(st) != 3 {
		return nil, fmt.Errorf("%w: method status list is not a list of 3 integers", ErrMalformed)
	}
	for i, v := range st {
		u, ok := v.(Uint)
		if !ok || u > 0xFF {
			return nil, fmt.Errorf("%w: method status list element %d is %v", ErrMalformed, i, v)
		}
	}
	r.Status = Status(st[0].(Uint))
	return r, nil
}

// Err returns the status as an error, nil for success.
func (r *MethodResult) Err() error {
	if r.Status == StatusSuccess {
		return nil
	}
	return r.Status
}

// EncodeResult encodes a TPer's reply: the result list, EndOfData and the
// status list. The simulator and tests use it.
func EncodeResult(results List, status Status) ([]byte, error) {
	if results == nil {
		results = List{}
	}
	return Encode(results, TokenEndOfData, List{Uint(status), Uint(0), Uint(0)})
}

// EncodeCallReply encodes a TPer-initiated call (SyncSession, Properties,
// CloseSession on SMUID) with a status list.
func EncodeCallReply(c MethodCall, status Status) ([]byte, error) {
	return Encode(TokenCall, c.Invoking.Value(), c.Method.Value(), List(c.Args),
		TokenEndOfData, List{Uint(status), Uint(0), Uint(0)})
}

// NamedValue returns the value of the Name in l whose name is the integer
// n (a column number or an optional parameter).
func (l List) NamedValue(n uint64) (Value, bool) {
	for _, v := range l {
		if nm, ok := v.(Name); ok {
			if u, ok := nm.Name.(Uint); ok && uint64(u) == n {
				return nm.Value, true
			}
		}
	}
	return nil, false
}

// NamedString returns the value of the Name in l whose name is the byte
// string s (a property name).
func (l List) NamedString(s string) (Value, bool) {
	for _, v := range l {
		if nm, ok := v.(Name); ok {
			if b, ok := nm.Name.(Bytes); ok && string(b) == s {
				return nm.Value, true
			}
		}
	}
	return nil, false
}

// Columns unpacks the result of Get, [ [ {col: value} ... ] ], into a map
// from column number to value.
func Columns(results List) (map[uint64]Value, error) {
	if len(results) != 1 {
		return nil, fmt.Errorf("%w: Get returned %d results, want 1 list", ErrMalformed, len(results))
	}
	row, ok := results[0].(List)
	if !ok {
		return nil, fmt.Errorf("%w: Get result is %v, not a list", ErrMalformed, results[0])
	}
	cols := make(map[uint64]Value, len(row))
	for _, v := range row {
		nm, ok := v.(Name)
		if !ok {
			return nil, fmt.Errorf("%w: Get result element is not a named column", ErrMalformed)
		}
		c, ok := nm.Name.(Uint)
		if !ok {
			return nil, fmt.Errorf("%w: Get result column name is not an integer", ErrMalformed)
		}
		cols[uint64(c)] = nm.Value
	}
	return cols, nil
}

// GetCall builds Get on object for the columns first..last (Core 5.3.3.6):
// Get [ Cellblock: [ StartColumn: first, EndColumn: last ] ].
func GetCall(object UID, first, last uint64) MethodCall {
	return MethodCall{Invoking: object, Method: MethodGet, Args: []Value{
		List{Name{Uint(CellStartColumn), Uint(first)}, Name{Uint(CellEndColumn), Uint(last)}},
	}}
}

// SetCall builds Set on object with the named column values (Core
// 5.3.3.7): Set [ Values: [ {col: value} ... ] ].
func SetCall(object UID, values ...Name) MethodCall {
	l := make(List, len(values))
	for i, v := range values {
		l[i] = v
	}
	return MethodCall{Invoking: object, Method: MethodSet, Args: []Value{Name{Uint(SetValues), l}}}
}

// Col is shorthand for the named column value {col: v}.
func Col(col uint64, v Value) Name { return Name{Uint(col), v} }

// Bool is the integer encoding of a boolean column value.
func Bool(b bool) Uint {
	if b {
		return 1
	}
	return 0
}
