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

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)

rounds=5 encblk="" json_out=""
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) rounds=$2; shift ;;
	--encblk) encblk=$2; shift ;;
	--json) json_out=$2; shift ;;
	-h|--help) sed -n '2,10p' "$0"; exit 0 ;;
	*) echo "rotate.sh: unknown argument $1 (see --help)" >&2; exit 1 ;;
	esac
	shift
done
case $rounds in '' | *[!0-9]* | 0) echo "rotate.sh: --rounds wants a positive number" >&2; exit 1 ;; esac
for t in go python3; do
	command -v "$t" >/dev/null || { echo "rotate.sh: $t not found (run scripts/deps.sh)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/encblk-rotate.XXXXXX)
server_pid=""
stop_server() {
	if [ -n "$server_pid" ]; then
		kill "$server_pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
		server_pid=""
	fi
}
cleanup() {
	stop_server
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

if [ -z "$encblk" ]; then
	bin=${XDG_CACHE_HOME:-$HOME/.cache}/encblk-bench
	mkdir -p "$bin"
	echo "building encblk..." >&2
	(cd "$top" && CGO_ENABLED=0 go build -o "$bin/encblk" ./cmd/encblk)
	encblk=$bin/encblk
fi

fast_kdf=(--pbkdf pbkdf2 --pbkdf-force-iterations 1000)
head -c 64 /dev/urandom >"$work/key-a"
head -c 64 /dev/urandom >"$work/key-b"
results=$work/results.txt
: >"$results"

# rotate_n IMG MODE: N rotations, alternating keys; one line per rotation.
rotate_n() {
	local img=$1 mode=$2 old=key-a new=key-b
	for i in $(seq "$rounds"); do
		local t0=$EPOCHREALTIME
		"$encblk" rotate "$img" --key-file "$work/$old" --new-key-file "$work/$new" "${fast_kdf[@]}" >/dev/null
		local t1=$EPOCHREALTIME
		echo "$(basename "$img" .img) $mode $t0 $t1" >>"$results"
		local tmp=$old; old=$new; new=$tmp
	done
	# leave the volume opened by key-a for the next mode
	if [ "$old" != key-a ]; then
		"$encblk" rotate "$img" --key-file "$work/$old" --new-key-file "$work/key-a" "${fast_kdf[@]}" >/dev/null
	fi
}

for size in 1G 64G; do
	img=$work/$size.img
	truncate -s "$size" "$img"
	"$encblk" format --batch-mode --key-file "$work/key-a" "${fast_kdf[@]}" "$img" >/dev/null
	echo "$size: offline..." >&2
	rotate_n "$img" offline
	echo "$size: online..." >&2
	"$encblk" serve "$img" --key-file "$work/key-a" --listen "unix:$work/nbd.sock" >"$work/server.log" 2>&1 &
	server_pid=$!
	for _ in $(seq 200); do
		[ -S "$work/nbd.sock" ] && break
		kill -0 "$server_pid" 2>/dev/null || { echo "rotate.sh: server exited; log:" >&2; cat "$work/server.log" >&2; exit 1; }
		sleep 0.05
	done
	rotate_n "$img" online
	grep -c rotate-kek "$work/server.log" >/dev/null ||
		{ echo "rotate.sh: the server did not do the online rotations; log:" >&2; cat "$work/server.log" >&2; exit 1; }
	stop_server
	rm -f "$work/nbd.sock"
	echo "$size: $(du -h "$img" | cut -f1) allocated" >&2
	rm -f "$img"
done

python3 - "$results" "$json_out" "$rounds" <<'PY'
import json, sys, statistics, datetime, platform, os
path, json_out, rounds = sys.argv[1:]
t = {}
for line in open(path):
    size, mode, a, b = line.split()
    t.setdefault((size, mode), []).append((float(b) - float(a)) * 1000)
print(f"encblk rotate wall time in ms (the whole CLI run; pbkdf2 1000 iterations), {rounds} rotations each")
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
