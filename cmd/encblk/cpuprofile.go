package main

import (
	"log/slog"
	"os"
	"runtime/pprof"
)

// cpuProfileEnv names a file that `encblk serve` writes a CPU profile of
// its whole run to (runtime/pprof; read it with `go tool pprof`). It is
// for measuring the server under load (bench/ublk.sh's ENCBLK_BENCH_PROFILE
// sets it in the test/vm guest), not a setting: an environment variable
// rather than a flag, and nothing is said when it is unset.
const cpuProfileEnv = "ENCBLK_CPUPROFILE"

// startCPUProfile starts the profile cpuProfileEnv asks for and returns
// what stops it and closes the file (a no-op when none was asked for or it
// could not start, which is logged).
func startCPUProfile(log *slog.Logger) (stop func()) {
	path := os.Getenv(cpuProfileEnv)
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		log.Error("cpu profile not written", "env", cpuProfileEnv, "err", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		log.Error("cpu profile not written", "env", cpuProfileEnv, "err", err)
		f.Close()
		return func() {}
	}
	log.Info("writing a cpu profile", "path", path)
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
