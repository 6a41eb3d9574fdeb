package nbd

import (
	"encoding/binary"
	"sync"

	"github.com/encblk/encblk/internal/bufpool"
	"github.com/encblk/encblk/pkg/blockdev"
)

// requestHeaderLen is the size of a request message header on the wire.
const requestHeaderLen = 28

// request is one client request and, once handled, its reply. Requests are
// pooled: the reply header, the block-status scratch space and the extents
// slice are reused, and the payload buffer comes from internal/bufpool.
type request struct {
	typ    uint16
	flags  uint16
	cookie uint64
	off    uint64
	count  uint32

	buf    *[]byte // pooled payload buffer (READ, WRITE), nil otherwise
	charge int64   // bytes taken from the connection's budget

	// The reply: hdr[:hdrLen] then payload, in one writev.
	hdr     [32]byte
	hdrLen  int
	payload []byte

	scratch []byte            // block status descriptors; kept across uses
	extents []blockdev.Extent // kept across uses
}

var requestPool = sync.Pool{New: func() any { return new(request) }}

func getRequest() *request { return requestPool.Get().(*request) }

func putRequest(r *request) {
	if r.buf != nil {
		bufpool.Put(r.buf)
		r.buf = nil
	}
	r.payload = nil
	if cap(r.scratch) > 1<<20 {
		r.scratch = nil
	}
	if cap(r.extents) > 1<<12 {
		r.extents = nil
	}
	requestPool.Put(r)
}

// decodeRequest parses a request header. It reports false if the magic is
// wrong, after which nothing the client sends can be trusted.
func decodeRequest(b []byte, r *request) bool {
	if len(b) < requestHeaderLen || binary.BigEndian.Uint32(b[0:]) != requestMagic {
		return false
	}
	r.flags = binary.BigEndian.Uint16(b[4:])
	r.typ = binary.BigEndian.Uint16(b[6:])
	r.cookie = binary.BigEndian.Uint64(b[8:])
	r.off = binary.BigEndian.Uint64(b[16:])
	r.count = binary.BigEndian.Uint32(b[24:])
	r.charge = 0
	r.payload = nil
	return true
}

// data is the request's payload buffer trimmed to its length (nil for a
// request of length 0, which has no buffer).
func (r *request) data() []byte {
	if r.buf == nil {
		return nil
	}
	return (*r.buf)[:r.count]
}

// writes reports whether the command changes the export.
func (r *request) writes() bool {
	return r.typ == cmdWrite || r.typ == cmdTrim || r.typ == cmdWriteZeroes
}

// validate checks a request against the export and what was negotiated,
// returning the NBD error to answer with (0 if valid) and a message. The
// order of checks and the errors follow the spec's "Error values" and
// nbdkit: EPERM for writing a read-only export, ENOSPC for writing past
// the end, EINVAL for everything else that is malformed.
func (r *request) validate(e *negotiated, structured, meta bool) (uint32, string) {
	switch r.typ {
	case cmdRead, cmdWrite, cmdTrim, cmdWriteZeroes, cmdCache, cmdBlockStatus:
		if r.writes() && e.info.ReadOnly {
			return errPerm, "export is read-only"
		}
		end := r.off + uint64(r.count)
		if end < r.off || end > e.size {
			if r.typ == cmdWrite || r.typ == cmdWriteZeroes {
				return errNoSpc, "request beyond the end of the export"
			}
			return errInval, "request beyond the end of the export"
		}
		if m := uint64(e.minBlock); m > 1 && (r.off%m != 0 || (uint64(r.count)%m != 0 && end != e.size)) {
			return errInval, "request not aligned to the minimum block size"
		}
	case cmdFlush:
		if r.off != 0 || r.count != 0 {
			return errInval, "NBD_CMD_FLUSH with nonzero offset or length"
		}
	default:
		return errInval, "unknown command"
	}

	f := r.flags
	switch {
	case f&^cmdFlagsKnown != 0:
		return errInval, "unknown command flag"
	case f&(cmdFlagNoHole|cmdFlagFastZero) != 0 && r.typ != cmdWriteZeroes:
		return errInval, "NO_HOLE or FAST_ZERO flag on a command other than NBD_CMD_WRITE_ZEROES"
	case f&cmdFlagDF != 0 && (r.typ != cmdRead || !structured):
		return errInval, "DF flag needs NBD_CMD_READ and structured replies"
	case f&cmdFlagReqOne != 0 && r.typ != cmdBlockStatus:
		return errInval, "REQ_ONE flag on a command other than NBD_CMD_BLOCK_STATUS"
	case f&cmdFlagFUA != 0 && !e.info.CanFUA:
		return errInval, "FUA flag not supported"
	case f&cmdFlagFastZero != 0 && !e.info.CanFastZero:
		return errInval, "FAST_ZERO flag not supported"
	}

	switch r.typ {
	case cmdRead, cmdWrite:
		if r.count > e.maxBlock {
			return errInval, "request larger than the maximum payload"
		}
	case cmdFlush:
		if !e.info.CanFlush {
			return errInval, "NBD_CMD_FLUSH not supported"
		}
	case cmdTrim:
		if !e.info.CanTrim {
			return errInval, "NBD_CMD_TRIM not supported"
		}
	case cmdWriteZeroes:
		if !e.info.CanZero {
			return errInval, "NBD_CMD_WRITE_ZEROES not supported"
		}
	case cmdCache:
		if !e.Cache {
			return errInval, "NBD_CMD_CACHE not supported"
		}
	case cmdBlockStatus:
		if !structured || !meta {
			return errInval, "NBD_CMD_BLOCK_STATUS without base:allocation negotiated"
		}
		if r.count == 0 {
			return errInval, "NBD_CMD_BLOCK_STATUS of length 0"
		}
	}
	return 0, ""
}
