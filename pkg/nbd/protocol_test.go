package nbd_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/encblk/encblk/pkg/blockdev"
	"github.com/encblk/encblk/pkg/nbd"
)

// optionCase is one option-phase exchange and what must come of it.
func TestOptionPhase(t *testing.T) {
	t.Parallel()
	b, _ := newFileExport(t, 1<<20, blockdev.Info{})
	s := startServer(t, nbd.StaticExports{"": {Device: b, Description: "disk"}, "two": {Device: b, Description: "disk"}}, nil)

	tests := []struct {
		name string
		run  func(r *rawClient)
	}{
		{"unknown option then usable", func(r *rawClient) {
			r.expectOpt(99, []byte("junk"), tRepErrUnsup)
			r.start("", false)
		}},
		{"LIST with data refused", func(r *rawClient) {
			r.expectOpt(tOptList, []byte{1}, tRepErrInvalid)
		}},
		{"LIST names every export", func(r *rawClient) {
			got := r.expectOpt(tOptList, nil, tRepAck)
			if len(got) != 2 || string(got[0][4:4+binary.BigEndian.Uint32(got[0])]) != "" ||
				string(got[1][4:7]) != "two" || string(got[1][7:]) != "disk" {
				t.Errorf("LIST replies %q", got)
			}
		}},
		{"GO unknown export", func(r *rawClient) {
			r.expectOpt(tOptGo, goData("nope"), tRepErrUnknown)
		}},
		{"GO name length beyond data", func(r *rawClient) {
			d := goData("abc")
			binary.BigEndian.PutUint32(d, 1000)
			r.expectOpt(tOptGo, d, tRepErrInvalid)
		}},
		{"GO info count mismatch", func(r *rawClient) {
			d := goData("", 1, 2)
			r.expectOpt(tOptGo, d[:len(d)-1], tRepErrInvalid)
		}},
		{"INFO name and description", func(r *rawClient) {
			got := r.expectOpt(tOptInfo, goData("two", 1, 2, 3), tRepAck)
			seen := map[uint16]string{}
			for _, d := range got {
				seen[binary.BigEndian.Uint16(d)] = string(d[2:])
			}
			if seen[1] != "two" || seen[2] != "disk" || len(seen[3]) != 12 || len(seen[0]) != 10 {
				t.Errorf("INFO replies %v", seen)
			}
		}},
		{"STRUCTURED_REPLY twice", func(r *rawClient) {
			r.expectOpt(tOptStructured, nil, tRepAck)
			r.expectOpt(tOptStructured, nil, tRepErrInvalid)
		}},
		{"SET_META_CONTEXT needs structured replies", func(r *rawClient) {
			r.expectOpt(tOptSetMeta, metaData("", "base:allocation"), tRepErrInvalid)
		}},
		{"meta context queries", func(r *rawClient) {
			r.expectOpt(tOptStructured, nil, tRepAck)
			if got := r.expectOpt(tOptListMeta, metaData(""), tRepAck); len(got) != 1 || string(got[0][4:]) != "base:allocation" {
				t.Errorf("LIST_META_CONTEXT all: %q", got)
			}
			if got := r.expectOpt(tOptListMeta, metaData("", "base:"), tRepAck); len(got) != 1 {
				t.Errorf("LIST_META_CONTEXT base: %q", got)
			}
			if got := r.expectOpt(tOptSetMeta, metaData("", "base:", "x-other:thing"), tRepAck); len(got) != 0 {
				t.Errorf("SET_META_CONTEXT base: selected %q", got)
			}
			if got := r.expectOpt(tOptSetMeta, metaData("", "base:allocation"), tRepAck); len(got) != 1 || binary.BigEndian.Uint32(got[0]) == 0 {
				t.Errorf("SET_META_CONTEXT base:allocation: %q", got)
			}
			bad := metaData("", "base:allocation")
			r.expectOpt(tOptSetMeta, bad[:len(bad)-2], tRepErrInvalid)
			r.expectOpt(tOptSetMeta, metaData("nope", "base:allocation"), tRepErrUnknown)
		}},
		{"STARTTLS without TLS configured", func(r *rawClient) {
			r.expectOpt(tOptStartTLS, nil, tRepErrUnsup)
			r.start("", false)
		}},
		{"oversized option", func(r *rawClient) {
			b := binary.BigEndian.AppendUint64(nil, 0x49484156454F5054)
			b = binary.BigEndian.AppendUint32(b, tOptInfo)
			b = binary.BigEndian.AppendUint32(b, 0xffffffff)
			r.write(b)
			if _, typ, _ := r.optReply(); typ != tRepErrTooBig {
				t.Errorf("reply %#x, want NBD_REP_ERR_TOO_BIG", typ)
			}
			r.expectClosed()
		}},
		{"garbage option magic", func(r *rawClient) {
			r.write([]byte("GET / HTTP/1.1\r\n\r\n"))
			r.expectClosed()
		}},
		{"ABORT", func(r *rawClient) {
			r.expectOpt(tOptAbort, nil, tRepAck)
			r.expectClosed()
		}},
		{"EXPORT_NAME unknown hangs up", func(r *rawClient) {
			r.sendOpt(tOptExportName, []byte("nope"))
			r.expectClosed()
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRawClient(t, s, 3)
			r.t = t
			tc.run(r)
		})
	}

	t.Run("EXPORT_NAME zeroes", func(t *testing.T) {
		for _, flags := range []uint32{1, 3} {
			r := newRawClient(t, s, flags)
			r.sendOpt(tOptExportName, nil)
			want := 134
			if flags&2 != 0 {
				want = 10
			}
			got := make([]byte, want)
			r.read(got)
			if binary.BigEndian.Uint64(got) != 1<<20 {
				t.Errorf("size % x", got[:8])
			}
			r.request(0, tCmdRead, 7, 0, 512, nil)
			if c, e, _ := r.simpleReply(512); c != 7 || e != 0 {
				t.Errorf("read after EXPORT_NAME: cookie %d errno %d", c, e)
			}
		}
	})
	t.Run("unknown client flags", func(t *testing.T) {
		r := newRawClient(t, s, 1|8)
		r.expectClosed()
	})
	t.Run("oldstyle client", func(t *testing.T) {
		r := newRawClient(t, s, 0)
		r.expectClosed()
	})
}

func TestRequireTLSRefusesOptions(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	cfg, err := nbd.TLSConfig(pki.serverCert, pki.serverKey, "")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := newFileExport(t, 1<<20, blockdev.Info{})
	s := startServer(t, nbd.StaticExports{"": {Device: b}}, func(srv *nbd.Server) { srv.TLS, srv.RequireTLS = cfg, true })
	r := newRawClient(t, s, 1)
	for _, opt := range []uint32{tOptList, tOptInfo, tOptGo, tOptStructured, 99} {
		r.expectOpt(opt, goData(""), tRepErrTLSReqd)
	}
	r.sendOpt(tOptExportName, nil)
	r.expectClosed()
}

// TestTransmission drives every command with simple and structured replies
// and checks results and the spec's errors.
func TestTransmission(t *testing.T) {
	t.Parallel()
	const size = 64 << 20 // sparse; larger than the maximum payload
	b, path := newFileExport(t, size, allCaps())
	exp := fullExport(b)
	exp.MinBlock = 512
	ro, _ := newFileExport(t, 1<<20, blockdev.Info{ReadOnly: true})
	s := startServer(t, nbd.StaticExports{"": exp, "ro": {Device: ro}}, nil)

	for _, structured := range []bool{false, true} {
		r := newRawClient(t, s, 3)
		gotSize, flags := r.start("", structured)
		if gotSize != size {
			t.Fatalf("size %d", gotSize)
		}
		wantFlags := uint16(1 | 4 | 8 | 32 | 64 | 256 | 1024 | 2048)
		if structured {
			wantFlags |= 128
		}
		if flags != wantFlags {
			t.Errorf("transmission flags %#x, want %#x", flags, wantFlags)
		}
		reply := func(n int) chunk {
			t.Helper()
			if !structured {
				c, e, d := r.simpleReply(n)
				return chunk{typ: 0xffff, cookie: c, payload: append(binary.BigEndian.AppendUint32(nil, e), d...)}
			}
			return r.anyReply()
		}
		data := make([]byte, 64<<10)
		_, _ = rand.Read(data)

		// Write then read back, with FUA.
		r.request(tFlagFUA, tCmdWrite, 1, 1<<20, uint32(len(data)), data)
		if c := reply(0); c.cookie != 1 || c.errno() != 0 {
			t.Fatalf("write: %+v", c)
		}
		r.request(tFlagDF*b2u(structured), tCmdRead, 2, 1<<20, uint32(len(data)), nil)
		c := reply(len(data))
		var got []byte
		if structured {
			if c.typ != 1 || c.flags&1 == 0 || binary.BigEndian.Uint64(c.payload) != 1<<20 {
				t.Fatalf("read chunk type %d flags %d", c.typ, c.flags)
			}
			got = c.payload[8:]
		} else {
			got = c.payload[4:]
		}
		if !bytes.Equal(got, data) {
			t.Fatal("read back differs")
		}

		// Errors, each followed by a request that must still work.
		errCases := []struct {
			name       string
			flags, typ uint16
			off        uint64
			length     uint32
			payload    []byte
			want       uint32
		}{
			{"read past end", 0, tCmdRead, size - 512, 1024, nil, tEINVAL},
			{"read offset overflow", 0, tCmdRead, ^uint64(0) - 511, 1024, nil, tEINVAL},
			{"write past end", 0, tCmdWrite, size, 512, make([]byte, 512), tENOSPC},
			{"zero past end", 0, tCmdWriteZeroes, size, 512, nil, tENOSPC},
			{"trim past end", 0, tCmdTrim, size, 512, nil, tEINVAL},
			{"unaligned read", 0, tCmdRead, 100, 512, nil, tEINVAL},
			{"unaligned write", 0, tCmdWrite, 0, 100, make([]byte, 100), tEINVAL},
			{"oversize read", 0, tCmdRead, 0, 33 << 20, nil, tEINVAL},
			{"oversize write skipped", 0, tCmdWrite, 0, 33 << 20, make([]byte, 33<<20), tEINVAL},
			{"unknown command", 0, 42, 0, 0, nil, tEINVAL},
			{"unknown flag", 1 << 9, tCmdRead, 0, 512, nil, tEINVAL},
			{"NO_HOLE on read", tFlagNoHole, tCmdRead, 0, 512, nil, tEINVAL},
			{"REQ_ONE on read", tFlagReqOne, tCmdRead, 0, 512, nil, tEINVAL},
			{"flush with offset", 0, tCmdFlush, 512, 0, nil, tEINVAL},
		}
		if !structured {
			errCases = append(errCases, []struct {
				name       string
				flags, typ uint16
				off        uint64
				length     uint32
				payload    []byte
				want       uint32
			}{
				{"DF without structured replies", tFlagDF, tCmdRead, 0, 512, nil, tEINVAL},
				{"block status without meta context", 0, tCmdBlockStatus, 0, 512, nil, tEINVAL},
			}...)
		}
		for i, ec := range errCases {
			cookie := uint64(100 + i)
			r.request(ec.flags, ec.typ, cookie, ec.off, ec.length, ec.payload)
			c := reply(0)
			if c.cookie != cookie || c.errno() != ec.want {
				t.Errorf("structured=%v %s: cookie %d errno %d, want %d", structured, ec.name, c.cookie, c.errno(), ec.want)
			}
			if structured && (c.typ != 0x8001 || c.flags&1 == 0) {
				t.Errorf("%s: structured error reply type %#x flags %d", ec.name, c.typ, c.flags)
			}
		}

		// Zeroing, trimming, flushing, caching.
		r.request(tFlagNoHole, tCmdWriteZeroes, 3, 1<<20, 4096, nil)
		r.request(tFlagFastZero, tCmdWriteZeroes, 4, 1<<20+4096, 4096, nil)
		r.request(tFlagFUA, tCmdTrim, 5, 1<<20+8192, 4096, nil)
		r.request(0, tCmdFlush, 6, 0, 0, nil)
		r.request(0, tCmdCache, 7, 0, 1<<20, nil)
		seen := map[uint64]bool{}
		for range 5 {
			c := reply(0)
			if e := c.errno(); e != 0 && !(c.cookie == 4 && e == tENOTSUP) {
				t.Errorf("cookie %d: errno %d", c.cookie, e)
			}
			seen[c.cookie] = true
		}
		if len(seen) != 5 {
			t.Errorf("replies for cookies %v", seen)
		}
		r.request(0, tCmdRead, 8, 1<<20, 3*4096, nil)
		c = reply(3 * 4096)
		got = c.payload[4:]
		if structured {
			got = c.payload[8:]
		}
		if !bytes.Equal(got[:8192], make([]byte, 8192)) {
			t.Error("zeroed range does not read back as zeros")
		}

		if structured {
			// Block status: the whole export, and REQ_ONE.
			r.request(0, tCmdBlockStatus, 9, 0, size, nil)
			c = r.anyReply()
			if c.typ != 5 || c.flags&1 == 0 || (len(c.payload)-4)%8 != 0 || len(c.payload) < 12 {
				t.Fatalf("block status chunk %+v", c)
			}
			var sum uint64
			for p := c.payload[4:]; len(p) > 0; p = p[8:] {
				sum += uint64(binary.BigEndian.Uint32(p))
			}
			if sum != size {
				t.Errorf("block status covers %d bytes, want %d", sum, size)
			}
			r.request(tFlagReqOne, tCmdBlockStatus, 10, 0, 512, nil)
			c = r.anyReply()
			if len(c.payload) != 12 || binary.BigEndian.Uint32(c.payload[4:]) != 512 ||
				binary.BigEndian.Uint32(c.payload[8:]) != 3 {
				t.Errorf("REQ_ONE block status of a hole: % x", c.payload)
			}
		}
		r.request(0, tCmdDisc, 11, 0, 0, nil)
		r.expectClosed()
	}

	// Durability of what was written, seen through the file.
	f, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(f[1<<20+12288:1<<20+16384], make([]byte, 4096)) {
		t.Error("written data not in the file")
	}

	// Read-only export: writes are EPERM and their payload skipped.
	r := newRawClient(t, s, 3)
	if _, flags := r.start("ro", false); flags != 1|2 {
		t.Errorf("read-only flags %#x", flags)
	}
	r.request(0, tCmdWrite, 1, 0, 4096, make([]byte, 4096))
	r.request(0, tCmdTrim, 2, 0, 4096, nil)
	r.request(0, tCmdWriteZeroes, 3, 0, 4096, nil)
	r.request(0, tCmdRead, 4, 0, 4096, nil)
	for i := range 3 {
		if c, e, _ := r.simpleReply(0); c != uint64(i+1) || e != tEPERM {
			t.Errorf("read-only cookie %d: errno %d", c, e)
		}
	}
	if c, e, _ := r.simpleReply(4096); c != 4 || e != 0 {
		t.Errorf("read on read-only: cookie %d errno %d", c, e)
	}
}

func b2u(b bool) uint16 {
	if b {
		return 1
	}
	return 0
}

// TestOutOfOrder keeps many requests in flight on one connection and
// checks every reply matches its request.
func TestOutOfOrder(t *testing.T) {
	t.Parallel()
	const size = 8 << 20
	b, path := newFileExport(t, size, allCaps())
	content := make([]byte, size)
	_, _ = rand.Read(content)
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, nbd.StaticExports{"": fullExport(b)}, func(srv *nbd.Server) {
		srv.MaxInFlightRequests = 16
		srv.MaxInFlightBytes = 256 << 10
	})
	r := newRawClient(t, s, 3)
	r.start("", true)
	const n = 200
	lens := map[uint64]uint32{}
	var batch []byte
	for i := range n {
		l := uint32(4096 * (1 + i%64))
		off := uint64(i) * 32768 % (size - 256<<10)
		lens[uint64(i)] = l
		batch = appendRequest(batch, 0, tCmdRead, uint64(i), off, l)
	}
	go func() { _, _ = r.c.Write(batch) }() // more than the budget: backpressure
	for range n {
		c := r.anyReply()
		l, ok := lens[c.cookie]
		if !ok {
			t.Fatalf("reply for unknown or repeated cookie %d", c.cookie)
		}
		delete(lens, c.cookie)
		off := binary.BigEndian.Uint64(c.payload)
		if c.typ != 1 || uint32(len(c.payload)-8) != l || !bytes.Equal(c.payload[8:], content[off:off+uint64(l)]) {
			t.Fatalf("cookie %d: bad reply", c.cookie)
		}
	}
}

// TestPipelinedWrites sends more writes than the in-flight budget in one
// burst to a device with serial writes (run on the reader, replies held),
// mixed with flushes and FUA writes (run by workers) and large writes
// (inlined only because the writes are serial), and checks
// every one is answered and the data landed.
//
// It runs on a blocking socket and on the netpoller (see
// Server.BlockingConns).
func TestPipelinedWrites(t *testing.T) {
	t.Parallel()
	inBothModes(t, testPipelinedWrites)
}

func testPipelinedWrites(t *testing.T, blockingConns int) {
	const size = 80 << 20 // sparse
	info := allCaps()
	info.SerialWrites = true
	b, path := newFileExport(t, size, info)
	s := startServer(t, nbd.StaticExports{"": fullExport(b)}, func(srv *nbd.Server) {
		srv.MaxInFlightRequests = 4
		srv.MaxInFlightBytes = 512 << 10
		srv.BlockingConns = blockingConns
	})
	r := newRawClient(t, s, 3)
	r.start("", true)
	const n = 300
	want := make([]byte, size)
	var batch []byte
	for i := range n {
		typ, flags, l := uint16(tCmdWrite), uint16(0), uint32(4096)
		switch i % 50 {
		case 7:
			l = 256 << 10 // larger than the reader runs for other devices
		case 13:
			flags = 1 // FUA
		case 29:
			typ, l = tCmdFlush, 0
		}
		off := uint64(i) * 256 << 10 // no two writes overlap
		if typ == tCmdFlush {
			off = 0
		}
		batch = appendRequest(batch, flags, typ, uint64(i), off, l)
		if typ == tCmdWrite {
			p := make([]byte, l)
			_, _ = rand.Read(p)
			copy(want[off:], p)
			batch = append(batch, p...)
		}
	}
	go func() { _, _ = r.c.Write(batch) }()
	seen := map[uint64]bool{}
	for range n {
		c := r.anyReply()
		if seen[c.cookie] || c.cookie >= n {
			t.Fatalf("reply for unknown or repeated cookie %d", c.cookie)
		}
		seen[c.cookie] = true
		if e := c.errno(); e != 0 {
			t.Fatalf("cookie %d: errno %d", c.cookie, e)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("file content differs from what was written")
	}
}

// TestHeldReplyBeforeRefusedPayload: the reply to a read the reader ran
// itself is sent before the reader waits for the payload of a write it
// refuses, so a client that sends that payload only after the read's
// answer is not left waiting (the reader held the reply while it skipped
// the payload).
func TestHeldReplyBeforeRefusedPayload(t *testing.T) {
	t.Parallel()
	const size = 1 << 20
	b, _ := newFileExport(t, size, allCaps())
	s := startServer(t, nbd.StaticExports{"": fullExport(b)}, nil)
	r := newRawClient(t, s, 3)
	r.start("", false)
	// One write: a small read (run inline, its reply held while more is
	// buffered) and the header of a write past the end, without payload.
	burst := appendRequest(nil, 0, tCmdRead, 1, 0, 4096)
	burst = appendRequest(burst, 0, tCmdWrite, 2, size, 4096)
	r.write(burst)
	_ = r.c.SetReadDeadline(time.Now().Add(10 * time.Second)) // hang detector only
	if cookie, errno, _ := r.simpleReply(4096); cookie != 1 || errno != 0 {
		t.Fatalf("first reply: cookie %d errno %d, want the read's (1, 0)", cookie, errno)
	}
	r.write(make([]byte, 4096))
	if cookie, errno, _ := r.simpleReply(0); cookie != 2 || errno != tENOSPC {
		t.Fatalf("second reply: cookie %d errno %d, want the write's (2, ENOSPC)", cookie, errno)
	}
}

// gateDevice makes the reader's inline write wait for the test while a
// worker's FUA write completes.
type gateDevice struct {
	*fileDevice
	writing chan struct{} // closed when the inline write has started
	release chan struct{} // the inline write waits for it
}

func (b *gateDevice) Info() blockdev.Info {
	i := b.fileDevice.Info()
	i.SerialWrites = true
	return i
}

func (b *gateDevice) WriteAt(ctx context.Context, p []byte, off int64, fua bool) error {
	if fua {
		// The worker's (FUA writes never run on the reader): it completes
		// only once the inline write is running.
		<-b.writing
	} else {
		close(b.writing)
		<-b.release
	}
	return b.fileDevice.WriteAt(ctx, p, off, fua)
}

// TestWorkerReplyNotHeld: a worker's reply goes out while the reader is
// busy with an inline request; it does not wait for the reader. On a
// blocking socket and on the netpoller.
func TestWorkerReplyNotHeld(t *testing.T) {
	t.Parallel()
	inBothModes(t, func(t *testing.T, blockingConns int) {
		f, _ := newFileExport(t, 1<<20, allCaps())
		b := &gateDevice{fileDevice: f, writing: make(chan struct{}), release: make(chan struct{})}
		s := startServer(t, nbd.StaticExports{"": fullExport(b)}, func(srv *nbd.Server) { srv.BlockingConns = blockingConns })
		var once sync.Once
		release := func() { once.Do(func() { close(b.release) }) }
		t.Cleanup(release) // before the server stops
		r := newRawClient(t, s, 3)
		r.start("", true)
		// A FUA write (a worker's) that completes only once the plain
		// 4 KiB write (inline, serial writes) is running.
		req := appendRequest(nil, tFlagFUA, tCmdWrite, 1, 0, 4096)
		req = append(req, make([]byte, 4096)...)
		req = appendRequest(req, 0, tCmdWrite, 2, 512<<10, 4096)
		r.write(append(req, make([]byte, 4096)...))
		_ = r.c.SetReadDeadline(time.Now().Add(20 * time.Second)) // hang detector
		if c := r.anyReply(); c.cookie != 1 || c.errno() != 0 {
			t.Fatalf("first reply: cookie %d errno %d, want the FUA write's", c.cookie, c.errno())
		}
		release()
		if c := r.anyReply(); c.cookie != 2 || c.errno() != 0 {
			t.Fatalf("second reply: cookie %d errno %d, want the write's", c.cookie, c.errno())
		}
	})
}

// TestHostileNoLeak runs clients that misbehave in every way we know, then
// checks the server is still answering and, once stopped, left no
// goroutine behind. Not parallel: it counts goroutines.
func TestHostileNoLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	// Registered first, so it runs last: after the server has stopped.
	t.Cleanup(func() {
		deadline := time.Now().Add(30 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			t.Errorf("%d goroutines before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
		}
	})
	func() {
		b, _ := newFileExport(t, 1<<20, allCaps())
		ctxServer := startServer(t, nbd.StaticExports{"": fullExport(b)}, nil)
		s := ctxServer
		hostile := []func(r *rawClient){
			// vanish mid-handshake
			func(r *rawClient) { r.write([]byte("IHAVE")); _ = r.c.Close() },
			// vanish mid-option data
			func(r *rawClient) {
				b := binary.BigEndian.AppendUint64(nil, 0x49484156454F5054)
				b = binary.BigEndian.AppendUint32(b, tOptGo)
				b = binary.BigEndian.AppendUint32(b, 100)
				r.write(b)
				_ = r.c.Close()
			},
			// vanish mid-write payload
			func(r *rawClient) {
				r.start("", false)
				r.request(0, tCmdWrite, 1, 0, 65536, make([]byte, 1000))
				_ = r.c.Close()
			},
			// vanish with reads in flight, never reading replies
			func(r *rawClient) {
				r.start("", true)
				for i := range 64 {
					r.request(0, tCmdRead, uint64(i), 0, 65536, nil)
				}
				_ = r.c.Close()
			},
			// garbage request magic
			func(r *rawClient) {
				r.start("", false)
				r.write(bytes.Repeat([]byte{0xff}, 28))
				r.expectClosed()
			},
			// write length no server could skip
			func(r *rawClient) {
				r.start("", false)
				r.request(0, tCmdWrite, 1, 0, 0xffffffff, nil)
				r.expectClosed()
			},
			// half a request header
			func(r *rawClient) {
				r.start("", false)
				r.write([]byte{0x25, 0x60, 0x95, 0x13, 0})
				_ = r.c.Close()
			},
		}
		for _, h := range hostile {
			h(newRawClient(t, s, 3))
		}
		// Still serving.
		r := newRawClient(t, s, 3)
		r.start("", false)
		r.request(0, tCmdRead, 1, 0, 512, nil)
		if _, e, _ := r.simpleReply(512); e != 0 {
			t.Fatalf("server broken after hostile clients: errno %d", e)
		}
		r.request(0, tCmdDisc, 2, 0, 0, nil)
		r.expectClosed()
	}()
}
