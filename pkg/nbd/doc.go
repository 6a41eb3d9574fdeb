// Package nbd is a Network Block Device server: the fixed-newstyle
// handshake, option haggling, and the transmission phase of the NBD protocol
// (NetworkBlockDevice/nbd doc/proto.md), serving any blockdev.Device.
//
// The package knows nothing about encryption; an encrypted volume
// (pkg/volume) is one device, a plain file another. NBD's own facts
// (description, multi-conn, cache, block-size constraints) are the
// Export's, not the device's.
//
// # What a client can negotiate
//
// Options: NBD_OPT_EXPORT_NAME, NBD_OPT_ABORT, NBD_OPT_LIST,
// NBD_OPT_STARTTLS, NBD_OPT_INFO and NBD_OPT_GO (with NBD_INFO_EXPORT,
// NBD_INFO_NAME, NBD_INFO_DESCRIPTION, NBD_INFO_BLOCK_SIZE),
// NBD_OPT_STRUCTURED_REPLY, NBD_OPT_LIST_META_CONTEXT and
// NBD_OPT_SET_META_CONTEXT (base:allocation). Oldstyle and non-fixed
// newstyle clients are refused.
//
// Commands: NBD_CMD_READ, WRITE, DISC, FLUSH, TRIM, CACHE, WRITE_ZEROES
// (NO_HOLE, FAST_ZERO) and BLOCK_STATUS (REQ_ONE), with FUA and DF; simple
// replies, or structured replies when negotiated. The transmission flags
// follow the device's Info; a read-only export advertises no writing.
//
// # Concurrency, ordering and durability
//
// A connection's requests run concurrently and are answered as they
// complete. A reply is sent only after the device call returned, so a
// device whose Flush makes every completed write durable (whichever
// connection it came through) gives the spec's NBD_CMD_FLUSH semantics,
// and with Export.MultiConn makes multi-connection clients safe. FUA is
// passed to the device, which must not return before the data is durable.
// Memory is bounded per connection (Server.MaxInFlightBytes and
// MaxInFlightRequests): past the bound the server stops reading.
//
// # Limits
//
// A Server serves at most Server.MaxConnections connections at once
// (DefaultMaxConnections, 64, unless set); a client past the limit is
// closed before the greeting and the refusals are logged at most once
// every ten seconds, with a count. Option haggling must end within
// Server.HandshakeTimeout (a minute); Server.IdleTimeout, off by default,
// ends a connection that has had no request in flight for that long.
//
// # Threads
//
// Up to Server.BlockingConns plain (not TLS) connections at a time, by
// default half the cores, do their socket I/O with blocking system calls
// on a thread of their own, as nbdkit does; the others, and every TLS
// connection, use the Go runtime's network poller. Blocking is cheaper per
// request for a busy connection that has a core to itself (see sockConn);
// the poller shares the cores better among many.
//
// # Security
//
// NBD has no authentication of its own. Serve unix sockets (ListenUnix
// creates them 0600, or 0660 for one group) to local clients, and TCP only
// with TLS (Server.TLS from TLSConfig, TLS 1.3) and RequireTLS, with a
// client CA for mutual TLS when only known clients may connect.
//
// # Use
//
//	l, err := nbd.ListenUnix(ctx, "/run/encblk/nbd.sock", -1)
//	...
//	exp := nbd.Export{Device: blockdev.ByteGranular(vol), MultiConn: true}
//	srv := &nbd.Server{Exports: nbd.StaticExports{"": exp}, Logger: logger}
//	err = srv.Serve(ctx, l) // until ctx is cancelled: ErrServerClosed
//
// Errors a device returns choose the NBD error by the syscall.Errno they
// wrap (see Export); the debug log names every option and command as the
// specification does.
package nbd
