package keyring

import (
	"context"
	"runtime"
	"time"
)

// RunOptions modify Reencryptor.Run.
type RunOptions struct {
	// Throttle caps the rewrite rate in bytes per second; 0 is no cap.
	Throttle uint64
	// Progress, when set, is called after each zone with the bytes done
	// and the data size.
	Progress func(done, total uint64)
}

// runChunk is the unit that is decrypted, encrypted and written while
// the next one is being worked on.
const runChunk = 1 << 20

// zoneData is a hot zone read ahead, with the checksums of its blocks.
type zoneData struct {
	p    uint64
	buf  []byte
	sums []byte
	err  error
}

// Run rewrites the remaining zones and finishes the reencryption. It
// overlaps the work: the next zone is read and hashed while the current
// one is rewritten, and within a zone the chunks are decrypted and
// encrypted on every CPU while earlier chunks are written. When ctx is
// cancelled it stops after the zone in progress, leaving a clean state
// that Open/Run (or cryptsetup reencrypt --resume-only) continue, and
// returns ctx's error.
func (rc *Reencryptor) Run(ctx context.Context, o *RunOptions) error {
	var opts RunOptions
	if o != nil {
		opts = *o
	}
	stop := make(chan struct{})
	defer close(stop)
	zones := make(chan zoneData, 1)
	free := make(chan []byte, 2)
	go rc.readAhead(rc.progress, zones, free, stop)

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
			return rc.rewrite(z.buf, z.p, opts.Throttle, start, startDone)
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

// readAhead reads the zones from p on, one ahead of the writer.
func (rc *Reencryptor) readAhead(p uint64, zones chan<- zoneData, free chan []byte, stop <-chan struct{}) {
	free <- make([]byte, rc.zone)
	free <- make([]byte, rc.zone)
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
			z.sums = rc.checksums(buf)
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

// rewrite turns the zone's old ciphertext (buf, at progress p) into new
// ciphertext and writes it: chunks are crypted by one worker per CPU and
// written in order as they become ready, paced to throttle bytes/s
// (counted from start, when done0 bytes were done).
func (rc *Reencryptor) rewrite(buf []byte, p, throttle uint64, start time.Time, done0 uint64) error {
	nChunks := (len(buf) + runChunk - 1) / runChunk
	ready := make([]chan error, nChunks)
	for i := range ready {
		ready[i] = make(chan error, 1)
	}
	next := make(chan int, nChunks)
	for i := range nChunks {
		next <- i
	}
	close(next)
	for range min(runtime.GOMAXPROCS(0), nChunks) {
		go func() {
			for i := range next {
				lo, hi := i*runChunk, min((i+1)*runChunk, len(buf))
				ready[i] <- rc.crypt(buf[lo:hi], p+uint64(lo))
			}
		}()
	}
	var firstErr error
	for i := range nChunks {
		err := <-ready[i] // wait for every worker before returning buf
		if firstErr != nil {
			continue
		}
		if err != nil {
			firstErr = err
			continue
		}
		lo, hi := i*runChunk, min((i+1)*runChunk, len(buf))
		if err := rc.writeData(buf[lo:hi], p+uint64(lo)); err != nil {
			firstErr = err
			continue
		}
		if throttle > 0 {
			done := p + uint64(hi) - done0
			due := start.Add(time.Duration(float64(done) / float64(throttle) * float64(time.Second)))
			time.Sleep(time.Until(due))
		}
	}
	return firstErr
}
