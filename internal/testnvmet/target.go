// Package testnvmet is a TEST-ONLY NVMe over TCP target with one
// controller and one namespace over a simulated Opal drive
// (pkg/sed/sedsim). test/vm connects the guest kernel's NVMe/TCP host to it
// on the loopback address, so that the kernel's own Opal client
// (block/sed-opal.c, IOC_OPAL_* ioctls; cryptsetup 2.7's --hw-opal) and
// encblk's NVMe transport reach the drive through /dev/nvme0n1. It is not
// part of encblk.
//
// It implements what the Linux host uses: the NVMe/TCP PDUs (ICReq/ICResp,
// command and response capsules, C2HData; writes arrive as in-capsule
// data because IOCCSZ covers MDTS, so there is no R2T), the Fabrics
// Connect and Property Get/Set commands, the admin commands Identify, Get
// Log Page, Set/Get Features, Keep Alive, Asynchronous Event Request (held
// until disconnect) and Security Send/Receive, and the NVM commands Read,
// Write and Flush, with the drive's locking ranges enforced.
package testnvmet

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/encblk/encblk/pkg/sed"
	"github.com/encblk/encblk/pkg/sed/sedsim"
)

// PDU types (NVMe/TCP transport specification 1.0, 3.6.1).
const (
	pduICReq      = 0x00
	pduICResp     = 0x01
	pduH2CTermReq = 0x02
	pduC2HTermReq = 0x03
	pduCmd        = 0x04
	pduResp       = 0x05
	pduH2CData    = 0x06
	pduC2HData    = 0x07
	pduR2T        = 0x09

	flagLastPDU = 0x04

	mdts      = 5 // 2^5 * 4 KiB = 128 KiB per command
	maxData   = 4096 << mdts
	queueSize = 128
)

// Status codes (NVMe base 2.0 figure 100ff), SCT in bits 10:8.
const (
	scSuccess             = 0x000
	scInvalidOpcode       = 0x001
	scInvalidField        = 0x002
	scInternal            = 0x006
	scLBARange            = 0x080
	scAccessDenied        = 0x286 // SCT 2h Media and Data Integrity, Access Denied
	scConnectInvalidParam = 0x182
)

// Drive is what the namespace is backed by.
type Drive interface {
	sed.Transport
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	Size() int64
}

// Target is an NVMe/TCP target serving one subsystem.
type Target struct {
	NQN    string
	Serial string
	Drive  Drive
	Log    func(format string, args ...any)
	// Trace, if set, receives every Security Send and Receive payload
	// (trimmed of trailing zeros): how golden exchanges are captured.
	Trace func(send bool, proto sed.SecurityProtocol, spsp uint16, data []byte)

	mu     sync.Mutex
	cc     uint32
	csts   uint32
	conns  map[net.Conn]bool
	closed bool
}

func (t *Target) logf(format string, args ...any) {
	if t.Log != nil {
		t.Log(format, args...)
	}
}

// Serve accepts connections on l until it is closed.
func (t *Target) Serve(l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			t.mu.Lock()
			for c := range t.conns {
				c.Close()
			}
			t.mu.Unlock()
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		t.mu.Lock()
		if t.conns == nil {
			t.conns = map[net.Conn]bool{}
		}
		t.conns[c] = true
		t.mu.Unlock()
		go func() {
			q := &queue{t: t, c: c}
			if err := q.run(); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				t.logf("queue %d: %v", q.qid, err)
			}
			c.Close()
			t.mu.Lock()
			delete(t.conns, c)
			t.mu.Unlock()
		}()
	}
}

// queue is one NVMe/TCP connection: the admin queue or an I/O queue.
type queue struct {
	t      *Target
	c      net.Conn
	qid    uint16
	sqsize uint16
	sqhd   uint16
	wmu    sync.Mutex
}

func (q *queue) run() error {
	var ch [8]byte
	for {
		if _, err := io.ReadFull(q.c, ch[:]); err != nil {
			return err
		}
		typ, hlen, pdo, plen := ch[0], int(ch[2]), int(ch[3]), int(binary.LittleEndian.Uint32(ch[4:]))
		if plen < 8 || plen > 8+64+maxData+64 || hlen < 8 || hlen > plen {
			return fmt.Errorf("bad PDU header % x", ch)
		}
		pdu := make([]byte, plen)
		copy(pdu, ch[:])
		if _, err := io.ReadFull(q.c, pdu[8:]); err != nil {
			return err
		}
		switch typ {
		case pduICReq:
			resp := make([]byte, 128)
			resp[0], resp[2], resp[3] = pduICResp, 128, 0
			binary.LittleEndian.PutUint32(resp[4:], 128)
			// pfv 0, cpda 0, no digests, maxh2cdata
			binary.LittleEndian.PutUint32(resp[12:], maxData)
			if err := q.write(resp); err != nil {
				return err
			}
		case pduCmd:
			if hlen != 72 {
				return fmt.Errorf("command capsule hlen %d", hlen)
			}
			var data []byte
			if pdo != 0 {
				if pdo < hlen || pdo > plen {
					return fmt.Errorf("command capsule pdo %d", pdo)
				}
				data = pdu[pdo:]
			}
			if err := q.command(pdu[8:72], data); err != nil {
				return err
			}
		case pduH2CTermReq:
			return io.EOF
		default:
			return fmt.Errorf("unexpected PDU type 0x%02x", typ)
		}
	}
}

func (q *queue) write(b ...[]byte) error {
	q.wmu.Lock()
	defer q.wmu.Unlock()
	bufs := net.Buffers(b)
	_, err := bufs.WriteTo(q.c)
	return err
}

// respond sends a response capsule with status sc and result dw0/dw1.
func (q *queue) respond(cid uint16, sc uint16, dw0, dw1 uint32) error {
	p := make([]byte, 24)
	p[0], p[2] = pduResp, 24
	binary.LittleEndian.PutUint32(p[4:], 24)
	cqe := p[8:]
	binary.LittleEndian.PutUint32(cqe[0:], dw0)
	binary.LittleEndian.PutUint32(cqe[4:], dw1)
	q.sqhd++
	if q.sqsize > 0 {
		q.sqhd %= q.sqsize + 1
	}
	binary.LittleEndian.PutUint16(cqe[8:], q.sqhd)
	binary.LittleEndian.PutUint16(cqe[10:], q.qid)
	binary.LittleEndian.PutUint16(cqe[12:], cid)
	binary.LittleEndian.PutUint16(cqe[14:], sc<<1)
	return q.write(p)
}

// sendData sends data to the host in one C2HData PDU, then the response.
func (q *queue) sendData(cid uint16, data []byte) error {
	h := make([]byte, 24)
	h[0], h[1], h[2], h[3] = pduC2HData, flagLastPDU, 24, 24
	binary.LittleEndian.PutUint32(h[4:], uint32(24+len(data)))
	binary.LittleEndian.PutUint16(h[8:], cid)
	binary.LittleEndian.PutUint32(h[12:], 0)
	binary.LittleEndian.PutUint32(h[16:], uint32(len(data)))
	if err := q.write(h, data); err != nil {
		return err
	}
	return q.respond(cid, scSuccess, 0, 0)
}

// sqe field accessors.
type sqe []byte

func (s sqe) opcode() byte     { return s[0] }
func (s sqe) cid() uint16      { return binary.LittleEndian.Uint16(s[2:]) }
func (s sqe) nsid() uint32     { return binary.LittleEndian.Uint32(s[4:]) }
func (s sqe) dlen() int        { return int(binary.LittleEndian.Uint32(s[32:])) } // SGL length
func (s sqe) cdw(n int) uint32 { return binary.LittleEndian.Uint32(s[40+4*(n-10):]) }

func (q *queue) command(s sqe, data []byte) error {
	if s.opcode() == 0x7F {
		return q.fabrics(s, data)
	}
	if q.qid == 0 {
		return q.admin(s, data)
	}
	return q.io(s, data)
}

func (q *queue) fabrics(s sqe, data []byte) error {
	fctype := s[4]
	switch fctype {
	case 0x01: // Connect
		q.qid = binary.LittleEndian.Uint16(s[42:])
		q.sqsize = binary.LittleEndian.Uint16(s[44:])
		if len(data) < 1024 {
			return q.respond(s.cid(), scConnectInvalidParam, 0, 0)
		}
		subnqn := cstr(data[256:512])
		if subnqn != q.t.NQN {
			q.t.logf("connect to %q refused (serving %q)", subnqn, q.t.NQN)
			return q.respond(s.cid(), scConnectInvalidParam, 0, 0)
		}
		q.sqhd = 0
		q.t.logf("connect qid %d sqsize %d", q.qid, q.sqsize)
		return q.respond(s.cid(), scSuccess, 1, 0) // controller ID 1
	case 0x04: // Property Get
		off := s.cdw(11)
		var v uint64
		q.t.mu.Lock()
		switch off {
		case 0x00: // CAP: MQES, CQR, TO 5 s, CSS NVM, MPSMIN/MAX 4 KiB
			v = uint64(queueSize-1) | 1<<16 | 10<<24 | 1<<37
		case 0x08: // VS 1.4
			v = 0x00010400
		case 0x14:
			v = uint64(q.t.cc)
		case 0x1C:
			v = uint64(q.t.csts)
		}
		q.t.mu.Unlock()
		return q.respond(s.cid(), scSuccess, uint32(v), uint32(v>>32))
	case 0x00: // Property Set
		off, v := s.cdw(11), s.cdw(12)
		if off == 0x14 {
			q.t.mu.Lock()
			q.t.cc = v
			q.t.csts = v & 1 // RDY follows EN
			if v>>14&3 != 0 {
				q.t.csts |= 2 << 2 // SHST: shutdown complete
			}
			q.t.mu.Unlock()
		}
		return q.respond(s.cid(), scSuccess, 0, 0)
	}
	return q.respond(s.cid(), scInvalidOpcode, 0, 0)
}

func cstr(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

func put(b []byte, off int, s string, n int) {
	for i := 0; i < n; i++ {
		b[off+i] = ' '
	}
	copy(b[off:off+n], s)
}

func (q *queue) admin(s sqe, data []byte) error {
	switch s.opcode() {
	case 0x06: // Identify
		return q.identify(s)
	case 0x02: // Get Log Page: every log is empty
		n := (int(s.cdw(10)>>16) | int(s.cdw(11)&0xFFFF)<<16) + 1
		n *= 4
		if n > maxData {
			return q.respond(s.cid(), scInvalidField, 0, 0)
		}
		return q.sendData(s.cid(), make([]byte, n))
	case 0x09: // Set Features
		switch s.cdw(10) & 0xFF {
		case 0x07: // Number of Queues: grant what was asked, up to 4
			n := min(s.cdw(11)&0xFFFF, 3)
			return q.respond(s.cid(), scSuccess, n|n<<16, 0)
		}
		return q.respond(s.cid(), scSuccess, 0, 0)
	case 0x0A: // Get Features
		return q.respond(s.cid(), scSuccess, 0, 0)
	case 0x18: // Keep Alive
		return q.respond(s.cid(), scSuccess, 0, 0)
	case 0x0C: // Asynchronous Event Request: no events, held
		return nil
	case 0x08: // Abort: not aborted
		return q.respond(s.cid(), scSuccess, 1, 0)
	case 0x81, 0x82: // Security Send, Security Receive
		secp := sed.SecurityProtocol(s.cdw(10) >> 24)
		spsp := uint16(s.cdw(10) >> 8)
		n := int(s.cdw(11))
		if n > maxData {
			return q.respond(s.cid(), scInvalidField, 0, 0)
		}
		ctx := context.Background()
		if s.opcode() == 0x81 {
			if len(data) < n {
				return q.respond(s.cid(), scInvalidField, 0, 0)
			}
			if q.t.Trace != nil {
				q.t.Trace(true, secp, spsp, data[:n])
			}
			if err := q.t.Drive.IFSend(ctx, secp, spsp, data[:n]); err != nil {
				q.t.logf("security send 0x%02x/0x%04x: %v", uint8(secp), spsp, err)
				return q.respond(s.cid(), scInvalidField, 0, 0)
			}
			return q.respond(s.cid(), scSuccess, 0, 0)
		}
		buf := make([]byte, n)
		if err := q.t.Drive.IFRecv(ctx, secp, spsp, buf); err != nil {
			q.t.logf("security receive 0x%02x/0x%04x: %v", uint8(secp), spsp, err)
			return q.respond(s.cid(), scInvalidField, 0, 0)
		}
		if q.t.Trace != nil {
			q.t.Trace(false, secp, spsp, buf)
		}
		return q.sendData(s.cid(), buf)
	}
	q.t.logf("admin opcode 0x%02x not supported", s.opcode())
	return q.respond(s.cid(), scInvalidOpcode, 0, 0)
}

func (q *queue) identify(s sqe) error {
	b := make([]byte, 4096)
	blocks := uint64(q.t.Drive.Size() / 512)
	switch s.cdw(10) & 0xFF {
	case 0x01: // controller
		binary.LittleEndian.PutUint16(b[0:], 0x1b36) // VID
		put(b, 4, q.t.Serial, 20)
		put(b, 24, "encblk sedsim nvme", 40)
		put(b, 64, "1.0", 8)
		b[77] = mdts
		binary.LittleEndian.PutUint16(b[78:], 1)          // CNTLID
		binary.LittleEndian.PutUint32(b[80:], 0x00010400) // VER
		b[111] = 1                                        // CNTRLTYPE: I/O controller
		binary.LittleEndian.PutUint16(b[256:], 1)         // OACS: Security Send/Receive
		b[258], b[259] = 3, 3                             // ACL, AERL
		binary.LittleEndian.PutUint16(b[320:], 1)         // KAS: 100 ms
		b[512], b[513] = 0x66, 0x44                       // SQES, CQES
		binary.LittleEndian.PutUint16(b[514:], queueSize) // MAXCMD
		binary.LittleEndian.PutUint32(b[516:], 1)         // NN
		b[525] = 1                                        // VWC
		binary.LittleEndian.PutUint32(b[536:], 1)         // SGLS
		copy(b[768:1024], q.t.NQN)
		binary.LittleEndian.PutUint32(b[1792:], (64+maxData)/16) // IOCCSZ: all writes in-capsule
		binary.LittleEndian.PutUint32(b[1796:], 1)               // IORCSZ
		b[1803] = 1                                              // MSDBD
	case 0x00: // namespace
		if s.nsid() != 1 {
			return q.respond(s.cid(), scInvalidField|0x4000, 0, 0)
		}
		binary.LittleEndian.PutUint64(b[0:], blocks)
		binary.LittleEndian.PutUint64(b[8:], blocks)
		binary.LittleEndian.PutUint64(b[16:], blocks)
		b[130] = 9 // LBAF0: 512-byte blocks
	case 0x02: // active namespace IDs
		binary.LittleEndian.PutUint32(b[0:], 1)
	case 0x03: // namespace identification descriptors: a UUID
		b[0], b[1] = 0x03, 16
		copy(b[4:20], "encblk-sedsim-ns")
	default:
		return q.respond(s.cid(), scInvalidField, 0, 0)
	}
	return q.sendData(s.cid(), b)
}

func (q *queue) io(s sqe, data []byte) error {
	switch s.opcode() {
	case 0x00: // Flush: writes reach the backing at once
		return q.respond(s.cid(), scSuccess, 0, 0)
	case 0x01, 0x02: // Write, Read
		slba := uint64(s.cdw(10)) | uint64(s.cdw(11))<<32
		n := int64(s.cdw(12)&0xFFFF+1) * 512
		if int64(slba)*512+n > q.t.Drive.Size() {
			return q.respond(s.cid(), scLBARange, 0, 0)
		}
		if n > maxData {
			return q.respond(s.cid(), scInvalidField, 0, 0)
		}
		var err error
		if s.opcode() == 0x01 {
			if int64(len(data)) < n {
				return q.respond(s.cid(), scInvalidField, 0, 0)
			}
			_, err = q.t.Drive.WriteAt(data[:n], int64(slba)*512)
			if err == nil {
				return q.respond(s.cid(), scSuccess, 0, 0)
			}
		} else {
			buf := make([]byte, n)
			if _, err = q.t.Drive.ReadAt(buf, int64(slba)*512); err == nil {
				return q.sendData(s.cid(), buf)
			}
		}
		if errors.Is(err, sedsim.ErrLocked) {
			return q.respond(s.cid(), scAccessDenied, 0, 0)
		}
		q.t.logf("io: %v", err)
		return q.respond(s.cid(), scInternal, 0, 0)
	}
	return q.respond(s.cid(), scInvalidOpcode, 0, 0)
}
