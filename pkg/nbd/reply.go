package nbd

import "encoding/binary"

// Reply encoding. Each builds r.hdr[:r.hdrLen] and sets r.payload; the
// writer sends both with one writev.

// simpleReply is a simple reply; data is the payload of a successful
// NBD_CMD_READ and nil otherwise.
func (r *request) simpleReply(errno uint32, data []byte) {
	h := r.hdr[:16]
	binary.BigEndian.PutUint32(h[0:], simpleMagic)
	binary.BigEndian.PutUint32(h[4:], errno)
	binary.BigEndian.PutUint64(h[8:], r.cookie)
	r.hdrLen = 16
	if errno == 0 {
		r.payload = data
	} else {
		r.payload = nil
	}
}

// chunkHeader writes a structured reply chunk header of the given payload
// length into r.hdr and returns its size.
func (r *request) chunkHeader(flags, typ uint16, length uint32) int {
	h := r.hdr[:20]
	binary.BigEndian.PutUint32(h[0:], structureMagic)
	binary.BigEndian.PutUint16(h[4:], flags)
	binary.BigEndian.PutUint16(h[6:], typ)
	binary.BigEndian.PutUint64(h[8:], r.cookie)
	binary.BigEndian.PutUint32(h[16:], length)
	return 20
}

// readReply answers a successful NBD_CMD_READ with structured replies: one
// NBD_REPLY_TYPE_OFFSET_DATA chunk that is also the last (so DF always
// holds), or NBD_REPLY_TYPE_NONE for a read of nothing.
func (r *request) readReply(data []byte) {
	if len(data) == 0 {
		r.hdrLen = r.chunkHeader(replyFlagDone, replyTypeNone, 0)
		r.payload = nil
		return
	}
	n := r.chunkHeader(replyFlagDone, replyTypeOffsetData, uint32(8+len(data)))
	binary.BigEndian.PutUint64(r.hdr[n:], r.off)
	r.hdrLen = n + 8
	r.payload = data
}

// errorReply answers with an error: an NBD_REPLY_TYPE_ERROR chunk carrying
// the message when structured replies are on, a simple reply otherwise.
func (r *request) errorReply(structured bool, errno uint32, msg string) {
	if !structured {
		r.simpleReply(errno, nil)
		return
	}
	if len(msg) > maxStringLen {
		msg = msg[:maxStringLen]
	}
	n := r.chunkHeader(replyFlagDone, replyTypeError, uint32(6+len(msg)))
	binary.BigEndian.PutUint32(r.hdr[n:], errno)
	binary.BigEndian.PutUint16(r.hdr[n+4:], uint16(len(msg)))
	r.hdrLen = n + 6
	r.scratch = append(r.scratch[:0], msg...)
	r.payload = r.scratch
}

// blockStatusReply answers NBD_CMD_BLOCK_STATUS with one
// NBD_REPLY_TYPE_BLOCK_STATUS chunk for base:allocation, built from the
// descriptors already in r.scratch[4:].
func (r *request) blockStatusReply() {
	binary.BigEndian.PutUint32(r.scratch[0:], baseAllocationID)
	r.hdrLen = r.chunkHeader(replyFlagDone, replyTypeBlockStatus, uint32(len(r.scratch)))
	r.payload = r.scratch
}
