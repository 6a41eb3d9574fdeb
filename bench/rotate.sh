#!/usr/bin/env bash
# KEK rotation time against volume size: formats a 1 GiB and a 64 GiB
# sparse backing (LUKS2, fast KDF: pbkdf2 with 1000 iterations, so the KDF
# is negligible), then times `encblk rotate` on each, offline (the CLI
# rewrites the header) and online (the backing is served; the CLI asks the
# server over its control socket), alternating between two key files. The
# data key and the data never change, so the times should not depend on
# the size. This is a benchmark, not a test: nothing asserts a timing.
#
#   bench/rotate.sh [--rounds N] [--encblk BINARY] [--json FILE]
set -euo pipefail

. "$(dirname "$0")/lib.sh"

rounds=10 encblk="" json_out=""
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) need_value "$@"; rounds=$2; shift ;;
	--encblk) need_value "$@"; encblk=$2; shift ;;
	--json) need_value "$@"; json_out=$2; shift ;;
	-h|--help) usage; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
	shift
done
need_positive --rounds "$rounds"
need_tools go python3

work=$(mktemp -d /tmp/encblk-rotate.XXXXXX)
server_pids=()
stop_servers() {
	for pid in "${server_pids[@]}"; do
		stop_pid "$pid"
	done
	server_pids=()
}
cleanup() {
	stop_servers
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

build_encblk

fast_kdf=(--pbkdf pbkdf2 --pbkdf-force-iterations 1000)
head -c 64 /dev/urandom >"$work/key-a"
head -c 64 /dev/urandom >"$work/key-b"
results=$work/results.txt
: >"$results"

# Both sizes are rotated in every round, one after the other, so load on
# the machine hits both alike. Keys alternate: round i rotates from
# key-a to key-b when i is odd, back when even.
sizes=(1G 64G)
for size in "${sizes[@]}"; do
	truncate -s "$size" "$work/$size.img"
	"$encblk" format --batch-mode --key-file "$work/key-a" "${fast_kdf[@]}" "$work/$size.img" >/dev/null
done

# rotate_all MODE: every round, each size once.
rotate_all() {
	local old=key-a new=key-b
	for i in $(seq "$rounds"); do
		for size in "${sizes[@]}"; do
			local t0=$EPOCHREALTIME
			"$encblk" rotate "$work/$size.img" --key-file "$work/$old" --new-key-file "$work/$new" "${fast_kdf[@]}" >/dev/null
			echo "$size $1 $t0 $EPOCHREALTIME" >>"$results"
		done
		local tmp=$old; old=$new; new=$tmp
	done
	# leave both volumes opened by key-a
	if [ "$old" != key-a ]; then
		for size in "${sizes[@]}"; do
			"$encblk" rotate "$work/$size.img" --key-file "$work/$old" --new-key-file "$work/key-a" "${fast_kdf[@]}" >/dev/null
		done
	fi
}

echo "offline..." >&2
rotate_all offline

echo "online..." >&2
for size in "${sizes[@]}"; do
	"$encblk" serve "$work/$size.img" --key-file "$work/key-a" --listen "unix:$work/$size.sock" >"$work/server-$size.log" 2>&1 &
	server_pids+=($!)
	wait_socket "$work/$size.sock" "${server_pids[-1]}" "$work/server-$size.log"
done
rotate_all online
for size in "${sizes[@]}"; do
	# the rotations must have been done by the servers, not offline
	n=$(grep -c rotate-kek "$work/server-$size.log" || true)
	[ "$n" -ge "$rounds" ] || { cat "$work/server-$size.log" >&2; die "the $size server did $n online rotations, want $rounds (its log is above)"; }
done
stop_servers
echo "allocated: $(du -h "$work"/*.img | awk '{printf "%s %s  ", $2, $1}')" >&2

python3 - "$results" "$json_out" "$rounds" <<'PY'
import json, sys, statistics, datetime, platform, os
path, json_out, rounds = sys.argv[1:]
t = {}
for line in open(path):
    size, mode, a, b = line.split()
    t.setdefault((size, mode), []).append((float(b) - float(a)) * 1000)
print(f"encblk rotate wall time in ms (the whole CLI run, process start included; pbkdf2 1000 iterations), {rounds} rotations each, sizes interleaved")
print()
print("| backing | mode | median | min | max |")
print("|---|---|---|---|---|")
out = []
for (size, mode), v in t.items():
    print(f"| {size} sparse | {mode} | {statistics.median(v):.0f} ms | {min(v):.0f} ms | {max(v):.0f} ms |")
    out.append({"backing": size, "mode": mode, "ms": v, "median_ms": statistics.median(v)})
if json_out:
    json.dump({"date": datetime.datetime.now(datetime.timezone.utc).isoformat(), "host": platform.node(),
               "cpus": os.cpu_count(), "load": os.getloadavg(), "results": out}, open(json_out, "w"), indent=1)
PY
