package nbd_test

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// rawClient speaks NBD byte by byte, to test what real clients never send.
type rawClient struct {
	t testing.TB
	c net.Conn
}

// Wire values, spelled out here rather than shared with the server so a
// mistake in one is caught by the other.
const (
	tOptExportName = 1
	tOptAbort      = 2
	tOptList       = 3
	tOptStartTLS   = 5
	tOptInfo       = 6
	tOptGo         = 7
	tOptStructured = 8
	tOptListMeta   = 9
	tOptSetMeta    = 10

	tRepAck        = 1
	tRepServer     = 2
	tRepInfo       = 3
	tRepMeta       = 4
	tRepErrUnsup   = 1<<31 | 1
	tRepErrInvalid = 1<<31 | 3
	tRepErrTLSReqd = 1<<31 | 5
	tRepErrUnknown = 1<<31 | 6
	tRepErrTooBig  = 1<<31 | 9

	tCmdRead        = 0
	tCmdWrite       = 1
	tCmdDisc        = 2
	tCmdFlush       = 3
	tCmdTrim        = 4
	tCmdCache       = 5
	tCmdWriteZeroes = 6
	tCmdBlockStatus = 7

	tFlagFUA      = 1
	tFlagNoHole   = 2
	tFlagDF       = 4
	tFlagReqOne   = 8
	tFlagFastZero = 16

	tEPERM     = 1
	tEINVAL    = 22
	tENOSPC    = 28
	tENOTSUP   = 95
	tESHUTDOWN = 108
)

// newRawClient connects and completes the initial handshake with the given
// client flags (1 = fixed newstyle, 2 = no zeroes).
func newRawClient(t testing.TB, s *testServer, clientFlags uint32) *rawClient {
	t.Helper()
	return newRawClientConn(t, s.dial(t), clientFlags)
}

// newRawClientConn is newRawClient over a connection the test made.
func newRawClientConn(t testing.TB, c net.Conn, clientFlags uint32) *rawClient {
	t.Helper()
	r := &rawClient{t: t, c: c}
	_ = r.c.SetDeadline(time.Now().Add(60 * time.Second)) // hang detector only
	var g [18]byte
	r.read(g[:])
	if binary.BigEndian.Uint64(g[0:]) != 0x4e42444d41474943 || binary.BigEndian.Uint64(g[8:]) != 0x49484156454F5054 {
		t.Fatalf("bad greeting % x", g)
	}
	if f := binary.BigEndian.Uint16(g[16:]); f != 3 {
		t.Fatalf("handshake flags %#x, want FIXED_NEWSTYLE|NO_ZEROES", f)
	}
	r.write(binary.BigEndian.AppendUint32(nil, clientFlags))
	return r
}

func (r *rawClient) write(b []byte) {
	r.t.Helper()
	if _, err := r.c.Write(b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

func (r *rawClient) read(b []byte) {
	r.t.Helper()
	if _, err := io.ReadFull(r.c, b); err != nil {
		r.t.Fatalf("read: %v", err)
	}
}

// expectClosed checks that the server hangs up (EOF or reset), not hangs.
func (r *rawClient) expectClosed() {
	r.t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	b := make([]byte, 4096)
	for {
		_, err := r.c.Read(b)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			r.t.Fatal("server did not close the connection")
		}
		return
	}
}

func (r *rawClient) sendOpt(opt uint32, data []byte) {
	r.t.Helper()
	b := binary.BigEndian.AppendUint64(nil, 0x49484156454F5054)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	r.write(append(b, data...))
}

func (r *rawClient) optReply() (opt, typ uint32, data []byte) {
	r.t.Helper()
	var h [20]byte
	r.read(h[:])
	if m := binary.BigEndian.Uint64(h[0:]); m != 0x3e889045565a9 {
		r.t.Fatalf("option reply magic %#x", m)
	}
	data = make([]byte, binary.BigEndian.Uint32(h[16:]))
	r.read(data)
	return binary.BigEndian.Uint32(h[8:]), binary.BigEndian.Uint32(h[12:]), data
}

// expectOpt sends an option and checks the final reply type, returning the
// replies before it.
func (r *rawClient) expectOpt(opt uint32, data []byte, want uint32) [][]byte {
	r.t.Helper()
	r.sendOpt(opt, data)
	var got [][]byte
	for {
		o, typ, d := r.optReply()
		if o != opt {
			r.t.Fatalf("reply for option %d, sent %d", o, opt)
		}
		if typ == want {
			return got
		}
		if typ&(1<<31) != 0 || typ == tRepAck {
			r.t.Fatalf("option %d: reply %#x (%q), want %#x", opt, typ, d, want)
		}
		got = append(got, d)
	}
}

func goData(name string, infos ...uint16) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(infos)))
	for _, i := range infos {
		b = binary.BigEndian.AppendUint16(b, i)
	}
	return b
}

func metaData(name string, queries ...string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(queries)))
	for _, q := range queries {
		b = binary.BigEndian.AppendUint32(b, uint32(len(q)))
		b = append(b, q...)
	}
	return b
}

// start negotiates export name (structured replies and base:allocation if
// structured) and enters transmission; it returns size and flags.
func (r *rawClient) start(name string, structured bool) (uint64, uint16) {
	r.t.Helper()
	if structured {
		r.expectOpt(tOptStructured, nil, tRepAck)
		r.expectOpt(tOptSetMeta, metaData(name, "base:allocation"), tRepAck)
	}
	infos := r.expectOpt(tOptGo, goData(name, 3), tRepAck)
	for _, d := range infos {
		if binary.BigEndian.Uint16(d) == 0 {
			return binary.BigEndian.Uint64(d[2:]), binary.BigEndian.Uint16(d[10:])
		}
	}
	r.t.Fatal("no NBD_INFO_EXPORT")
	return 0, 0
}

func (r *rawClient) request(flags, typ uint16, cookie, off uint64, length uint32, payload []byte) {
	r.t.Helper()
	r.write(append(appendRequest(nil, flags, typ, cookie, off, length), payload...))
}

// appendRequest appends a request header to b, for tests that send a burst
// of requests in one write.
func appendRequest(b []byte, flags, typ uint16, cookie, off uint64, length uint32) []byte {
	b = binary.BigEndian.AppendUint32(b, 0x25609513)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, cookie)
	b = binary.BigEndian.AppendUint64(b, off)
	return binary.BigEndian.AppendUint32(b, length)
}

// simpleReply reads a simple reply, with n bytes of data if it succeeded.
func (r *rawClient) simpleReply(n int) (cookie uint64, errno uint32, data []byte) {
	r.t.Helper()
	var h [16]byte
	r.read(h[:])
	if m := binary.BigEndian.Uint32(h[0:]); m != 0x67446698 {
		r.t.Fatalf("simple reply magic %#x", m)
	}
	errno = binary.BigEndian.Uint32(h[4:])
	if errno == 0 && n > 0 {
		data = make([]byte, n)
		r.read(data)
	}
	return binary.BigEndian.Uint64(h[8:]), errno, data
}

// chunk is one structured reply chunk (or a simple reply, typ 0xffff).
type chunk struct {
	flags, typ uint16
	cookie     uint64
	payload    []byte
}

func (r *rawClient) anyReply() chunk {
	r.t.Helper()
	var m [4]byte
	r.read(m[:])
	switch binary.BigEndian.Uint32(m[:]) {
	case 0x67446698:
		var h [12]byte
		r.read(h[:])
		return chunk{typ: 0xffff, cookie: binary.BigEndian.Uint64(h[4:]), payload: h[:4]}
	case 0x668e33ef:
		var h [16]byte
		r.read(h[:])
		c := chunk{flags: binary.BigEndian.Uint16(h[0:]), typ: binary.BigEndian.Uint16(h[2:]), cookie: binary.BigEndian.Uint64(h[4:])}
		c.payload = make([]byte, binary.BigEndian.Uint32(h[12:]))
		r.read(c.payload)
		return c
	default:
		r.t.Fatalf("reply magic % x", m)
		return chunk{}
	}
}

// errnoOf is the error of a simple reply or error chunk, 0 for success.
func (c chunk) errno() uint32 {
	if c.typ == 0xffff {
		return binary.BigEndian.Uint32(c.payload)
	}
	if c.typ&0x8000 != 0 {
		return binary.BigEndian.Uint32(c.payload)
	}
	return 0
}
