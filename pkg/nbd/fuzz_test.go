package nbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/encblk/encblk/pkg/blockdev"
)

// memBackend is an in-memory device for the in-package tests and fuzzing.
type memBackend struct {
	mu   sync.Mutex
	data []byte
	info blockdev.Info
}

func (m *memBackend) Size() int64         { return int64(len(m.data)) }
func (m *memBackend) Info() blockdev.Info { return m.info }
func (m *memBackend) ReadAt(_ context.Context, p []byte, off int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	copy(p, m.data[off:])
	return nil
}
func (m *memBackend) WriteAt(_ context.Context, p []byte, off int64, _ bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	copy(m.data[off:], p)
	return nil
}
func (m *memBackend) Flush(context.Context) error { return nil }
func (m *memBackend) Trim(ctx context.Context, off, length int64, fua bool) error {
	return m.Zero(ctx, off, length, 0)
}
func (m *memBackend) Zero(_ context.Context, off, length int64, f blockdev.ZeroFlags) error {
	if f&blockdev.ZeroFast != 0 {
		return syscall.ENOTSUP
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.data[off : off+length])
	return nil
}
func (m *memBackend) Extents(_ context.Context, dst []blockdev.Extent, off, length int64) ([]blockdev.Extent, error) {
	// Alternate 4 KiB data and zero extents, to exercise merging and limits.
	for end := off + length; off < end; {
		n := min(4096-off%4096, end-off)
		dst = append(dst, blockdev.Extent{Length: n, Zero: (off/4096)%2 == 1})
		off += n
	}
	return dst, nil
}

func (m *memBackend) Prefetch(context.Context, int64, int64) error { return nil }

// pipeConn is a net.Conn whose reads come from a byte slice and whose
// writes are discarded: a client that says exactly the fuzzer's bytes.
type pipeConn struct {
	r io.Reader
}

func (c *pipeConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *pipeConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *pipeConn) Close() error                     { return nil }
func (c *pipeConn) LocalAddr() net.Addr              { return &net.UnixAddr{Name: "fuzz", Net: "unix"} }
func (c *pipeConn) RemoteAddr() net.Addr             { return &net.UnixAddr{Name: "fuzz", Net: "unix"} }
func (c *pipeConn) SetDeadline(time.Time) error      { return nil }
func (c *pipeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *pipeConn) SetWriteDeadline(time.Time) error { return nil }

func fuzzServer() *Server {
	info := blockdev.Info{LogicalBlockSize: 1, CanTrim: true, CanZero: true, CanFastZero: true, CanFUA: true, CanFlush: true}
	ro := info
	ro.ReadOnly = true
	return &Server{
		Exports: StaticExports{
			"":   {Device: &memBackend{data: make([]byte, 1<<20), info: info}, Cache: true},
			"ro": {Device: &memBackend{data: make([]byte, 64<<10), info: ro}, Cache: true},
		},
		Logger:              slog.New(slog.DiscardHandler),
		MaxInFlightRequests: 8,
		MaxInFlightBytes:    256 << 10,
	}
}

func opt(o uint32, data []byte) []byte {
	b := binary.BigEndian.AppendUint64(nil, ihaveOpt)
	b = binary.BigEndian.AppendUint32(b, o)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

func req(flags, typ uint16, cookie, off uint64, length uint32, payload []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, requestMagic)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, cookie)
	b = binary.BigEndian.AppendUint64(b, off)
	b = binary.BigEndian.AppendUint32(b, length)
	return append(b, payload...)
}

func nameInfo(name string, infos ...uint16) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(infos)))
	for _, i := range infos {
		b = binary.BigEndian.AppendUint16(b, i)
	}
	return b
}

func metaQuery(name string, qs ...string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(qs)))
	for _, q := range qs {
		b = binary.BigEndian.AppendUint32(b, uint32(len(q)))
		b = append(b, q...)
	}
	return b
}

// FuzzOptions feeds arbitrary client bytes to a whole connection, from the
// client flags through option haggling (and into transmission when the
// input gets there). The server must neither panic nor hang.
func FuzzOptions(f *testing.F) {
	flags := []byte{0, 0, 0, 3}
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	f.Add(join(flags, opt(optGo, nameInfo("", infoBlockSize))))
	f.Add(join(flags, opt(optList, nil), opt(optInfo, nameInfo("ro", 1, 2, 3)), opt(optAbort, nil)))
	f.Add(join(flags, opt(optStructuredReply, nil), opt(optListMetaContext, metaQuery("", "base:")),
		opt(optSetMetaContext, metaQuery("", "base:allocation")), opt(optGo, nameInfo("")),
		req(0, cmdBlockStatus, 1, 0, 1<<20, nil)))
	f.Add(join(flags, opt(optExportName, nil), req(0, cmdRead, 1, 0, 512, nil)))
	f.Add(join(flags, opt(optStartTLS, nil), opt(99, []byte("x"))))
	f.Add(join(flags, opt(optSetMetaContext, []byte{0, 0, 0, 9, 0})))
	f.Add([]byte{0, 0, 0, 1, 'I', 'H', 'A', 'V', 'E', 'O', 'P', 'T', 0, 0, 0, 7, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		s := fuzzServer()
		within(t, "ServeConn on a closed input", func() {
			_ = s.ServeConn(context.Background(), &pipeConn{r: bytes.NewReader(data)})
		})
	})
}

// FuzzRequests feeds arbitrary bytes to the transmission phase, with and
// without structured replies and base:allocation, on a writable and a
// read-only export.
func FuzzRequests(f *testing.F) {
	f.Add(req(0, cmdRead, 1, 0, 4096, nil), true, false)
	f.Add(bytes.Join([][]byte{
		req(cmdFlagFUA, cmdWrite, 1, 512, 8, []byte("abcdefgh")),
		req(0, cmdRead, 2, 0, 1024, nil),
		req(cmdFlagNoHole, cmdWriteZeroes, 3, 0, 4096, nil),
		req(cmdFlagFastZero, cmdWriteZeroes, 4, 0, 4096, nil),
		req(0, cmdTrim, 5, 4096, 4096, nil),
		req(0, cmdFlush, 6, 0, 0, nil),
		req(0, cmdCache, 7, 0, 65536, nil),
		req(cmdFlagReqOne, cmdBlockStatus, 8, 100, 10000, nil),
		req(0, cmdBlockStatus, 9, 0, 1<<20, nil),
		req(cmdFlagDF, cmdRead, 10, 0, 0, nil),
		req(0, cmdDisc, 11, 0, 0, nil),
	}, nil), true, false)
	f.Add(req(0, cmdWrite, 1, 1<<20-1, 2, []byte{1, 2}), false, true)
	f.Add(req(0, cmdRead, 1, ^uint64(0), 0xffffffff, nil), false, false)
	f.Add(req(0, cmdWrite, 1, 0, 40<<20, nil), true, false)
	f.Add(req(0xffff, 0xffff, 0, 0, 0, nil), true, false)
	f.Fuzz(func(t *testing.T, data []byte, structured, readOnly bool) {
		s := fuzzServer()
		name := ""
		if readOnly {
			name = "ro"
		}
		b, _ := s.Exports.Lookup(name)
		exp, err := negotiate(name, b)
		if err != nil {
			t.Fatal(err)
		}
		sess := &session{srv: s, conn: &pipeConn{r: bytes.NewReader(data)}, log: s.logger(),
			structured: structured, metaSet: structured, metaExport: name}
		sess.br = newReader(sess.conn)
		within(t, "transmission on a closed input", func() {
			_ = newTransmission(sess, exp).run(context.Background(), time.Second, 0)
		})
	})
}
