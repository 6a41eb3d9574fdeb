#!/usr/bin/env bash
# Compares pkg/nbd (bench/nbdserve, plain file) with nbdkit's file plugin:
# the four fio jobs of the performance issue, fio's nbd engine over a unix
# socket, a 1 GiB backing file of random data in the page cache. Each job
# runs against each server in turn, in the same run; the table shows
# absolute figures and pkg/nbd / nbdkit.
#
#   bench/nbd-vs-nbdkit.sh [--quick] [--runtime S] [--size MiB] [--rounds N] [--netpoller] [--conns N]
#
# --conns N runs each job as N fio jobs at once, each on its own NBD
# connection, with the same iodepth each (default 1: the issue's jobs).
#
# --netpoller adds a third server, pkg/nbd with every connection on the Go
# runtime's network poller (nbd.Server.BlockingConns -1) instead of the
# default blocking socket for the first connection.
#
# Needs fio and nbdkit (Debian: fio, nbdkit). Nothing asserts a timing.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

runtime=6 ramp=1 size_mib=1024 rounds=1 conns=1
servers=(nbdkit pkg/nbd)
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) runtime=2 ramp=1 size_mib=256 ;;
	--runtime) need_value "$@"; runtime=$2; shift ;;
	--size) need_value "$@"; size_mib=$2; shift ;;
	--rounds) need_value "$@"; rounds=$2; shift ;;
	--netpoller) servers=(nbdkit pkg/nbd pkg/nbd-poll) ;;
	--conns) need_value "$@"; conns=$2; shift ;;
	-h|--help) usage; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
	shift
done
need_positive --rounds "$rounds"
need_positive --conns "$conns"
need_tools nbdkit go python3
need_fio_nbd

work=$(mktemp -d /tmp/nbdbench.XXXXXX)
pid=""
cleanup() {
	if [ -n "$pid" ]; then stop_pid "$pid"; fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

nbdserve=$(cached_build nbdserve ./bench/nbdserve)
img=$work/disk.img
head -c $((size_mib << 20)) /dev/urandom >"$img"
sock=$work/nbd.sock

start() { # server
	rm -f "$sock"
	case "$1" in
	nbdkit) nbdkit --foreground --exit-with-parent -U "$sock" file "$img" >"$work/server.log" 2>&1 & pid=$! ;;
	pkg/nbd) "$nbdserve" -socket "$sock" -file "$img" >"$work/server.log" 2>&1 & pid=$! ;;
	pkg/nbd-poll) "$nbdserve" -socket "$sock" -file "$img" -blocking-conns -1 >"$work/server.log" 2>&1 & pid=$! ;;
	esac
	wait_socket "$sock" "$pid" "$work/server.log"
}
stop() { stop_pid "$pid"; pid=""; }

# name rw bs iodepth metric
jobs=(
	"seqread-1M-qd16 read 1M 16 bw"
	"seqwrite-1M-qd16 write 1M 16 bw"
	"randread-4k-qd32 randread 4k 32 iops"
	"randwrite-4k-qd32 randwrite 4k 32 iops"
)

fiojob() { # rw bs iodepth metric -> number (MiB/s or IOPS)
	local out
	out=$(fio --name=j --ioengine=nbd --uri="nbd+unix:///?socket=$sock" \
		--rw="$1" --bs="$2" --iodepth="$3" --time_based --runtime="$runtime" \
		--ramp_time="$ramp" --numjobs="$conns" --group_reporting \
		--output-format=json 2>/dev/null | sed -n '/^{/,$p')
	python3 -c '
import json,sys
j=json.load(sys.stdin)["jobs"][0]
d=j["read"] if j["read"]["io_bytes"]>0 else j["write"]
print(round(d["bw_bytes"]/1048576) if sys.argv[1]=="bw" else round(d["iops"]))
' "$4" <<<"$out"
}

declare -A res
for ((r = 0; r < rounds; r++)); do
	for j in "${jobs[@]}"; do
		read -r name rw bs qd metric <<<"$j"
		for srv in "${servers[@]}"; do
			fresh_cache "$img" # the same page cache for both servers
			start "$srv"
			v=$(fiojob "$rw" "$bs" "$qd" "$metric")
			stop
			res[$name,$srv]=$(( ${res[$name,$srv]:-0} + v ))
		done
	done
done

ratio() { python3 -c "print(f'{$1/$2:.2f}x' if $2 else 'n/a')"; }
if [ ${#servers[@]} -eq 2 ]; then
	printf '%-20s %14s %14s %8s\n' job nbdkit pkg/nbd ratio
else
	printf '%-20s %14s %14s %8s %14s %8s\n' job nbdkit pkg/nbd ratio pkg/nbd-poll ratio
fi
for j in "${jobs[@]}"; do
	read -r name rw bs qd metric <<<"$j"
	unit=MiB/s; [ "$metric" = iops ] && unit=IOPS
	a=$(( ${res[$name,nbdkit]} / rounds )) b=$(( ${res[$name,pkg/nbd]} / rounds ))
	line=$(printf '%-20s %9s %-4s %9s %-4s %8s' "$name" "$a" "$unit" "$b" "$unit" "$(ratio "$b" "$a")")
	if [ ${#servers[@]} -gt 2 ]; then
		c=$(( ${res[$name,pkg/nbd-poll]} / rounds ))
		line+=$(printf ' %9s %-4s %8s' "$c" "$unit" "$(ratio "$c" "$a")")
	fi
	echo "$line"
done
echo "($(date -u +%F), $(nproc) CPUs, runtime ${runtime}s, ${size_mib} MiB file, $rounds round(s), $conns connection(s) per job)"
