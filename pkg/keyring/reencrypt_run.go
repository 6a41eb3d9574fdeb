package keyring

import (
	"context"
	"runtime"
	"time"
	"unsafe"
)

// RunOptions modify Reencryptor.Run.
type RunOptions struct {
	// Throttle caps the rewrite rate in bytes per second; 0 is no cap.
	Throttle uint64
	// Progress, when set, is called after each zone with the bytes done
	// and the data size.
	Progress func(done, total uint64)
}

// runChunk is the unit of parallel crypto and of paced writes.
const runChunk = 1 << 20

// zoneData is a hot zone read ahead, with the checksums of its blocks.
type zoneData struct {
	p    uint64
	buf  []byte
	sums []byte
	err  error
}

// Run rewrites the remaining zones and finishes the reencryption. It
// overlaps the work: while one zone is protected, written, synced and
// committed, the next is read, hashed, decrypted and encrypted (on every
// CPU) into memory, ready to be written once its own protection is
// committed. When ctx is cancelled it stops after the zone in progress,
// leaving a clean state that OpenReencryption and Run (or cryptsetup
// reencrypt --resume-only) continue, and returns ctx's error.
func (rc *Reencryptor) Run(ctx context.Context, o *RunOptions) error {
	var opts RunOptions
	if o != nil {
		opts = *o
	}
	if rc.shift != nil || rc.back != nil || rc.unshift != nil {
		return rc.runSteps(ctx, &opts)
	}
	stop, ahead := make(chan struct{}), make(chan struct{})
	// Run returns only once readAhead has: it uses the ciphers, which
	// Close wipes and unmaps after Run (a stopped Run used to return with
	// the next zone still being crypted: SIGSEGV in the XTS code).
	defer func() { close(stop); <-ahead }()
	zones := make(chan zoneData, 1)
	free := make(chan []byte, 2)
	go func() {
		defer close(ahead)
		rc.readAhead(rc.progress, zones, free, stop)
	}()

	start, startDone := time.Now(), rc.progress
	for !rc.Done() {
		if err := ctx.Err(); err != nil {
			return err
		}
		z := <-zones
		if z.err != nil {
			return z.err
		}
		err := rc.stepZone(z.buf, z.p, z.sums, func() error {
			return rc.writePaced(z.buf, z.p, opts.Throttle, start, startDone)
		})
		free <- z.buf
		if err != nil {
			return err
		}
		if opts.Progress != nil {
			opts.Progress(rc.progress, rc.layout.size)
		}
	}
	return rc.Finish()
}

// readAhead prepares the zones from p on, one ahead of the writer: reads
// the old ciphertext, hashes its blocks, and turns it into the new
// ciphertext in memory.
func (rc *Reencryptor) readAhead(p uint64, zones chan<- zoneData, free chan []byte, stop <-chan struct{}) {
	free <- alignedBuffer(int(rc.zone))
	free <- alignedBuffer(int(rc.zone))
	for p < rc.layout.size {
		var buf []byte
		select {
		case buf = <-free:
		case <-stop:
			return
		}
		n := min(rc.zone, rc.layout.size-p)
		buf = buf[:n]
		z := zoneData{p: p, buf: buf}
		if z.err = rc.readData(buf, p); z.err == nil {
			z.sums = rc.protection(buf)
			z.err = rc.cryptParallel(buf, p)
		}
		select {
		case zones <- z:
		case <-stop:
			return
		}
		if z.err != nil {
			return
		}
		p += n
	}
}

// cryptParallel is crypt on one goroutine per CPU, chunk by chunk.
func (rc *Reencryptor) cryptParallel(buf []byte, p uint64) error {
	return parallelChunks(buf, func(b []byte, off uint64) error { return rc.crypt(b, p+off) })
}

// parallelChunks calls fn on each runChunk of buf (with its offset in
// buf), on one goroutine per CPU, and returns the first error.
func parallelChunks(buf []byte, fn func(b []byte, off uint64) error) error {
	nChunks := (len(buf) + runChunk - 1) / runChunk
	next := make(chan int, nChunks)
	for i := range nChunks {
		next <- i
	}
	close(next)
	workers := min(runtime.GOMAXPROCS(0), nChunks)
	errs := make(chan error, workers)
	for range workers {
		go func() {
			var err error
			for i := range next {
				lo, hi := i*runChunk, min((i+1)*runChunk, len(buf))
				if e := fn(buf[lo:hi], uint64(lo)); e != nil && err == nil {
					err = e
				}
			}
			errs <- err
		}()
	}
	var first error
	for range workers {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// runSteps is Run for an encryption or decryption in place: Step after
// Step (each zone: commit, read, crypt, write, sync, commit), throttled,
// then Finish.
func (rc *Reencryptor) runSteps(ctx context.Context, opts *RunOptions) error {
	start, done0 := time.Now(), rc.progress
	for !rc.Done() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := rc.Step(); err != nil {
			return err
		}
		if opts.Throttle > 0 {
			due := start.Add(time.Duration(float64(rc.progress-done0) / float64(opts.Throttle) * float64(time.Second)))
			time.Sleep(time.Until(due))
		}
		if opts.Progress != nil {
			opts.Progress(rc.progress, rc.layout.size)
		}
	}
	return rc.Finish()
}

// writePaced writes the zone's new ciphertext (buf, at progress p) in
// chunks, paced to throttle bytes/s counted from start, when done0 bytes
// were done (0: unpaced, one write).
func (rc *Reencryptor) writePaced(buf []byte, p, throttle uint64, start time.Time, done0 uint64) error {
	if throttle == 0 {
		return rc.writeData(buf, p)
	}
	for lo := 0; lo < len(buf); lo += runChunk {
		hi := min(lo+runChunk, len(buf))
		if err := rc.writeData(buf[lo:hi], p+uint64(lo)); err != nil {
			return err
		}
		done := p + uint64(hi) - done0
		due := start.Add(time.Duration(float64(done) / float64(throttle) * float64(time.Second)))
		time.Sleep(time.Until(due))
	}
	return nil
}

// alignedBuffer returns n bytes starting at a 4096-byte boundary, so that
// a data device opened for direct I/O (O_DIRECT) takes whole zones
// without a copy through the page cache.
func alignedBuffer(n int) []byte {
	const align = 4096
	b := make([]byte, n+align)
	off := int(uintptr(unsafe.Pointer(&b[0])) & (align - 1))
	if off != 0 {
		off = align - off
	}
	return b[off : off+n : off+n]
}
