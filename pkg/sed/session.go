package sed

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrNoResponse is returned when the TPer keeps answering with empty
// ComPackets: the command is still being processed past the poll
// deadline, or the session it was sent in no longer exists (the TPer
// discards packets for sessions it has closed, e.g. after a timeout).
var ErrNoResponse = errors.New("sed: no response from the TPer (session expired or device busy)")

// ErrNotOpal is wrapped (together with ErrNotSupported) when a device
// speaks TCG but does not implement the Opal 2 SSC.
var ErrNotOpal = errors.New("device does not implement the TCG Opal 2 SSC")

// PollPolicy says how long to wait for a TPer's reply. A TPer that has not
// finished answers IF-RECV with an empty ComPacket; the host asks again.
type PollPolicy struct {
	Interval time.Duration // first wait between polls; doubles up to 64x
	Timeout  time.Duration // give up after this long
}

// DefaultPollPolicy suits real drives, which answer most methods at once
// but may take seconds for GenKey or Revert.
var DefaultPollPolicy = PollPolicy{Interval: time.Millisecond, Timeout: 30 * time.Second}

// Device is an Opal 2 drive reached through a Transport.
type Device struct {
	t         Transport
	Discovery *Discovery
	ComID     uint16
	Poll      PollPolicy
	// TPerProperties are the TPer's answer to Properties.
	TPerProperties map[string]uint64

	maxComPacket int
	nextHSN      uint32
}

// Open runs Level 0 Discovery and the Properties exchange. A device
// without TCG support or without the Opal 2 SSC yields an error wrapping
// ErrNotSupported, and nothing is sent after discovery.
func Open(ctx context.Context, t Transport) (*Device, error) {
	d0, err := Discover(ctx, t)
	if err != nil {
		return nil, err
	}
	if d0.OpalV2 == nil {
		what := "no SSC"
		if ssc, _, ok := d0.SSC(); ok {
			what = string(ssc)
		}
		return nil, fmt.Errorf("%w: %w (device reports %s)", ErrNotSupported, ErrNotOpal, what)
	}
	d := &Device{t: t, Discovery: d0, ComID: d0.OpalV2.BaseComID, Poll: DefaultPollPolicy,
		maxComPacket: 2048, nextHSN: 0x41}
	if err := d.properties(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

// properties exchanges communication properties with the session manager
// and keeps the smaller of the two MaxComPacketSize values for receiving.
func (d *Device) properties(ctx context.Context) error {
	r, err := d.exchange(ctx, 0, 0, PropertiesCall(DefaultHostProperties))
	if err != nil {
		return fmt.Errorf("sed: Properties: %w", err)
	}
	if err := r.Err(); err != nil {
		return fmt.Errorf("sed: Properties: %w", err)
	}
	d.TPerProperties = map[string]uint64{}
	if len(r.Results) > 0 {
		if l, ok := r.Results[0].(List); ok {
			for _, v := range l {
				if nm, ok := v.(Name); ok {
					k, ok1 := nm.Name.(Bytes)
					u, ok2 := nm.Value.(Uint)
					if ok1 && ok2 {
						d.TPerProperties[string(k)] = uint64(u)
					}
				}
			}
		}
	}
	if v, ok := d.TPerProperties["MaxComPacketSize"]; ok && v >= 512 && v < uint64(d.maxComPacket) {
		d.maxComPacket = int(v)
	}
	return nil
}

// exchange sends one method call in session (tsn, hsn) and returns the
// parsed reply.
func (d *Device) exchange(ctx context.Context, tsn, hsn uint32, m MethodCall) (*MethodResult, error) {
	tokens, err := m.Encode()
	if err != nil {
		return nil, err
	}
	payload, err := d.roundTrip(ctx, tsn, hsn, tokens)
	if err != nil {
		return nil, err
	}
	return ParseMethodResult(payload)
}

// roundTrip sends a token stream and polls for the reply's token stream.
func (d *Device) roundTrip(ctx context.Context, tsn, hsn uint32, tokens []byte) ([]byte, error) {
	out, err := NewComPacket(d.ComID, tsn, hsn, tokens).MarshalBinary()
	if err != nil {
		return nil, err
	}
	out = append(out, make([]byte, padTransfer(len(out))-len(out))...)
	if err := d.t.IFSend(ctx, ProtocolTCG, d.ComID, out); err != nil {
		return nil, fmt.Errorf("sed: IF-SEND: %w", err)
	}
	deadline := time.Now().Add(d.Poll.Timeout)
	wait := d.Poll.Interval
	buf := make([]byte, d.maxComPacket)
	for {
		clear(buf)
		if err := d.t.IFRecv(ctx, ProtocolTCG, d.ComID, buf); err != nil {
			return nil, fmt.Errorf("sed: IF-RECV: %w", err)
		}
		cp, err := ParseComPacket(buf)
		if err != nil {
			return nil, err
		}
		if len(cp.Packets) == 0 && cp.MinTransfer > uint32(len(buf)) {
			// The reply is larger than our buffer: ask again with room.
			if cp.MinTransfer > 1<<20 {
				return nil, fmt.Errorf("%w: TPer wants a %d-byte transfer", ErrMalformed, cp.MinTransfer)
			}
			buf = make([]byte, padTransfer(int(cp.MinTransfer)))
			continue
		}
		if len(cp.Packets) > 0 {
			p, payload, err := cp.Payload()
			if err != nil {
				return nil, err
			}
			if p.TSN != tsn || p.HSN != hsn {
				return nil, fmt.Errorf("%w: reply for session %d/%d, expected %d/%d", ErrMalformed, p.TSN, p.HSN, tsn, hsn)
			}
			return payload, nil
		}
		if time.Now().After(deadline) {
			return nil, ErrNoResponse
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		if wait < 64*d.Poll.Interval {
			wait *= 2
		}
	}
}

// Session is an open session with one SP.
type Session struct {
	d         *Device
	TSN, HSN  uint32
	SP        UID
	Authority UID
	closed    bool
}

// StartSession opens a session with sp as authority, proving it with pin
// (HostChallenge). A zero authority opens an anonymous (Anybody) session.
// The PIN is not kept.
func (d *Device) StartSession(ctx context.Context, sp, authority UID, pin []byte, write bool) (*Session, error) {
	hsn := d.nextHSN
	d.nextHSN++
	who := authority.String()
	if authority == (UID{}) {
		who = "Anybody"
	}
	r, err := d.exchange(ctx, 0, 0, StartSessionCall(hsn, sp, write, authority, pin))
	if err != nil {
		return nil, fmt.Errorf("sed: StartSession on %v as %s: %w", sp, who, err)
	}
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("sed: StartSession on %v as %s: %w", sp, who, err)
	}
	if r.Call == nil || r.Call.Method != MethodSyncSession || len(r.Results) < 2 {
		return nil, fmt.Errorf("sed: StartSession on %v: %w: reply is not SyncSession", sp, ErrMalformed)
	}
	h, ok1 := r.Results[0].(Uint)
	t, ok2 := r.Results[1].(Uint)
	if !ok1 || !ok2 || uint64(h) != uint64(hsn) || t == 0 || t > 0xFFFFFFFF {
		return nil, fmt.Errorf("sed: StartSession on %v: %w: SyncSession %v", sp, ErrMalformed, r.Results)
	}
	return &Session{d: d, TSN: uint32(t), HSN: hsn, SP: sp, Authority: authority}, nil
}

// Call invokes a method in the session and returns its results; a
// non-success status is returned as a Status error wrapped with the
// method's name (never its arguments).
func (s *Session) Call(ctx context.Context, m MethodCall) (List, error) {
	if s.closed {
		return nil, fmt.Errorf("sed: %v: session closed", m)
	}
	r, err := s.d.exchange(ctx, s.TSN, s.HSN, m)
	if errors.Is(err, ErrSessionEnded) {
		s.closed = true
	}
	if err != nil {
		return nil, fmt.Errorf("sed: %v: %w", m, err)
	}
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("sed: %v: %w", m, err)
	}
	return r.Results, nil
}

// Close ends the session with EndOfSession. Closing twice is harmless.
func (s *Session) Close(ctx context.Context) error {
	if s.closed {
		return nil
	}
	s.closed = true
	payload, err := s.d.roundTrip(ctx, s.TSN, s.HSN, []byte{byte(TokenEndOfSession)})
	if err != nil {
		return fmt.Errorf("sed: CloseSession: %w", err)
	}
	if vals, err := Decode(payload); err != nil || len(vals) != 1 || vals[0] != TokenEndOfSession {
		return fmt.Errorf("sed: CloseSession: %w: reply is not EndOfSession", ErrMalformed)
	}
	return nil
}

// markClosed records that the TPer ended the session on its own (after
// RevertSP or Revert).
func (s *Session) markClosed() { s.closed = true }
