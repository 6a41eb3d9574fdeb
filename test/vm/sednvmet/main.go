// Command sednvmet is a TEST-ONLY tool of test/vm: an NVMe/TCP target
// (internal/testnvmet) on a loopback address whose one namespace is a
// simulated Opal drive (pkg/sed/sedsim), for the guest kernel's NVMe/TCP
// host, its Opal client and cryptsetup 2.7's --hw-opal. It is not part of
// encblk.
//
//	sednvmet -backing FILE -state FILE [-listen 127.0.0.1:4420] [-nqn NQN] -ready FILE
//
// A restart with the same -state is a power cycle of the drive. It serves
// until SIGTERM or SIGINT.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/encblk/encblk/internal/testnvmet"
	"github.com/encblk/encblk/pkg/sed"
	"github.com/encblk/encblk/pkg/sed/sedsim"
)

func main() {
	backing := flag.String("backing", "", "backing file (its size is the namespace's)")
	state := flag.String("state", "", "drive firmware state file (kept across restarts)")
	listen := flag.String("listen", "127.0.0.1:4420", "loopback address to listen on")
	nqn := flag.String("nqn", "nqn.2026-12.org.encblk:sedsim", "subsystem NQN")
	ready := flag.String("ready", "", "write the listening address here when it is up")
	verbose := flag.Bool("v", false, "log connections and refused commands")
	trace := flag.String("trace", "", "append every Security Send/Receive payload to this file, in hex")
	flag.Parse()
	log.SetPrefix("sednvmet: ")
	log.SetFlags(log.Lmicroseconds)
	if *backing == "" || *state == "" {
		log.Fatal("-backing and -state are required")
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		log.Fatal(err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		log.Fatalf("-listen %s: only loopback addresses", *listen)
	}
	d, err := sedsim.New(*backing, sedsim.Options{StatePath: *state})
	if err != nil {
		log.Fatal(err)
	}
	d.PowerCycle() // a (re)start is a power-on
	t := &testnvmet.Target{NQN: *nqn, Serial: "SEDSIMNVME1", Drive: d}
	if *verbose {
		t.Log = log.Printf
	}
	if *trace != "" {
		tf, err := os.OpenFile(*trace, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			log.Fatal(err)
		}
		defer tf.Close()
		t.Trace = func(send bool, proto sed.SecurityProtocol, spsp uint16, data []byte) {
			dir := "recv"
			if send {
				dir = "send"
			}
			n := len(data)
			for n > 0 && data[n-1] == 0 {
				n--
			}
			fmt.Fprintf(tf, "%s %02x %04x %d %x\n", dir, uint8(proto), spsp, len(data), data[:n])
		}
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	if *ready != "" {
		if err := os.WriteFile(*ready, []byte(l.Addr().String()+"\n"), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		l.Close()
	}()
	if err := t.Serve(l); err != nil {
		log.Fatal(err)
	}
}
