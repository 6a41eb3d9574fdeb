#!/usr/bin/env bash
# Online reencryption: what clients keep. A LUKS2 volume served by encblk
# serve over a unix socket; fio's nbd engine does 4 KiB random reads at
# iodepth 16, first idle, then while the server reencrypts the volume
# (encblk reencrypt on the served volume, which passes --throttle to the
# server). For each rate cap: "default" (the server's --reencrypt-rate,
# 48 MiB/s), or a --throttle value (0: no cap). Rates alternate within a
# round, idle and busy alternate within a rate. Prints IOPS idle, IOPS
# during, and the ratio. A benchmark, not a test: nothing asserts a timing.
#
#   bench/reencrypt-online.sh [--size 2G] [--rounds 3] [--secs 15] [--rates "default 0"] [--encblk BINARY]
set -euo pipefail
. "$(dirname "$0")/lib.sh"

size=2G rounds=3 secs=15 rates="default 0" encblk=""
while [ $# -gt 0 ]; do
	case $1 in
	--size) need_value "$@"; size=$2; shift ;;
	--rounds) need_value "$@"; rounds=$2; shift ;;
	--secs) need_value "$@"; secs=$2; shift ;;
	--rates) need_value "$@"; rates=$2; shift ;;
	--encblk) need_value "$@"; encblk=$2; shift ;;
	-h|--help) usage; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
	shift
done
need_positive --rounds "$rounds"
need_positive --secs "$secs"
need_tools go python3
need_fio_nbd

work=$(mktemp -d /tmp/encblk-reencrypt-online.XXXXXX)
srv=""
cleanup() {
	[ -n "$srv" ] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
export ENCBLK_RUNTIME_DIR=$work/run

build_encblk
img=$work/vol.img
bytes=$(numfmt --from=iec "$size")
head -c 32 /dev/urandom >"$work/key"
dd if=/dev/zero of="$img" bs=1M count=$(((bytes >> 20) + 16)) status=none conv=fsync
"$encblk" format --batch-mode --key-file "$work/key" --pbkdf pbkdf2 --pbkdf-force-iterations 1000 "$img" >/dev/null
sock=$work/nbd.sock
"$encblk" serve --listen "unix:$sock" --key-file "$work/key" "$img" >"$work/serve.log" 2>&1 &
srv=$!
wait_socket "$sock" "$srv" "$work/serve.log"
# Write the whole volume once, so reads hit allocated, encrypted blocks.
fio --name=fill --ioengine=nbd --uri="nbd+unix:///?socket=$sock" --rw=write --bs=1M --iodepth=8 \
	--size="$bytes" --output-format=json >/dev/null 2>&1

iops() {
	fio --name=r --ioengine=nbd --uri="nbd+unix:///?socket=$sock" --rw=randread --bs=4k --iodepth=16 \
		--time_based --runtime="$secs" --output-format=json 2>/dev/null | sed -n '/^{/,$p' |
		python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["read"]["iops"]))'
}
running() { "$encblk" status "$img" 2>/dev/null | grep -q '^reencryption:.*running'; }

printf '%-6s %-8s %10s %12s %6s\n' round rate idle-IOPS during-IOPS kept
for round in $(seq "$rounds"); do
	for rate in $rates; do
		idle=$(iops)
		throttle=()
		[ "$rate" != default ] && throttle=(--throttle "$rate")
		"$encblk" reencrypt --key-file "$work/key" "${throttle[@]}" "$img" >"$work/reencrypt.log" 2>&1 &
		rc=$!
		for _ in $(seq 200); do running && break; sleep 0.05; done
		running || { cat "$work/reencrypt.log" >&2; die "the server did not start the reencryption"; }
		during=$(iops)
		finished=yes
		running || finished=no # the reencryption ended before fio did: the figure mixes in idle time
		wait "$rc" || { cat "$work/reencrypt.log" >&2; die "encblk reencrypt failed"; }
		kept=$(python3 -c "print(f'{100 * $during / $idle:.0f} %')")
		[ "$finished" = yes ] || kept="$kept (ended early)"
		printf '%-6s %-8s %10s %12s %6s\n' "$round" "$rate" "$idle" "$during" "$kept"
	done
done
