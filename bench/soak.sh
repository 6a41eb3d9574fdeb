#!/usr/bin/env bash
# Resident memory of `encblk serve` under sustained load: serves a LUKS2
# volume (4096-byte sectors) over a unix socket, runs fio's nbd engine
# against it for DURATION seconds (two connections: 4 KiB random
# read/write at iodepth 32, and 1 MiB random read/write at iodepth 16),
# samples VmRSS every INTERVAL seconds and prints the start (unlocked,
# before the load), peak and end figures, and the samples. The goal is
# under 64 MiB and flat: no growth over the run. A benchmark, not a test.
#
#   bench/soak.sh [--duration S] [--interval S] [--size SIZE] [--encblk BINARY] [--json FILE]
set -euo pipefail

. "$(dirname "$0")/lib.sh"

duration=60 interval=3 size=1G encblk="" json_out=""
while [ $# -gt 0 ]; do
	case $1 in
	--duration) need_value "$@"; duration=$2; shift ;;
	--interval) need_value "$@"; interval=$2; shift ;;
	--size) need_value "$@"; size=$2; shift ;;
	--encblk) need_value "$@"; encblk=$2; shift ;;
	--json) need_value "$@"; json_out=$2; shift ;;
	-h|--help) usage; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
	shift
done
need_positive --duration "$duration"
need_positive --interval "$interval"
need_tools go python3 numfmt
need_fio_nbd

work=$(mktemp -d /tmp/encblk-soak.XXXXXX)
server_pid="" fio_pid=""
cleanup() {
	if [ -n "$fio_pid" ]; then
		stop_pid "$fio_pid"
	fi
	if [ -n "$server_pid" ]; then
		stop_pid "$server_pid"
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

build_encblk

bytes=$(numfmt --from=iec "$size")
img=$work/soak.img
head -c 32 /dev/urandom >"$work/key"
truncate -s $((bytes + 16 * 1048576)) "$img"
"$encblk" format --batch-mode --key-file "$work/key" --sector-size 4096 \
	--pbkdf pbkdf2 --pbkdf-force-iterations 1000 "$img" >/dev/null
# Fill the data area (random data, in the page cache).
head -c "$bytes" /dev/urandom | dd of="$img" bs=1M seek=16 conv=notrunc status=none iflag=fullblock

sock=$work/nbd.sock
"$encblk" serve "$img" --key-file "$work/key" --listen "unix:$sock" >"$work/server.log" 2>&1 &
server_pid=$!
wait_socket "$sock" "$server_pid" "$work/server.log"
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$server_pid/status"; }
samples=$work/rss.txt
echo "0 $(rss)" >"$samples"

cat >"$work/soak.fio" <<EOF
[global]
ioengine=nbd
uri=nbd+unix:///?socket=$sock
size=$size
runtime=$duration
time_based
[small]
rw=randrw
bs=4k
iodepth=32
[large]
rw=randrw
bs=1M
iodepth=16
EOF
echo "soaking for ${duration}s..." >&2
start=$EPOCHREALTIME
fio --output-format=json --output="$work/fio.json" "$work/soak.fio" >"$work/fio.err" 2>&1 &
fio_pid=$!
while kill -0 "$fio_pid" 2>/dev/null; do
	sleep "$interval"
	kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; die "the server died (its log is above)"; }
	echo "$(awk -v a="$EPOCHREALTIME" -v b="$start" 'BEGIN { printf "%.0f", a - b }') $(rss)" >>"$samples"
done
wait "$fio_pid" || { cat "$work/fio.err" >&2; die "fio failed (its output is above)"; }
fio_pid=""

python3 - "$samples" "$work/fio.json" "$json_out" "$duration" <<'PY'
import json, sys, datetime, platform, os
path, fio_json, json_out, duration = sys.argv[1:]
s = [tuple(int(x) for x in l.split()) for l in open(path)]
mib = lambda k: k / 1024
start, peak, end = s[0][1], max(k for _, k in s), s[-1][1]
jobs = json.load(open(fio_json))["jobs"]
ios = sum(j["read"]["total_ios"] + j["write"]["total_ios"] for j in jobs)
mb = sum(j["read"]["io_bytes"] + j["write"]["io_bytes"] for j in jobs) / 1048576
print(f"encblk serve RSS over a {duration} s fio randrw soak (4 KiB qd32 + 1 MiB qd16), {ios} requests, {mb:.0f} MiB moved")
print()
print("| start | peak | end |")
print("|---|---|---|")
print(f"| {mib(start):.1f} MiB | {mib(peak):.1f} MiB | {mib(end):.1f} MiB |")
print()
print("samples (s: MiB): " + ", ".join(f"{t}: {mib(k):.1f}" for t, k in s))
if json_out:
    json.dump({"date": datetime.datetime.now(datetime.timezone.utc).isoformat(), "host": platform.node(),
               "cpus": os.cpu_count(), "load": os.getloadavg(), "duration_s": int(duration),
               "requests": ios, "rss_kib": s}, open(json_out, "w"), indent=1)
PY
