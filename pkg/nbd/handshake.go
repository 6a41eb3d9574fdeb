package nbd

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
)

// session is one client connection during option haggling; what it
// negotiates (TLS, structured replies, metadata contexts) carries into
// transmission.
type session struct {
	srv  *Server
	conn net.Conn // becomes a *tls.Conn after STARTTLS, or a *sockConn (see detach)
	br   *bufio.Reader
	log  *slog.Logger

	noZeroes   bool
	tls        bool
	structured bool
	// metaExport is the export named by the last successful
	// NBD_OPT_SET_META_CONTEXT that selected base:allocation, metaSet
	// whether there was one.
	metaExport string
	metaSet    bool

	wbuf []byte // option reply scratch
}

// readBufferSize is the size of the buffered reader on a connection: big
// enough to take a burst of request headers in one read.
const readBufferSize = 128 << 10

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReaderSize(c, readBufferSize) }

// detach moves a plain connection to a blocking socket for transmission
// (see sockConn) if the server has a slot free. Not a TLS one, nor when
// the client already sent requests the buffered reader holds.
func (s *session) detach() {
	if s.tls || s.br.Buffered() != 0 || !s.srv.takeBlockingSlot() {
		return
	}
	sc := detachSocket(s.conn, s.srv.releaseBlockingSlot)
	if sc == nil {
		s.srv.releaseBlockingSlot()
		return
	}
	s.conn = sc
	s.br.Reset(sc)
}

// errProtocol is a client breaking a MUST of the protocol; the server
// disconnects.
var errProtocol = errors.New("nbd: protocol violation")

// negotiate runs the fixed newstyle handshake and option haggling until
// the client picks an export (NBD_OPT_GO, NBD_OPT_EXPORT_NAME).
func (s *session) negotiate(ctx context.Context) (*negotiated, error) {
	s.br = newReader(s.conn)
	var hello [18]byte
	binary.BigEndian.PutUint64(hello[0:], nbdMagic)
	binary.BigEndian.PutUint64(hello[8:], ihaveOpt)
	binary.BigEndian.PutUint16(hello[16:], flagFixedNewstyle|flagNoZeroes)
	if _, err := s.conn.Write(hello[:]); err != nil {
		return nil, fmt.Errorf("nbd: send greeting: %w", err)
	}
	var cf [4]byte
	if _, err := io.ReadFull(s.br, cf[:]); err != nil {
		return nil, fmt.Errorf("nbd: read client flags: %w", err)
	}
	clientFlags := binary.BigEndian.Uint32(cf[:])
	if clientFlags&^(flagCFixedNewstyle|flagCNoZeroes) != 0 {
		return nil, fmt.Errorf("%w: unknown client flags %#x", errProtocol, clientFlags)
	}
	if clientFlags&flagCFixedNewstyle == 0 {
		// Only NBD_OPT_EXPORT_NAME would be understood; we speak fixed
		// newstyle only, as nbdkit, and clients that matter all do.
		return nil, fmt.Errorf("%w: client does not speak fixed newstyle", errProtocol)
	}
	s.noZeroes = clientFlags&flagCNoZeroes != 0

	var hdr [16]byte
	for n := 0; ; n++ {
		if n >= maxOptions {
			return nil, fmt.Errorf("%w: more than %d options", errProtocol, maxOptions)
		}
		if _, err := io.ReadFull(s.br, hdr[:]); err != nil {
			return nil, fmt.Errorf("nbd: read option: %w", err)
		}
		if m := binary.BigEndian.Uint64(hdr[0:]); m != ihaveOpt {
			return nil, fmt.Errorf("%w: bad option magic %#x", errProtocol, m)
		}
		opt := binary.BigEndian.Uint32(hdr[8:])
		length := binary.BigEndian.Uint32(hdr[12:])
		s.log.Debug("nbd option", "option", optName(opt), "length", length)
		if length > maxOptionLen {
			if opt == optExportName {
				return nil, fmt.Errorf("%w: %s of %d bytes", errProtocol, optName(opt), length)
			}
			// Tell the client, then hang up: skipping it could take forever.
			_ = s.reply(opt, repErrTooBig, []byte("option data too long"))
			return nil, fmt.Errorf("%w: %s of %d bytes", errProtocol, optName(opt), length)
		}
		data := make([]byte, length)
		if _, err := io.ReadFull(s.br, data); err != nil {
			return nil, fmt.Errorf("nbd: read %s data: %w", optName(opt), err)
		}
		exp, err := s.option(ctx, opt, data)
		if err != nil || exp != nil {
			return exp, err
		}
	}
}

// option handles one option; it returns the export when transmission starts.
func (s *session) option(ctx context.Context, opt uint32, data []byte) (*negotiated, error) {
	if s.srv.RequireTLS && !s.tls {
		switch opt {
		case optStartTLS, optAbort:
		case optExportName:
			return nil, fmt.Errorf("%w: %s before TLS on a TLS-only server", errProtocol, optName(opt))
		default:
			return nil, s.reply(opt, repErrTLSReqd, []byte("TLS is required: send NBD_OPT_STARTTLS first"))
		}
	}
	switch opt {
	case optExportName:
		return s.optExportName(data)
	case optAbort:
		_ = s.reply(opt, repAck, nil)
		return nil, errAbort
	case optList:
		return nil, s.optList(data)
	case optStartTLS:
		return nil, s.optStartTLS(ctx, data)
	case optInfo, optGo:
		return s.optInfoGo(opt, data)
	case optStructuredReply:
		if len(data) != 0 {
			return nil, s.reply(opt, repErrInvalid, []byte("NBD_OPT_STRUCTURED_REPLY takes no data"))
		}
		if s.structured {
			return nil, s.reply(opt, repErrInvalid, []byte("structured replies already negotiated"))
		}
		s.structured = true
		return nil, s.reply(opt, repAck, nil)
	case optListMetaContext, optSetMetaContext:
		return nil, s.optMetaContext(opt, data)
	default:
		return nil, s.reply(opt, repErrUnsup, []byte("option not supported"))
	}
}

func (s *session) optExportName(data []byte) (*negotiated, error) {
	if len(data) > maxStringLen {
		return nil, fmt.Errorf("%w: export name of %d bytes", errProtocol, len(data))
	}
	name := string(data)
	exp, err := s.lookup(name)
	if err != nil {
		// NBD_OPT_EXPORT_NAME cannot fail: the spec says hang up.
		return nil, err
	}
	var b [8 + 2 + 124]byte
	binary.BigEndian.PutUint64(b[0:], exp.size)
	binary.BigEndian.PutUint16(b[8:], exp.flags(s.structured))
	n := len(b)
	if s.noZeroes {
		n = 10
	}
	if _, err := s.conn.Write(b[:n]); err != nil {
		return nil, fmt.Errorf("nbd: reply to %s: %w", optName(optExportName), err)
	}
	if s.metaSet && s.metaExport != name {
		s.metaSet = false
	}
	return exp, nil
}

// errUnknownExport is a client naming an export that does not exist.
var errUnknownExport = errors.New("nbd: unknown export")

func (s *session) lookup(name string) (*negotiated, error) {
	x, ok := s.srv.Exports.Lookup(name)
	if !ok {
		return nil, fmt.Errorf("%w %q", errUnknownExport, name)
	}
	return negotiate(name, x)
}

func (s *session) optList(data []byte) error {
	if len(data) != 0 {
		return s.reply(optList, repErrInvalid, []byte("NBD_OPT_LIST takes no data"))
	}
	for _, name := range s.srv.Exports.Names() {
		x, ok := s.srv.Exports.Lookup(name)
		if !ok {
			continue
		}
		desc := x.Description
		p := make([]byte, 4, 4+len(name)+len(desc))
		binary.BigEndian.PutUint32(p, uint32(len(name)))
		p = append(p, name...)
		p = append(p, desc...)
		if err := s.reply(optList, repServer, p); err != nil {
			return err
		}
	}
	return s.reply(optList, repAck, nil)
}

func (s *session) optStartTLS(ctx context.Context, data []byte) error {
	switch {
	case len(data) != 0:
		return s.reply(optStartTLS, repErrInvalid, []byte("NBD_OPT_STARTTLS takes no data"))
	case s.tls:
		return s.reply(optStartTLS, repErrInvalid, []byte("TLS already negotiated"))
	case s.srv.TLS == nil:
		return s.reply(optStartTLS, repErrUnsup, []byte("TLS is not configured on this server"))
	case s.br.Buffered() != 0:
		// Bytes after STARTTLS before our ACK: the client did not wait.
		return fmt.Errorf("%w: data pipelined after %s", errProtocol, optName(optStartTLS))
	}
	if err := s.reply(optStartTLS, repAck, nil); err != nil {
		return err
	}
	tc := tls.Server(s.conn, s.srv.TLS)
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("nbd: TLS handshake: %w", err)
	}
	st := tc.ConnectionState()
	attrs := []any{"version", tls.VersionName(st.Version)}
	if len(st.PeerCertificates) > 0 {
		attrs = append(attrs, "client", st.PeerCertificates[0].Subject.String())
	}
	s.log.Info("nbd TLS established", attrs...)
	s.conn = tc
	s.br.Reset(tc)
	s.tls = true
	// The spec: nothing negotiated before STARTTLS survives it.
	s.structured = false
	s.metaSet = false
	s.metaExport = ""
	return nil
}

// optInfoGo handles NBD_OPT_INFO and NBD_OPT_GO, which share their format:
// name length, name, number of information requests, requests.
func (s *session) optInfoGo(opt uint32, data []byte) (*negotiated, error) {
	if len(data) < 6 {
		return nil, s.reply(opt, repErrInvalid, []byte("option data too short"))
	}
	nameLen := binary.BigEndian.Uint32(data)
	if uint64(nameLen) > uint64(len(data))-6 {
		return nil, s.reply(opt, repErrInvalid, []byte("export name length beyond option data"))
	}
	if nameLen > maxStringLen {
		return nil, s.reply(opt, repErrInvalid, []byte("export name too long"))
	}
	name := string(data[4 : 4+nameLen])
	rest := data[4+nameLen:]
	nInfos := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) != 2*nInfos {
		return nil, s.reply(opt, repErrInvalid, []byte("information request count does not match option length"))
	}
	var wantName, wantDesc bool
	for i := range nInfos {
		switch binary.BigEndian.Uint16(rest[2*i:]) {
		case infoName:
			wantName = true
		case infoDescription:
			wantDesc = true
		}
	}
	exp, err := s.lookup(name)
	if err != nil {
		if errors.Is(err, errUnknownExport) {
			return nil, s.reply(opt, repErrUnknown, []byte("unknown export"))
		}
		s.log.Warn("nbd export unusable", "export", name, "err", err)
		return nil, s.reply(opt, repErrUnknown, []byte("export unavailable"))
	}

	// NBD_INFO_EXPORT: size and transmission flags.
	var p [14]byte
	binary.BigEndian.PutUint16(p[0:], infoExport)
	binary.BigEndian.PutUint64(p[2:], exp.size)
	binary.BigEndian.PutUint16(p[10:], exp.flags(s.structured))
	if err := s.reply(opt, repInfo, p[:12]); err != nil {
		return nil, err
	}
	// NBD_INFO_BLOCK_SIZE always: unrequested is allowed and harmless, and a
	// client that did not ask still gets EINVAL for unaligned requests.
	binary.BigEndian.PutUint16(p[0:], infoBlockSize)
	binary.BigEndian.PutUint32(p[2:], exp.minBlock)
	binary.BigEndian.PutUint32(p[6:], exp.prefBlock)
	binary.BigEndian.PutUint32(p[10:], exp.maxBlock)
	if err := s.reply(opt, repInfo, p[:14]); err != nil {
		return nil, err
	}
	if wantName {
		if err := s.reply(opt, repInfo, append([]byte{0, infoName}, name...)); err != nil {
			return nil, err
		}
	}
	if d := exp.Description; wantDesc && d != "" {
		if len(d) > maxStringLen {
			d = d[:maxStringLen]
		}
		if err := s.reply(opt, repInfo, append([]byte{0, infoDescription}, d...)); err != nil {
			return nil, err
		}
	}
	if err := s.reply(opt, repAck, nil); err != nil {
		return nil, err
	}
	if opt == optInfo {
		return nil, nil
	}
	if s.metaSet && s.metaExport != name {
		// Contexts selected for another export do not apply to this one.
		s.metaSet = false
	}
	return exp, nil
}

// optMetaContext handles NBD_OPT_LIST_META_CONTEXT and
// NBD_OPT_SET_META_CONTEXT for the one context we have, base:allocation.
func (s *session) optMetaContext(opt uint32, data []byte) error {
	if opt == optSetMetaContext {
		// A SET replaces the selection, even when it fails.
		s.metaSet = false
		s.metaExport = ""
	}
	if !s.structured {
		return s.reply(opt, repErrInvalid, []byte("structured replies not negotiated"))
	}
	name, queries, ok := parseMetaContext(data)
	if !ok {
		return s.reply(opt, repErrInvalid, []byte("malformed metadata context request"))
	}
	if _, ok := s.srv.Exports.Lookup(name); !ok {
		return s.reply(opt, repErrUnknown, []byte("unknown export"))
	}
	selected := false
	if opt == optListMetaContext && len(queries) == 0 {
		selected = true
	}
	for _, q := range queries {
		if q == baseAllocation || (opt == optListMetaContext && q == "base:") {
			selected = true
		}
	}
	if selected {
		id := uint32(0) // the spec: LIST replies carry ID 0
		if opt == optSetMetaContext {
			id = baseAllocationID
		}
		p := binary.BigEndian.AppendUint32(nil, id)
		p = append(p, baseAllocation...)
		if err := s.reply(opt, repMetaContext, p); err != nil {
			return err
		}
		if opt == optSetMetaContext {
			s.metaSet = true
			s.metaExport = name
		}
	}
	return s.reply(opt, repAck, nil)
}

// parseMetaContext decodes the data of NBD_OPT_{LIST,SET}_META_CONTEXT:
// export name, query count, queries, each a 32-bit length and a string.
func parseMetaContext(data []byte) (name string, queries []string, ok bool) {
	str := func() (string, bool) {
		if len(data) < 4 {
			return "", false
		}
		n := binary.BigEndian.Uint32(data)
		if n > maxStringLen || uint64(n) > uint64(len(data)-4) {
			return "", false
		}
		v := string(data[4 : 4+n])
		data = data[4+n:]
		return v, true
	}
	if name, ok = str(); !ok {
		return "", nil, false
	}
	if len(data) < 4 {
		return "", nil, false
	}
	n := binary.BigEndian.Uint32(data)
	data = data[4:]
	// Each query takes at least 4 bytes; a count beyond that is a lie.
	if uint64(n) > uint64(len(data))/4 {
		return "", nil, false
	}
	queries = make([]string, 0, n)
	for range n {
		q, ok := str()
		if !ok {
			return "", nil, false
		}
		queries = append(queries, q)
	}
	if len(data) != 0 {
		return "", nil, false
	}
	return name, queries, true
}

// reply sends one option reply.
func (s *session) reply(opt, typ uint32, payload []byte) error {
	b := s.wbuf[:0]
	b = binary.BigEndian.AppendUint64(b, optReplyMagic)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, typ)
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	b = append(b, payload...)
	s.wbuf = b
	if typ&repFlagError != 0 {
		s.log.Debug("nbd option refused", "option", optName(opt), "reply", repName(typ), "msg", string(payload))
	}
	if _, err := s.conn.Write(b); err != nil {
		return fmt.Errorf("nbd: reply to %s: %w", optName(opt), err)
	}
	return nil
}
