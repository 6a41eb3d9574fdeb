package testnvmet

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/encblk/encblk/pkg/sed"
	"github.com/encblk/encblk/pkg/sed/sedsim"
)

// host is a minimal NVMe/TCP host speaking the PDUs the Linux host sends;
// the kernel itself drives the target in test/vm's sed-nvme-opal.
type host struct {
	t *testing.T
	c net.Conn
}

func (h *host) capsule(sqe []byte, data []byte) {
	h.t.Helper()
	p := make([]byte, 72, 72+len(data))
	p[0], p[2] = pduCmd, 72
	if len(data) > 0 {
		p[3] = 72
	}
	binary.LittleEndian.PutUint32(p[4:], uint32(72+len(data)))
	copy(p[8:], sqe)
	if _, err := h.c.Write(append(p, data...)); err != nil {
		h.t.Fatal(err)
	}
}

// reply reads PDUs up to the response capsule; it returns the status,
// dw0 and any C2H data.
func (h *host) reply() (status uint16, dw0 uint32, data []byte) {
	h.t.Helper()
	for {
		var ch [8]byte
		if _, err := io.ReadFull(h.c, ch[:]); err != nil {
			h.t.Fatal(err)
		}
		rest := make([]byte, binary.LittleEndian.Uint32(ch[4:])-8)
		if _, err := io.ReadFull(h.c, rest); err != nil {
			h.t.Fatal(err)
		}
		switch ch[0] {
		case pduC2HData:
			data = append(data, rest[int(ch[3])-8:]...)
		case pduResp:
			return binary.LittleEndian.Uint16(rest[14:]) >> 1, binary.LittleEndian.Uint32(rest[0:]), data
		default:
			h.t.Fatalf("PDU type 0x%02x", ch[0])
		}
	}
}

func sqeOf(opcode byte, cid uint16, nsid uint32, cdw ...uint32) []byte {
	s := make([]byte, 64)
	s[0] = opcode
	binary.LittleEndian.PutUint16(s[2:], cid)
	binary.LittleEndian.PutUint32(s[4:], nsid)
	for i, v := range cdw {
		binary.LittleEndian.PutUint32(s[40+4*i:], v)
	}
	return s
}

func connect(t *testing.T, addr, nqn string, qid uint16) *host {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	h := &host{t: t, c: c}
	ic := make([]byte, 128)
	ic[0], ic[2] = pduICReq, 128
	binary.LittleEndian.PutUint32(ic[4:], 128)
	if _, err := c.Write(ic); err != nil {
		t.Fatal(err)
	}
	resp := make([]byte, 128)
	if _, err := io.ReadFull(c, resp); err != nil {
		t.Fatal(err)
	}
	if resp[0] != pduICResp || binary.LittleEndian.Uint32(resp[12:]) < 4096 {
		t.Fatalf("ICResp % x", resp[:16])
	}
	s := sqeOf(0x7F, 1, 0)
	s[4] = 0x01 // Connect
	binary.LittleEndian.PutUint16(s[42:], qid)
	binary.LittleEndian.PutUint16(s[44:], 31)
	data := make([]byte, 1024)
	binary.LittleEndian.PutUint16(data[16:], 0xFFFF)
	copy(data[256:], nqn)
	copy(data[512:], "nqn.2014-08.org.nvmexpress:uuid:test")
	h.capsule(s, data)
	if st, dw0, _ := h.reply(); st != 0 || dw0&0xFFFF != 1 {
		t.Fatalf("connect qid %d: status 0x%x cntlid %d", qid, st, dw0)
	}
	return h
}

// TestTarget connects, identifies, reads Level 0 Discovery with Security
// Receive, and writes and reads the namespace on an I/O queue.
func TestTarget(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ns.img")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := sedsim.New(path, sedsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tg := &Target{NQN: "nqn.test:sedsim", Serial: "T", Drive: d}
	done := make(chan error, 1)
	go func() { done <- tg.Serve(l) }()
	defer func() {
		l.Close()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	a := connect(t, l.Addr().String(), "nqn.test:sedsim", 0)
	a.capsule(sqeOf(0x06, 2, 0, 0x01), nil) // Identify controller
	st, _, id := a.reply()
	if st != 0 || len(id) != 4096 || binary.LittleEndian.Uint16(id[256:])&1 == 0 || id[77] != mdts {
		t.Fatalf("identify controller: status 0x%x, %d bytes", st, len(id))
	}
	a.capsule(sqeOf(0x82, 3, 0, 0x01<<24|0x0001<<8, 2048), nil) // Security Receive: Level 0 Discovery
	st, _, disc := a.reply()
	if st != 0 {
		t.Fatalf("security receive: status 0x%x", st)
	}
	d0, err := sed.ParseDiscovery(disc)
	if err != nil || d0.OpalV2 == nil {
		t.Fatalf("discovery: %+v %v", d0, err)
	}
	a.capsule(sqeOf(0x99, 4, 0), nil)
	if st, _, _ := a.reply(); st != scInvalidOpcode {
		t.Fatalf("unknown admin opcode: status 0x%x", st)
	}

	q := connect(t, l.Addr().String(), "nqn.test:sedsim", 1)
	data := bytes.Repeat([]byte("nvme/tcp"), 512)
	q.capsule(sqeOf(0x01, 5, 1, 8, 0, 7), data) // Write LBA 8, 8 blocks, in-capsule
	if st, _, _ := q.reply(); st != 0 {
		t.Fatalf("write: status 0x%x", st)
	}
	q.capsule(sqeOf(0x02, 6, 1, 8, 0, 7), nil)
	if st, _, got := q.reply(); st != 0 || !bytes.Equal(got, data) {
		t.Fatalf("read: status 0x%x, %d bytes", st, len(got))
	}
	q.capsule(sqeOf(0x02, 7, 1, 2047, 0, 7), nil)
	if st, _, _ := q.reply(); st != scLBARange {
		t.Fatalf("read past the end: status 0x%x", st)
	}
}

// byteConn feeds a fixed byte stream to a queue and discards its answers.
type byteConn struct {
	net.Conn
	r *bytes.Reader
}

func (c byteConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c byteConn) Write(p []byte) (int, error) { return len(p), nil }
func (c byteConn) Close() error                { return nil }

// FuzzQueue: no byte stream from a host makes the target panic or read
// beyond what a PDU header announces.
func FuzzQueue(f *testing.F) {
	ic := make([]byte, 128)
	ic[0], ic[2] = pduICReq, 128
	binary.LittleEndian.PutUint32(ic[4:], 128)
	capsule := func(sqe, data []byte) []byte {
		p := make([]byte, 72, 72+len(data))
		p[0], p[2] = pduCmd, 72
		if len(data) > 0 {
			p[3] = 72
		}
		binary.LittleEndian.PutUint32(p[4:], uint32(72+len(data)))
		copy(p[8:], sqe)
		return append(p, data...)
	}
	conn := sqeOf(0x7F, 1, 0)
	conn[4] = 0x01
	cdata := make([]byte, 1024)
	copy(cdata[256:], "nqn.test:sedsim")
	f.Add(append(append([]byte{}, ic...), capsule(conn, cdata)...))
	f.Add(append(append([]byte{}, ic...), capsule(sqeOf(0x06, 2, 0, 0x01), nil)...))
	f.Add(capsule(sqeOf(0x82, 3, 0, 0x01<<24|0x0001<<8, 2048), nil))
	f.Add(capsule(sqeOf(0x81, 3, 0, 0x01<<24|0x07FE<<8, 512), make([]byte, 512)))
	path := filepath.Join(f.TempDir(), "ns.img")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o600); err != nil {
		f.Fatal(err)
	}
	d, err := sedsim.New(path, sedsim.Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer d.Close()
	tg := &Target{NQN: "nqn.test:sedsim", Drive: d}
	f.Fuzz(func(t *testing.T, stream []byte) {
		q := &queue{t: tg, c: byteConn{r: bytes.NewReader(stream)}}
		q.run()
		// After a Connect to an I/O queue, the same bytes run as I/O.
		q = &queue{t: tg, c: byteConn{r: bytes.NewReader(stream)}, qid: 1}
		q.run()
	})
}
