package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/encblk/encblk/pkg/blockdev"
)

// socketPair returns the two ends of a connected unix stream socket.
func socketPair(tb testing.TB) (net.Conn, net.Conn) {
	tb.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			tb.Fatal(err)
		}
		return c
	}
	return conn(fds[0]), conn(fds[1])
}

// benchTransmission serves an in-memory export on one end of a socket pair
// in transmission phase and drives it from the other with qd requests in
// flight: the server's data path without a device's I/O cost.
func benchTransmission(b *testing.B, typ uint16, size uint32, qd int) {
	srvConn, cli := socketPair(b)
	s := fuzzServer()
	s.MaxInFlightRequests = 256
	be := &memBackend{data: make([]byte, 64*int(size)), info: blockdev.Info{CanFlush: true}}
	exp, err := negotiate("", Export{Device: be})
	if err != nil {
		b.Fatal(err)
	}
	sess := &session{srv: s, conn: srvConn, log: s.logger(), structured: true}
	sess.br = newReader(srvConn)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = newTransmission(sess, exp).run(context.Background(), 0, 0)
		_ = srvConn.Close()
	}()

	payload := make([]byte, size)
	reqs := make(chan struct{}, qd)
	go func() {
		w := bufio.NewWriterSize(cli, 256<<10)
		var h [28]byte
		for i := 0; i < b.N; i++ {
			reqs <- struct{}{}
			binary.BigEndian.PutUint32(h[0:], requestMagic)
			binary.BigEndian.PutUint16(h[4:], 0)
			binary.BigEndian.PutUint16(h[6:], typ)
			binary.BigEndian.PutUint64(h[8:], uint64(i))
			binary.BigEndian.PutUint64(h[16:], uint64(i%64)*uint64(size))
			binary.BigEndian.PutUint32(h[24:], size)
			_, _ = w.Write(h[:])
			if typ == cmdWrite {
				_, _ = w.Write(payload)
			}
			if len(reqs) == qd || i == b.N-1 {
				_ = w.Flush()
			}
		}
		binary.BigEndian.PutUint16(h[6:], cmdDisc)
		_, _ = w.Write(h[:])
		_ = w.Flush()
	}()

	r := bufio.NewReaderSize(cli, 256<<10)
	var hdr [20]byte
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := io.ReadFull(r, hdr[:4]); err != nil {
			b.Fatal(err)
		}
		switch binary.BigEndian.Uint32(hdr[:4]) {
		case simpleMagic:
			if _, err := io.ReadFull(r, hdr[4:16]); err != nil {
				b.Fatal(err)
			}
		case structureMagic:
			if _, err := io.ReadFull(r, hdr[4:20]); err != nil {
				b.Fatal(err)
			}
			if _, err := r.Discard(int(binary.BigEndian.Uint32(hdr[16:]))); err != nil {
				b.Fatal(err)
			}
		default:
			b.Fatalf("reply magic % x", hdr[:4])
		}
		if binary.BigEndian.Uint32(hdr[:4]) == simpleMagic && binary.BigEndian.Uint32(hdr[4:]) != 0 {
			b.Fatalf("error reply %d", binary.BigEndian.Uint32(hdr[4:]))
		}
		<-reqs
	}
	b.StopTimer()
	<-done
	_ = cli.Close()
}

func BenchmarkRead4KQD32(b *testing.B)  { benchTransmission(b, cmdRead, 4096, 32) }
func BenchmarkWrite4KQD32(b *testing.B) { benchTransmission(b, cmdWrite, 4096, 32) }
func BenchmarkRead1MQD16(b *testing.B)  { benchTransmission(b, cmdRead, 1<<20, 16) }
func BenchmarkWrite1MQD16(b *testing.B) { benchTransmission(b, cmdWrite, 1<<20, 16) }
