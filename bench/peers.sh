#!/usr/bin/env bash
# encblk against what users would otherwise run: the four fio jobs of the
# performance issue (fio's nbd engine over a unix socket) against, in turn,
#   encblk-4096   encblk serve, LUKS2 aes-xts-plain64 512-bit key, 4096-byte sectors
#   encblk-512    the same with 512-byte sectors
#   encblk-plain  encblk serve --plain (no encryption: the server's own cost)
#   nbdkit-file   nbdkit's file plugin (no encryption): the reference
#   nbdkit-luks   nbdkit file + luks filter (LUKS1, aes-xts-plain64)
#   qemu-nbd-luks qemu-nbd with a LUKS image
# Backing files hold random data and sit in the page cache. The table shows
# absolute figures and each server's ratio to nbdkit-file.
#
#   bench/peers.sh [--quick] [--runtime S] [--size MiB] [--json] [--only NAME,...]
#
# Needs fio, nbdkit, qemu-utils, cryptsetup and Go. Nothing asserts a timing.
set -euo pipefail
cd "$(dirname "$0")/.."

runtime=6 ramp=1 size_mib=1024 json=0 only=""
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) runtime=2 ramp=1 size_mib=256 ;;
	--runtime) runtime=$2; shift ;;
	--size) size_mib=$2; shift ;;
	--json) json=1 ;;
	--only) only=$2; shift ;;
	*) echo "usage: $0 [--quick] [--runtime S] [--size MiB] [--json] [--only NAME,...]" >&2; exit 2 ;;
	esac
	shift
done
for t in fio nbdkit qemu-nbd qemu-img cryptsetup go python3; do
	command -v "$t" >/dev/null || { echo "$0: $t not found (scripts/deps.sh)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/encblk-peers.XXXXXX)
sock=$work/nbd.sock
pid=""
cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

servers=(encblk-4096 encblk-512 encblk-plain nbdkit-file nbdkit-luks qemu-nbd-luks)
if [ -n "$only" ]; then
	IFS=, read -r -a servers <<<"nbdkit-file,$only"
fi

go build -o "$work/encblk" ./cmd/encblk
export ENCBLK_RUNTIME_DIR=$work/run
printf 'bench passphrase' >"$work/pass"
size=$((size_mib << 20))
# LUKS headers take 16 MiB (LUKS2) or 2 MiB (LUKS1) before the data.
random_file() { head -c $(($1 + (16 << 20))) /dev/urandom >"$2"; }
for s in "${servers[@]}"; do
	case "$s" in
	encblk-4096 | encblk-512)
		random_file $size "$work/$s.img"
		"$work/encblk" format --batch-mode --key-file "$work/pass" --pbkdf pbkdf2 \
			--pbkdf-force-iterations 1000 --sector-size "${s#encblk-}" "$work/$s.img" ;;
	encblk-plain | nbdkit-file) [ -e "$work/plain.img" ] || head -c $size /dev/urandom >"$work/plain.img" ;;
	nbdkit-luks | qemu-nbd-luks)
		if [ ! -e "$work/luks1.img" ]; then
			random_file $size "$work/luks1.img"
			cryptsetup luksFormat --batch-mode --type luks1 --pbkdf-force-iterations 1000 \
				--key-file "$work/pass" "$work/luks1.img"
		fi ;;
	esac
done
cat "$work"/*.img >/dev/null # into the page cache

start() { # server
	if [ -e "$sock" ]; then echo "$0: $sock is taken" >&2; exit 1; fi
	case "$1" in
	encblk-4096 | encblk-512)
		"$work/encblk" serve --log-level warn --key-file "$work/pass" --listen "unix:$sock" "$work/$1.img" & pid=$! ;;
	encblk-plain) "$work/encblk" serve --log-level warn --plain --listen "unix:$sock" "$work/plain.img" & pid=$! ;;
	nbdkit-file) nbdkit --foreground --exit-with-parent -U "$sock" file "$work/plain.img" & pid=$! ;;
	nbdkit-luks)
		nbdkit --foreground --exit-with-parent -U "$sock" file "$work/luks1.img" \
			--filter=luks passphrase=+"$work/pass" & pid=$! ;;
	qemu-nbd-luks)
		qemu-nbd --persistent --shared=32 --socket="$sock" --object secret,id=sec0,file="$work/pass" \
			--image-opts driver=luks,key-secret=sec0,file.filename="$work/luks1.img" & pid=$! ;;
	esac
	for _ in $(seq 200); do [ -S "$sock" ] && return; sleep 0.05; done
	echo "$0: $1 did not start" >&2; exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; rm -f "$sock"; }

# name rw bs iodepth metric
jobs=(
	"seqread-1M-qd16 read 1M 16 bw"
	"seqwrite-1M-qd16 write 1M 16 bw"
	"randread-4k-qd32 randread 4k 32 iops"
	"randwrite-4k-qd32 randwrite 4k 32 iops"
)

fiojob() { # rw bs iodepth metric -> number (MiB/s or IOPS)
	fio --name=j --ioengine=nbd --uri="nbd+unix:///?socket=$sock" \
		--rw="$1" --bs="$2" --iodepth="$3" --size="${size_mib}M" --time_based --runtime="$runtime" \
		--ramp_time="$ramp" --output-format=json 2>/dev/null | sed -n '/^{/,$p' |
		python3 -c '
import json,sys
j=json.load(sys.stdin)["jobs"][0]
d=j["read"] if j["read"]["io_bytes"]>0 else j["write"]
print(round(d["bw_bytes"]/1048576) if sys.argv[1]=="bw" else round(d["iops"]))
' "$4"
}

results=$work/results
: >"$results"
for s in "${servers[@]}"; do
	start "$s"
	for j in "${jobs[@]}"; do
		read -r name rw bs qd metric <<<"$j"
		echo "$s $name $metric $(fiojob "$rw" "$bs" "$qd" "$metric")" >>"$results"
	done
	stop
done

python3 - "$results" "$json" "$runtime" "$size_mib" "$(nproc)" <<'EOF'
import json, sys, datetime
path, as_json, runtime, size, cpus = sys.argv[1], sys.argv[2] == "1", sys.argv[3], sys.argv[4], sys.argv[5]
rows = [l.split() for l in open(path)]
servers = list(dict.fromkeys(r[0] for r in rows))
jobs = list(dict.fromkeys(r[1] for r in rows))
val = {(r[0], r[1]): int(r[3]) for r in rows}
unit = {r[1]: ("MiB/s" if r[2] == "bw" else "IOPS") for r in rows}
ref = "nbdkit-file"
if as_json:
    out = {"date": datetime.date.today().isoformat(), "cpus": int(cpus), "runtime_s": int(runtime),
           "size_mib": int(size), "results": [
               {"server": s, "job": j, "value": val[s, j], "unit": unit[j],
                "ratio_to_nbdkit_file": round(val[s, j] / val[ref, j], 3) if val.get((ref, j)) else None}
               for s in servers for j in jobs]}
    print(json.dumps(out, indent=2))
    sys.exit()
print("| server | " + " | ".join(f"{j} ({unit[j]})" for j in jobs) + " |")
print("|---" * (len(jobs) + 1) + "|")
for s in servers:
    cells = []
    for j in jobs:
        v, r = val[s, j], val.get((ref, j))
        cells.append(f"{v} ({v / r:.2f}x)" if r else str(v))
    print(f"| {s} | " + " | ".join(cells) + " |")
print(f"({datetime.date.today()}, {cpus} CPUs, runtime {runtime}s, {size} MiB)")
EOF
