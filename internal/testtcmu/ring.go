// Package testtcmu is a TEST-ONLY SCSI disk in userspace: a handler for the
// Linux kernel's target_core_user (TCMU) backstore, configured through
// configfs and exported to the same kernel as a SCSI disk by tcm_loop, with
// no tcmu-runner. test/vm uses it to present pkg/sed/sedsim as /dev/sdX so
// that encblk, sedutil-cli and hdparm reach the simulated drive through the
// kernel's real SCSI stack and SG_IO. It is not part of encblk.
//
// The ring protocol is the one of <linux/target_core_user.h>: the UIO
// device's map 0 holds a mailbox, a command ring and a data area; the
// kernel appends command entries at cmd_head and signals the UIO device;
// the handler answers each entry in place, advances cmd_tail and writes
// to the UIO device. The packed structures are read at byte offsets whose
// values TestLayout checks against the uapi header with gcc.
package testtcmu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Byte offsets in struct tcmu_mailbox and struct tcmu_cmd_entry (packed;
// checked by TestLayout against <linux/target_core_user.h>).
const (
	mbVersion  = 0  // __u16 version
	mbFlags    = 2  // __u16 flags
	mbCmdrOff  = 4  // __u32 cmdr_off
	mbCmdrSize = 8  // __u32 cmdr_size
	mbCmdHead  = 12 // __u32 cmd_head (kernel)
	mbCmdTail  = 64 // __u32 cmd_tail (user, own cache line)

	entLenOp    = 0  // hdr.len_op: length | opcode (low 3 bits)
	entCmdID    = 4  // hdr.cmd_id
	entKflags   = 6  // hdr.kflags
	entUflags   = 7  // hdr.uflags
	entIovCnt   = 8  // req.iov_cnt
	entBidiCnt  = 12 // req.iov_bidi_cnt
	entDifCnt   = 16 // req.iov_dif_cnt
	entCdbOff   = 24 // req.cdb_off (offset in the map; the union is 8-aligned)
	entIov      = 48 // req.iov[]: struct iovec {base (offset in the map), len}
	entStatus   = 8  // rsp.scsi_status
	entReadLen  = 12 // rsp.read_len
	entSense    = 16 // rsp.sense_buffer[96]
	iovecSize   = 16
	senseBufLen = 96

	opPad  = 0
	opCmd  = 1
	opTmr  = 2
	opMask = 7

	uflagUnknownOp = 0x1
	uflagReadLen   = 0x2

	capReadLen = 1 << 1 // TCMU_MAILBOX_FLAG_CAP_READ_LEN

	mailboxVersion = 2
)

// Response is a command's outcome: SCSI status, sense data for CHECK
// CONDITION, and how many bytes of data-in are valid.
type Response struct {
	Status  uint8
	Sense   []byte
	ReadLen int // data-in bytes returned; with CHECK CONDITION, >0 still transfers them
}

// Handler executes one SCSI command. data is the command's data buffer
// (data-out: what the initiator sent; data-in: to be filled, its length
// the allocation length the kernel gave).
type Handler interface {
	Execute(cdb []byte, data []byte) Response
}

// Ring is an open TCMU UIO device.
type Ring struct {
	f   *os.File
	mem []byte
}

// OpenUIO finds the UIO device whose name is tcm-user/<hba>/<dev>/<config>
// and maps its ring.
func OpenUIO(dev, config string) (*Ring, error) {
	ents, err := filepath.Glob("/sys/class/uio/uio*")
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		name, err := os.ReadFile(filepath.Join(e, "name"))
		if err != nil {
			continue
		}
		parts := strings.SplitN(strings.TrimSpace(string(name)), "/", 4)
		if len(parts) != 4 || parts[0] != "tcm-user" || parts[2] != dev || parts[3] != config {
			continue
		}
		sz, err := os.ReadFile(filepath.Join(e, "maps/map0/size"))
		if err != nil {
			return nil, fmt.Errorf("testtcmu: %w", err)
		}
		size, err := strconv.ParseUint(strings.TrimSpace(string(sz)), 0, 64)
		if err != nil || size < 4096 {
			return nil, fmt.Errorf("testtcmu: bad map size %q", sz)
		}
		f, err := os.OpenFile(filepath.Join("/dev", filepath.Base(e)), os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("testtcmu: %w", err)
		}
		mem, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("testtcmu: mmap %s: %w", f.Name(), err)
		}
		r := &Ring{f: f, mem: mem}
		if v := binary.LittleEndian.Uint16(mem[mbVersion:]); v != mailboxVersion {
			r.Close()
			return nil, fmt.Errorf("testtcmu: mailbox version %d, want 2", v)
		}
		return r, nil
	}
	return nil, fmt.Errorf("testtcmu: no UIO device for tcm-user/*/%s/%s", dev, config)
}

// Close unmaps the ring and closes the UIO device.
func (r *Ring) Close() error {
	unix.Munmap(r.mem)
	return r.f.Close()
}

func (r *Ring) u32(off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&r.mem[off])) }

// Serve answers commands until stop is closed or the device goes away.
func (r *Ring) Serve(h Handler, stop <-chan struct{}) error {
	var ev [4]byte
	for {
		if err := r.process(h); err != nil {
			return err
		}
		select {
		case <-stop:
			return nil
		default:
		}
		// UIO read blocks until the kernel's next notification.
		if _, err := r.f.Read(ev[:]); err != nil {
			if errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("testtcmu: read UIO: %w", err)
		}
	}
}

// process answers every entry between cmd_tail and cmd_head.
func (r *Ring) process(h Handler) error {
	cmdrOff := binary.LittleEndian.Uint32(r.mem[mbCmdrOff:])
	cmdrSize := binary.LittleEndian.Uint32(r.mem[mbCmdrSize:])
	if uint64(cmdrOff)+uint64(cmdrSize) > uint64(len(r.mem)) || cmdrSize == 0 {
		return fmt.Errorf("testtcmu: command ring %d+%d outside the %d-byte map", cmdrOff, cmdrSize, len(r.mem))
	}
	readLen := binary.LittleEndian.Uint16(r.mem[mbFlags:])&capReadLen != 0
	did := false
	for {
		head := atomic.LoadUint32(r.u32(mbCmdHead))
		tail := atomic.LoadUint32(r.u32(mbCmdTail))
		if head == tail {
			break
		}
		e := r.mem[cmdrOff+tail:]
		lenOp := binary.LittleEndian.Uint32(e[entLenOp:])
		n := lenOp &^ opMask
		if n == 0 || n > cmdrSize {
			return fmt.Errorf("testtcmu: entry length %d at ring offset %d", n, tail)
		}
		if lenOp&opMask == opCmd {
			r.command(h, e, readLen)
		}
		// PAD and TMR entries are skipped; TMRs need no answer.
		atomic.StoreUint32(r.u32(mbCmdTail), (tail+n)%cmdrSize)
		did = true
	}
	if did {
		// Tell the kernel that entries were completed.
		var b [4]byte
		if _, err := r.f.Write(b[:]); err != nil {
			return fmt.Errorf("testtcmu: write UIO: %w", err)
		}
	}
	return nil
}

// command runs one CMD entry and writes its response over it.
func (r *Ring) command(h Handler, e []byte, readLenCap bool) {
	iovCnt := binary.LittleEndian.Uint32(e[entIovCnt:])
	cdbOff := binary.LittleEndian.Uint64(e[entCdbOff:])
	fail := func() {
		e[entUflags] |= uflagUnknownOp
	}
	if cdbOff >= uint64(len(r.mem)) || iovCnt > 1<<16 {
		fail()
		return
	}
	cdb := r.mem[cdbOff:]
	cdbLen := cdbLength(cdb[0])
	if cdbOff+uint64(cdbLen) > uint64(len(r.mem)) {
		fail()
		return
	}
	cdb = append([]byte(nil), cdb[:cdbLen]...)
	type seg struct{ off, n uint64 }
	var segs []seg
	total := 0
	for i := uint32(0); i < iovCnt; i++ {
		v := e[entIov+i*iovecSize:]
		off, n := binary.LittleEndian.Uint64(v), binary.LittleEndian.Uint64(v[8:])
		if off > uint64(len(r.mem)) || n > uint64(len(r.mem))-off {
			fail()
			return
		}
		segs = append(segs, seg{off, n})
		total += int(n)
	}
	// One contiguous buffer for the handler; copied in and out of the
	// data area's segments.
	data := make([]byte, total)
	p := 0
	for _, s := range segs {
		p += copy(data[p:], r.mem[s.off:s.off+s.n])
	}
	resp := h.Execute(cdb, data)
	p = 0
	for _, s := range segs {
		p += copy(r.mem[s.off:s.off+s.n], data[p:])
	}
	e[entStatus] = resp.Status
	clear(e[entSense : entSense+senseBufLen])
	copy(e[entSense:entSense+senseBufLen], resp.Sense)
	if readLenCap && resp.ReadLen > 0 {
		e[entUflags] |= uflagReadLen
		binary.LittleEndian.PutUint32(e[entReadLen:], uint32(resp.ReadLen))
	}
}

// cdbLength is the CDB length of an opcode's group (SPC-4 4.2.5.1).
func cdbLength(op byte) int {
	switch op >> 5 {
	case 0:
		return 6
	case 1, 2:
		return 10
	case 4:
		return 16
	case 5:
		return 12
	}
	return 16
}
