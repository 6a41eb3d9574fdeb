package nbd

import "strconv"

// Wire constants of the NBD protocol, named as in the specification
// (NetworkBlockDevice/nbd doc/proto.md, section "Values"). All integers on
// the wire are big-endian.

const (
	nbdMagic       = 0x4e42444d41474943 // "NBDMAGIC"
	ihaveOpt       = 0x49484156454F5054 // "IHAVEOPT": newstyle magic and option magic
	optReplyMagic  = 0x3e889045565a9
	requestMagic   = 0x25609513
	simpleMagic    = 0x67446698
	structureMagic = 0x668e33ef
)

// Handshake flags (server) and client flags.
const (
	flagFixedNewstyle  = 1 << 0
	flagNoZeroes       = 1 << 1
	flagCFixedNewstyle = 1 << 0
	flagCNoZeroes      = 1 << 1
)

// Transmission flags.
const (
	flagHasFlags        = 1 << 0
	flagReadOnly        = 1 << 1
	flagSendFlush       = 1 << 2
	flagSendFUA         = 1 << 3
	flagRotational      = 1 << 4
	flagSendTrim        = 1 << 5
	flagSendWriteZeroes = 1 << 6
	flagSendDF          = 1 << 7
	flagCanMultiConn    = 1 << 8
	flagSendCache       = 1 << 10
	flagSendFastZero    = 1 << 11
)

// Option types.
const (
	optExportName      = 1
	optAbort           = 2
	optList            = 3
	optStartTLS        = 5
	optInfo            = 6
	optGo              = 7
	optStructuredReply = 8
	optListMetaContext = 9
	optSetMetaContext  = 10
)

// Option reply types.
const (
	repAck          = 1
	repServer       = 2
	repInfo         = 3
	repMetaContext  = 4
	repFlagError    = 1 << 31
	repErrUnsup     = repFlagError | 1
	repErrPolicy    = repFlagError | 2
	repErrInvalid   = repFlagError | 3
	repErrPlatform  = repFlagError | 4
	repErrTLSReqd   = repFlagError | 5
	repErrUnknown   = repFlagError | 6
	repErrShutdown  = repFlagError | 7
	repErrBlockSize = repFlagError | 8
	repErrTooBig    = repFlagError | 9
)

// Information types for NBD_OPT_INFO and NBD_OPT_GO.
const (
	infoExport      = 0
	infoName        = 1
	infoDescription = 2
	infoBlockSize   = 3
)

// Command types.
const (
	cmdRead        = 0
	cmdWrite       = 1
	cmdDisc        = 2
	cmdFlush       = 3
	cmdTrim        = 4
	cmdCache       = 5
	cmdWriteZeroes = 6
	cmdBlockStatus = 7
)

// Command flags.
const (
	cmdFlagFUA      = 1 << 0
	cmdFlagNoHole   = 1 << 1
	cmdFlagDF       = 1 << 2
	cmdFlagReqOne   = 1 << 3
	cmdFlagFastZero = 1 << 4
	cmdFlagsKnown   = cmdFlagFUA | cmdFlagNoHole | cmdFlagDF | cmdFlagReqOne | cmdFlagFastZero
)

// Structured reply flags and types.
const (
	replyFlagDone        = 1 << 0
	replyTypeNone        = 0
	replyTypeOffsetData  = 1
	replyTypeOffsetHole  = 2
	replyTypeBlockStatus = 5
	replyTypeError       = 1<<15 | 1
	replyTypeErrorOffset = 1<<15 | 2
)

// Error values.
const (
	errPerm     = 1
	errIO       = 5
	errNoMem    = 12
	errInval    = 22
	errNoSpc    = 28
	errOverflow = 75
	errNotSup   = 95
	errShutdown = 108
)

// base:allocation state flags.
const (
	stateHole = 1 << 0
	stateZero = 1 << 1
)

// Limits.
const (
	// maxStringLen is the spec's limit on strings (export names, queries).
	maxStringLen = 4096
	// maxOptionLen bounds the data of one option; anything longer is a
	// denial of service (the longest legal option, SET_META_CONTEXT, is a
	// handful of 4 KiB strings).
	maxOptionLen = 64 << 10
	// maxOptions bounds the options one client may send before transmission.
	maxOptions = 1024
	// maxPayload is the largest READ/WRITE payload we accept, whatever the
	// device says: the spec's interoperable maximum.
	maxPayload = 32 << 20
	// defaultPreferredBlock is the spec's default preferred block size.
	defaultPreferredBlock = 4096
	// baseAllocationID is the metadata context ID of base:allocation.
	baseAllocationID = 1
	// baseAllocation is the one metadata context we serve.
	baseAllocation = "base:allocation"
	// maxExtents bounds the descriptors in one block status chunk (spec: 2^20).
	maxExtents = 1 << 20
)

var optNames = map[uint32]string{
	optExportName:      "NBD_OPT_EXPORT_NAME",
	optAbort:           "NBD_OPT_ABORT",
	optList:            "NBD_OPT_LIST",
	optStartTLS:        "NBD_OPT_STARTTLS",
	optInfo:            "NBD_OPT_INFO",
	optGo:              "NBD_OPT_GO",
	optStructuredReply: "NBD_OPT_STRUCTURED_REPLY",
	optListMetaContext: "NBD_OPT_LIST_META_CONTEXT",
	optSetMetaContext:  "NBD_OPT_SET_META_CONTEXT",
}

// optName is the specification's name of an option, for logs.
func optName(o uint32) string {
	if n, ok := optNames[o]; ok {
		return n
	}
	return "unknown option " + strconv.FormatUint(uint64(o), 10)
}

var cmdNames = [...]string{
	cmdRead:        "NBD_CMD_READ",
	cmdWrite:       "NBD_CMD_WRITE",
	cmdDisc:        "NBD_CMD_DISC",
	cmdFlush:       "NBD_CMD_FLUSH",
	cmdTrim:        "NBD_CMD_TRIM",
	cmdCache:       "NBD_CMD_CACHE",
	cmdWriteZeroes: "NBD_CMD_WRITE_ZEROES",
	cmdBlockStatus: "NBD_CMD_BLOCK_STATUS",
}

// cmdName is the specification's name of a command, for logs.
func cmdName(c uint16) string {
	if int(c) < len(cmdNames) {
		return cmdNames[c]
	}
	return "unknown command " + strconv.FormatUint(uint64(c), 10)
}

var repNames = map[uint32]string{
	repAck:          "NBD_REP_ACK",
	repServer:       "NBD_REP_SERVER",
	repInfo:         "NBD_REP_INFO",
	repMetaContext:  "NBD_REP_META_CONTEXT",
	repErrUnsup:     "NBD_REP_ERR_UNSUP",
	repErrPolicy:    "NBD_REP_ERR_POLICY",
	repErrInvalid:   "NBD_REP_ERR_INVALID",
	repErrPlatform:  "NBD_REP_ERR_PLATFORM",
	repErrTLSReqd:   "NBD_REP_ERR_TLS_REQD",
	repErrUnknown:   "NBD_REP_ERR_UNKNOWN",
	repErrShutdown:  "NBD_REP_ERR_SHUTDOWN",
	repErrBlockSize: "NBD_REP_ERR_BLOCK_SIZE_REQD",
	repErrTooBig:    "NBD_REP_ERR_TOO_BIG",
}

// repName is the specification's name of an option reply type, for logs.
func repName(r uint32) string {
	if n, ok := repNames[r]; ok {
		return n
	}
	return "unknown reply " + strconv.FormatUint(uint64(r), 10)
}
