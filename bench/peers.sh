#!/usr/bin/env bash
# Runs the same fio jobs (nbd engine, unix socket) against encblk and the
# servers users compare it with, one server at a time, and prints one table:
# absolute figures and each server's ratio to the unencrypted nbdkit file
# plugin. This is a benchmark, not a test: nothing here asserts a timing.
#
#   bench/peers.sh [--quick] [--json FILE] [--size SIZE] [--only NAME[,NAME]]
#
# Servers: encblk-4k (LUKS2 aes-xts-plain64 512-bit key, 4096-byte sectors),
# encblk-512 (same, 512-byte sectors), encblk-plain (encblk's server on the
# unencrypted file: the protocol cost alone), nbdkit-file, nbdkit-luks
# (nbdkit file plugin + luks filter on a LUKS1 image), qemu-nbd-luks.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)

quick=0 json_out="" size="" only=""
while [ $# -gt 0 ]; do
	case $1 in
	--quick) quick=1 ;;
	--json) json_out=$2; shift ;;
	--json=*) json_out=${1#--json=} ;;
	--size) size=$2; shift ;;
	--only) only=$2; shift ;;
	-h|--help) sed -n '2,14p' "$0"; exit 0 ;;
	*) echo "peers.sh: unknown argument $1" >&2; exit 1 ;;
	esac
	shift
done

if [ $quick = 1 ]; then
	runtime=${RUNTIME:-1} ramp=${RAMP:-500ms} size=${size:-128M}
else
	runtime=${RUNTIME:-6} ramp=${RAMP:-1} size=${size:-1G}
fi

for t in fio nbdkit qemu-nbd qemu-img cryptsetup python3 go; do
	command -v "$t" >/dev/null || { echo "peers.sh: $t not found (run scripts/deps.sh)" >&2; exit 1; }
done
fio --enghelp 2>/dev/null | grep -qw nbd || { echo "peers.sh: this fio has no nbd engine" >&2; exit 1; }

work=$(mktemp -d /tmp/encblk-bench.XXXXXX)
server_pid=""
cleanup() {
	stop_server
	rm -rf "$work"
}
stop_server() {
	if [ -n "$server_pid" ]; then
		kill "$server_pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
		server_pid=""
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sock=$work/nbd.sock
wait_socket() {
	for _ in $(seq 200); do
		[ -S "$sock" ] && return 0
		kill -0 "$server_pid" 2>/dev/null || { echo "peers.sh: server exited early; log:" >&2; cat "$work/server.log" >&2; return 1; }
		sleep 0.05
	done
	echo "peers.sh: server did not create $sock" >&2
	return 1
}

servers=(encblk-4k encblk-512 encblk-plain nbdkit-file nbdkit-luks qemu-nbd-luks)
if [ -n "$only" ]; then
	IFS=, read -r -a servers <<<"$only"
	# the ratio column needs the reference
	case ",$only," in *,nbdkit-file,*) ;; *) servers+=(nbdkit-file) ;; esac
fi
wants() { case " ${servers[*]} " in *" $1"*) return 0 ;; esac; return 1; }

echo "building encblk..." >&2
(cd "$top" && CGO_ENABLED=0 go build -o "$work/encblk" ./cmd/encblk)
encblk=$work/encblk

bytes=$(numfmt --from=iec "$size")
pass=$work/pass
printf 'benchmark-passphrase' >"$pass"
keyfile=$work/key
head -c 32 /dev/urandom >"$keyfile"

# random_fill FILE OFFSET BYTES: overwrite a range with random data, so
# reads return real data and every server pays for real pages.
random_fill() {
	dd if=/dev/urandom of="$1" bs=1M seek=$(($2 / 1048576)) count=$(($3 / 1048576)) conv=notrunc status=none iflag=fullblock
}

echo "creating $size backing files..." >&2
# plain file for nbdkit-file and encblk-plain
random_fill "$work/plain.img" 0 "$bytes"

# encblk LUKS2 volumes (16 MiB header like cryptsetup), random data area
for ss in 4096 512; do
	wants encblk-$([ $ss = 4096 ] && echo 4k || echo 512) || continue
	img=$work/encblk-$ss.img
	truncate -s $((bytes + 16 * 1048576)) "$img"
	"$encblk" format --batch-mode --key-file "$keyfile" --sector-size $ss \
		--pbkdf pbkdf2 --pbkdf-force-iterations 1000 "$img" >/dev/null
	random_fill "$img" $((16 * 1048576)) "$bytes"
done

# LUKS1 image for nbdkit's luks filter (it reads LUKS1 only)
l1=$work/luks1.img
if wants nbdkit-luks; then
truncate -s $((bytes + 2 * 1048576)) "$l1"
cryptsetup luksFormat --batch-mode --type luks1 --cipher aes-xts-plain64 --key-size 512 \
	--hash sha256 --iter-time 10 --key-file "$pass" "$l1"
off=$(cryptsetup luksDump "$l1" | awk '/^Payload offset:/ {print $3 * 512}')
random_fill "$l1" "$off" $((bytes + 2 * 1048576 - off - (bytes + 2 * 1048576 - off) % 1048576))
fi

# qemu's LUKS image
q=$work/qemu-luks.img
if wants qemu-nbd-luks; then
qemu-img create -q -f luks --object secret,id=sec0,file="$pass" -o key-secret=sec0 \
	-o cipher-alg=aes-256,cipher-mode=xts,ivgen-alg=plain64 -o iter-time=10 "$q" "$size"
qoff=$(( $(stat -c %s "$q") - bytes ))
random_fill "$q" "$qoff" "$bytes"
fi

start_server() {
	local name=$1
	rm -f "$sock"
	case $name in
	encblk-4k | encblk-512)
		local ss=4096
		[ "$name" = encblk-512 ] && ss=512
		"$encblk" serve "$work/encblk-$ss.img" --listen "unix:$sock" --key-file "$keyfile" >"$work/server.log" 2>&1 &
		;;
	encblk-plain)
		"$encblk" serve --plain "$work/plain.img" --listen "unix:$sock" >"$work/server.log" 2>&1 &
		;;
	nbdkit-file)
		nbdkit --foreground --unix "$sock" file "$work/plain.img" >"$work/server.log" 2>&1 &
		;;
	nbdkit-luks)
		nbdkit --foreground --unix "$sock" --filter=luks file "$l1" passphrase=+"$pass" >"$work/server.log" 2>&1 &
		;;
	qemu-nbd-luks)
		qemu-nbd --persistent --shared=16 --cache=writeback --aio=threads -k "$sock" \
			--object secret,id=sec0,file="$pass" \
			--image-opts driver=luks,key-secret=sec0,file.driver=file,file.filename="$q" >"$work/server.log" 2>&1 &
		;;
	esac
	server_pid=$!
	wait_socket
}

jobs=(
	"seqread rw=read bs=1M iodepth=16"
	"seqwrite rw=write bs=1M iodepth=16"
	"randread rw=randread bs=4k iodepth=32"
	"randwrite rw=randwrite bs=4k iodepth=32"
)


results=$work/results.jsonl
: >"$results"
for s in "${servers[@]}"; do
	echo "== $s" >&2
	start_server "$s"
	for j in "${jobs[@]}"; do
		set -- $j
		jname=$1; shift
		args=()
		for kv in "$@"; do args+=("--$kv"); done
		fio --name="$jname" --ioengine=nbd --uri="nbd+unix:///?socket=$sock" \
			--size="$size" --runtime="$runtime" --ramp_time="$ramp" --time_based \
			--numjobs=1 --output-format=json --output="$work/fio.json" "${args[@]}" >"$work/fio.err" 2>&1 ||
			{ echo "peers.sh: fio $jname against $s failed:" >&2; cat "$work/fio.err" >&2; exit 1; }
		python3 - "$s" "$jname" "$work/fio.json" >>"$results" <<'PY'
import json, sys
server, job, path = sys.argv[1:]
d = json.load(open(path))["jobs"][0]
side = d["write"] if "write" in job else d["read"]
print(json.dumps({"server": server, "job": job,
                  "mib_s": side["bw_bytes"] / 1048576, "iops": side["iops"]}))
PY
	done
	# resident memory of the server after the load (kB)
	rss=$(awk '/^VmRSS:/ {print $2}' /proc/$server_pid/status 2>/dev/null || echo 0)
	printf '{"server": "%s", "job": "rss", "rss_kib": %s}\n' "$s" "$rss" >>"$results"
	stop_server
done

python3 - "$results" "$json_out" "$size" "$runtime" <<'PY'
import json, sys, datetime, platform, os
path, json_out, size, runtime = sys.argv[1:]
rows = [json.loads(l) for l in open(path)]
servers = list(dict.fromkeys(r["server"] for r in rows))
jobs = ["seqread", "seqwrite", "randread", "randwrite"]
res = {(r["server"], r["job"]): r for r in rows}
ref = "nbdkit-file"
def val(s, j):
    r = res.get((s, j))
    if r is None:
        return None
    return r["mib_s"] if j.startswith("seq") else r["iops"] / 1000
hdr = ["server", "seq read 1M qd16", "seq write 1M qd16", "rand read 4k qd32", "rand write 4k qd32", "RSS"]
print(f"size {size}, runtime {runtime}s per job, fio nbd engine over a unix socket; ratio = / {ref}")
print("| " + " | ".join(hdr) + " |")
print("|" + "---|" * len(hdr))
out = []
for s in servers:
    cells = [s]
    entry = {"server": s}
    for j in jobs:
        v, rv = val(s, j), val(ref, j)
        unit = "MiB/s" if j.startswith("seq") else "k IOPS"
        if v is None:
            cells.append("-")
            continue
        ratio = v / rv if rv else float("nan")
        cells.append(f"{v:.0f} {unit} ({ratio:.2f}x)" if j.startswith("seq") else f"{v:.1f} {unit} ({ratio:.2f}x)")
        entry[j] = {"value": v, "unit": unit, "ratio": ratio}
    rss = res.get((s, "rss"), {}).get("rss_kib", 0)
    cells.append(f"{rss/1024:.0f} MiB")
    entry["rss_mib"] = rss / 1024
    out.append(entry)
    print("| " + " | ".join(cells) + " |")
if json_out:
    json.dump({"date": datetime.datetime.utcnow().isoformat() + "Z", "host": platform.node(),
               "cpus": os.cpu_count(), "size": size, "runtime_s": runtime, "reference": ref,
               "results": out}, open(json_out, "w"), indent=1)
PY
