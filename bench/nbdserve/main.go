// Command nbdserve serves a plain file over NBD with pkg/nbd and
// backing.Plain, for benchmarks (bench/nbd-vs-nbdkit.sh) and manual
// testing. It is not a product command: no encryption.
//
//	nbdserve -socket /tmp/nbd.sock -file disk.img [-cpuprofile cpu.out] [-blocking-conns N]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/encblk/encblk/internal/backing"
	"github.com/encblk/encblk/pkg/nbd"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "nbdserve:", err)
		os.Exit(1)
	}
}

func run() error {
	sock := flag.String("socket", "", "unix socket path to listen on")
	tcp := flag.String("tcp", "", "TCP address to listen on")
	file := flag.String("file", "", "file to serve")
	ro := flag.Bool("readonly", false, "serve read-only")
	debug := flag.Bool("debug", false, "log every option and command")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile here until exit")
	blocking := flag.Int("blocking-conns", 0, "nbd.Server.BlockingConns: connections on blocking sockets (0 default, -1 none: all on the netpoller)")
	flag.Parse()
	if *file == "" || (*sock == "" && *tcp == "") {
		return errors.New("need -file and -socket or -tcp")
	}
	f, err := backing.Open(*file, backing.Options{ReadOnly: *ro})
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := backing.NewPlain(f)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var ls []net.Listener
	if *sock != "" {
		l, err := nbd.ListenUnix(ctx, *sock, -1)
		if err != nil {
			return err
		}
		ls = append(ls, l)
	}
	if *tcp != "" {
		l, err := nbd.ListenTCP(ctx, *tcp)
		if err != nil {
			return err
		}
		ls = append(ls, l)
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	srv := &nbd.Server{
		Exports: nbd.StaticExports{"": {Device: b, Description: "plain (unencrypted) " + *file, MultiConn: true, Cache: true}},
		Logger:  slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),

		BlockingConns: *blocking,
	}
	if err := srv.Serve(ctx, ls...); !errors.Is(err, nbd.ErrServerClosed) {
		return err
	}
	return nil
}
