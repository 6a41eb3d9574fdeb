package sed

import (
	"encoding/binary"
	"fmt"
)

// Framing of the TCG Core Specification 2.01, section 3.2.3: a ComPacket
// holds Packets (one per session), a Packet holds SubPackets, and a data
// SubPacket holds a token stream. All integers are big-endian.
//
// ComPacket header, 20 bytes:
//
//	0  Reserved (4)
//	4  ComID (2), ComID Extension (2)
//	8  OutstandingData (4)   bytes the TPer still holds for the host
//	12 MinTransfer (4)       smallest IF-RECV that retrieves them
//	16 Length (4)            bytes of Packets that follow
//
// Packet header, 24 bytes:
//
//	0  TSN (4)   TPer session number   (0 outside a session)
//	4  HSN (4)   host session number   (0 outside a session)
//	8  SeqNumber (4)
//	12 Reserved (2)
//	14 AckType (2)
//	16 Acknowledgement (4)
//	20 Length (4)  bytes of SubPackets that follow, including padding
//
// SubPacket header, 12 bytes:
//
//	0  Reserved (6)
//	6  Kind (2)    0 = data, 0x8001 = credit control
//	8  Length (4)  payload bytes, excluding the padding to a multiple of 4
const (
	ComPacketHeaderLen = 20
	PacketHeaderLen    = 24
	SubPacketHeaderLen = 12
	// HeadersLen is the size of the three headers before the first token.
	HeadersLen = ComPacketHeaderLen + PacketHeaderLen + SubPacketHeaderLen

	// SubPacketKindData is the kind of a SubPacket that carries tokens.
	SubPacketKindData = 0x0000
	// SubPacketKindCreditControl is the kind of a flow-control SubPacket.
	SubPacketKindCreditControl = 0x8001

	// maxFramedParts bounds the Packets in a ComPacket and the SubPackets
	// in a Packet that a parser accepts.
	maxFramedParts = 64
)

// ComPacket is one unit of transfer on a ComID.
type ComPacket struct {
	ComID           uint16
	ComIDExtension  uint16
	OutstandingData uint32
	MinTransfer     uint32
	Packets         []Packet
}

// Packet carries the traffic of one session.
type Packet struct {
	TSN             uint32
	HSN             uint32
	SeqNumber       uint32
	AckType         uint16
	Acknowledgement uint32
	SubPackets      []SubPacket
}

// SubPacket is a typed payload within a Packet.
type SubPacket struct {
	Kind uint16
	Data []byte
}

// NewComPacket frames one token stream for a session (tsn, hsn) on comID:
// one Packet holding one data SubPacket.
func NewComPacket(comID uint16, tsn, hsn uint32, tokens []byte) *ComPacket {
	return &ComPacket{
		ComID: comID,
		Packets: []Packet{{
			TSN: tsn, HSN: hsn,
			SubPackets: []SubPacket{{Kind: SubPacketKindData, Data: tokens}},
		}},
	}
}

func pad4(n int) int { return (n + 3) &^ 3 }

// MarshalBinary encodes the ComPacket. Each SubPacket's payload is padded
// with zeros to a multiple of 4 bytes; the padding counts in the Packet
// length but not in the SubPacket length.
func (c *ComPacket) MarshalBinary() ([]byte, error) {
	size := ComPacketHeaderLen
	for _, p := range c.Packets {
		size += PacketHeaderLen
		for _, s := range p.SubPackets {
			size += SubPacketHeaderLen + pad4(len(s.Data))
		}
	}
	if size > 1<<31 {
		return nil, fmt.Errorf("%w: ComPacket of %d bytes", ErrEncode, size)
	}
	b := make([]byte, size)
	be := binary.BigEndian
	be.PutUint16(b[4:], c.ComID)
	be.PutUint16(b[6:], c.ComIDExtension)
	be.PutUint32(b[8:], c.OutstandingData)
	be.PutUint32(b[12:], c.MinTransfer)
	be.PutUint32(b[16:], uint32(size-ComPacketHeaderLen))
	off := ComPacketHeaderLen
	for _, p := range c.Packets {
		ph := b[off:]
		be.PutUint32(ph[0:], p.TSN)
		be.PutUint32(ph[4:], p.HSN)
		be.PutUint32(ph[8:], p.SeqNumber)
		be.PutUint16(ph[14:], p.AckType)
		be.PutUint32(ph[16:], p.Acknowledgement)
		off += PacketHeaderLen
		start := off
		for _, s := range p.SubPackets {
			sh := b[off:]
			be.PutUint16(sh[6:], s.Kind)
			be.PutUint32(sh[8:], uint32(len(s.Data)))
			copy(sh[SubPacketHeaderLen:], s.Data)
			off += SubPacketHeaderLen + pad4(len(s.Data))
		}
		be.PutUint32(ph[20:], uint32(off-start))
	}
	return b, nil
}

// ParseComPacket decodes a ComPacket from a receive buffer. Bytes after
// the ComPacket's Length (the rest of a fixed-size transfer buffer) are
// ignored. A ComPacket with Length 0 is valid: it says the TPer has no
// response yet (OutstandingData tells whether one is coming).
func ParseComPacket(b []byte) (*ComPacket, error) {
	if len(b) < ComPacketHeaderLen {
		return nil, fmt.Errorf("%w: ComPacket of %d bytes is shorter than its header", ErrMalformed, len(b))
	}
	be := binary.BigEndian
	c := &ComPacket{
		ComID:           be.Uint16(b[4:]),
		ComIDExtension:  be.Uint16(b[6:]),
		OutstandingData: be.Uint32(b[8:]),
		MinTransfer:     be.Uint32(b[12:]),
	}
	length := uint64(be.Uint32(b[16:]))
	if length > uint64(len(b)-ComPacketHeaderLen) {
		return nil, fmt.Errorf("%w: ComPacket length %d exceeds the %d bytes received", ErrMalformed, length, len(b)-ComPacketHeaderLen)
	}
	rest := b[ComPacketHeaderLen : ComPacketHeaderLen+int(length)]
	for len(rest) > 0 {
		if len(c.Packets) == maxFramedParts {
			return nil, fmt.Errorf("%w: more than %d Packets in a ComPacket", ErrMalformed, maxFramedParts)
		}
		if len(rest) < PacketHeaderLen {
			return nil, fmt.Errorf("%w: %d trailing bytes are too short for a Packet header", ErrMalformed, len(rest))
		}
		p := Packet{
			TSN:             be.Uint32(rest[0:]),
			HSN:             be.Uint32(rest[4:]),
			SeqNumber:       be.Uint32(rest[8:]),
			AckType:         be.Uint16(rest[14:]),
			Acknowledgement: be.Uint32(rest[16:]),
		}
		plen := uint64(be.Uint32(rest[20:]))
		if plen > uint64(len(rest)-PacketHeaderLen) {
			return nil, fmt.Errorf("%w: Packet length %d exceeds its ComPacket", ErrMalformed, plen)
		}
		body := rest[PacketHeaderLen : PacketHeaderLen+int(plen)]
		rest = rest[PacketHeaderLen+int(plen):]
		for len(body) > 0 {
			if len(p.SubPackets) == maxFramedParts {
				return nil, fmt.Errorf("%w: more than %d SubPackets in a Packet", ErrMalformed, maxFramedParts)
			}
			if len(body) < SubPacketHeaderLen {
				return nil, fmt.Errorf("%w: %d trailing bytes are too short for a SubPacket header", ErrMalformed, len(body))
			}
			kind := be.Uint16(body[6:])
			slen := uint64(be.Uint32(body[8:]))
			if slen > uint64(len(body)-SubPacketHeaderLen) {
				return nil, fmt.Errorf("%w: SubPacket length %d exceeds its Packet", ErrMalformed, slen)
			}
			data := body[SubPacketHeaderLen : SubPacketHeaderLen+int(slen)]
			p.SubPackets = append(p.SubPackets, SubPacket{Kind: kind, Data: append([]byte{}, data...)})
			// Padding belongs to the Packet; a last SubPacket whose padding
			// the Packet length leaves out is tolerated.
			body = body[min(len(body), SubPacketHeaderLen+pad4(int(slen))):]
		}
		c.Packets = append(c.Packets, p)
	}
	return c, nil
}

// Payload returns the token stream of a ComPacket that holds exactly one
// Packet with one data SubPacket, which is what an Opal TPer sends in
// reply to one method call.
func (c *ComPacket) Payload() (p *Packet, tokens []byte, err error) {
	if len(c.Packets) != 1 {
		return nil, nil, fmt.Errorf("%w: expected 1 Packet, got %d", ErrMalformed, len(c.Packets))
	}
	p = &c.Packets[0]
	var data []byte
	n := 0
	for _, s := range p.SubPackets {
		switch s.Kind {
		case SubPacketKindData:
			data = s.Data
			n++
		case SubPacketKindCreditControl:
		default:
			return nil, nil, fmt.Errorf("%w: SubPacket kind 0x%04x", ErrMalformed, s.Kind)
		}
	}
	if n != 1 {
		return nil, nil, fmt.Errorf("%w: expected 1 data SubPacket, got %d", ErrMalformed, n)
	}
	return p, data, nil
}
