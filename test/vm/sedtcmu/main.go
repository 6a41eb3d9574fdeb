// Command sedtcmu is a TEST-ONLY tool of test/vm: it presents a simulated
// self-encrypting drive (pkg/sed/sedsim) to the running kernel as a SCSI
// disk through target_core_user and tcm_loop (see internal/testtcmu), so
// that encblk, sedutil-cli and hdparm reach it through the kernel's SCSI
// stack. It needs root, configfs and the target_core_user and tcm_loop
// modules. It is not part of encblk.
//
//	sedtcmu -backing FILE -state FILE [-mode opal|ata] [-vendor ATA] -ready FILE
//
// It writes the disk's /dev path to the -ready file once the kernel has
// scanned it, and serves until SIGTERM or SIGINT, when it removes the
// disk, the tcm_loop target and the backstore. A restart with the same
// -state is a power cycle of the drive. -fault FILE names a file whose
// first word (garbage, session-garbage, hang, sense) makes security commands
// misbehave.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/encblk/encblk/internal/testtcmu"
	"github.com/encblk/encblk/pkg/sed/sedsim"
)

func main() {
	backing := flag.String("backing", "", "backing file (its size is the disk's)")
	state := flag.String("state", "", "drive firmware state file (kept across restarts)")
	mode := flag.String("mode", "opal", "opal (TCG Opal 2) or ata (ATA Security feature set)")
	vendor := flag.String("vendor", "ATA", `INQUIRY vendor; "ATA" looks like a SATA disk behind SAT (ATA PASS-THROUGH)`)
	name := flag.String("name", "sedsim0", "backstore name")
	wwn := flag.String("wwn", "naa.5001405e0c0b0000", "tcm_loop target WWN")
	ready := flag.String("ready", "", "write the disk's /dev path here when it is up")
	fault := flag.String("fault", "", "fault file: first word garbage, session-garbage, hang or sense")
	hang := flag.Duration("hang", 45*time.Second, "how long a hung security command takes")
	cmdTimeout := flag.Int("cmd-timeout", 20, "TCMU cmd_time_out in seconds")
	master := flag.String("master", "sedsim-master", "ATA mode: factory master password")
	verbose := flag.Bool("v", false, "log every security exchange")
	flag.Parse()
	log.SetPrefix("sedtcmu: ")
	log.SetFlags(log.Lmicroseconds)
	if *backing == "" || *state == "" {
		log.Fatal("-backing and -state are required")
	}
	st, err := os.Stat(*backing)
	if err != nil {
		log.Fatal(err)
	}
	disk := &testtcmu.Disk{Vendor: *vendor, Product: "sedsim " + *mode, Revision: "1.0", Serial: "SEDSIM" + *name,
		Size: st.Size(), FaultFile: *fault, HangFor: *hang}
	if *verbose {
		disk.Log = log.Printf
	}
	switch *mode {
	case "opal":
		d, err := sedsim.New(*backing, sedsim.Options{StatePath: *state})
		if err != nil {
			log.Fatal(err)
		}
		d.PowerCycle() // a (re)start is a power-on
		disk.Opal, disk.Media = d, d
	case "ata":
		d, err := sedsim.OpenATA(*backing, *state, []byte(*master))
		if err != nil {
			log.Fatal(err)
		}
		if err := d.PowerCycle(); err != nil {
			log.Fatal(err)
		}
		disk.ATA, disk.Media = d, d
	default:
		log.Fatalf("-mode %q: want opal or ata", *mode)
	}

	x := &testtcmu.Export{HBA: 7, Name: *name, Config: "encblk-sedtcmu", Size: st.Size(), WWN: *wwn, Timeout: *cmdTimeout}
	if err := x.Create(); err != nil {
		x.Remove()
		log.Fatal(err)
	}
	ring, err := testtcmu.OpenUIO(*name, "encblk-sedtcmu")
	if err != nil {
		x.Remove()
		log.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ring.Serve(disk, nil) }()
	dev, err := x.Attach(30 * time.Second)
	if err != nil {
		x.Remove()
		log.Fatal(err)
	}
	log.Printf("%s mode %s vendor %q is /dev/%s", *name, *mode, *vendor, dev)
	if *ready != "" {
		if err := os.WriteFile(*ready, []byte("/dev/"+dev+"\n"), 0o644); err != nil {
			x.Remove()
			log.Fatal(err)
		}
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case s := <-sig:
		log.Printf("%v: removing /dev/%s", s, dev)
	case err := <-done:
		log.Printf("ring stopped: %v", err)
	}
	// The ring keeps serving while the kernel removes the disk (it may
	// send SYNCHRONIZE CACHE on the way out).
	if err := x.Remove(); err != nil {
		fmt.Fprintln(os.Stderr, "sedtcmu:", err)
		os.Exit(1)
	}
}
