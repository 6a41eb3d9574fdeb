#!/usr/bin/env bash
# Runs the same fio jobs (nbd engine, unix socket) against encblk and the
# servers users compare it with, one server at a time, and prints one table:
# absolute figures and each server's ratio to the unencrypted nbdkit file
# plugin, then the server's CPU time per request. This is a benchmark, not
# a test: nothing here asserts a timing.
#
#   bench/peers.sh [--quick] [--json FILE] [--size SIZE] [--rounds N] [--runtime S]
#                  [--only NAME[,NAME]] [--socket PATH] [--encblk BINARY]
#
# Servers: encblk-4k (LUKS2 aes-xts-plain64 512-bit key, 4096-byte sectors),
# encblk-512 (same, 512-byte sectors), encblk-plain (encblk's server on the
# unencrypted file: the protocol cost alone), nbdkit-file, nbdkit-luks
# (nbdkit file plugin + luks filter on a LUKS1 image), qemu-nbd-luks.
# Default: 1 GiB, 6 s per job after 1 s ramp (about 4 minutes); --quick:
# 128 MiB, 1 s per job (under a minute). --rounds N repeats every job N
# times, alternating servers, and reports the median. --runtime (or
# RUNTIME) and RAMP override the job times, in seconds.
set -euo pipefail

. "$(dirname "$0")/lib.sh"

quick=0 json_out="" size="" only="" rounds=1 sock="" encblk=""
while [ $# -gt 0 ]; do
	case $1 in
	--quick) quick=1 ;;
	--json) need_value "$@"; json_out=$2; shift ;;
	--json=*) json_out=${1#--json=} ;;
	--size) need_value "$@"; size=$2; shift ;;
	--only) need_value "$@"; only=$2; shift ;;
	--rounds) need_value "$@"; rounds=$2; shift ;;
	--runtime) need_value "$@"; RUNTIME=$2; shift ;;
	--socket) need_value "$@"; sock=$2; shift ;;
	--encblk) need_value "$@"; encblk=$2; shift ;;
	-h|--help) usage; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
	shift
done

if [ $quick = 1 ]; then
	runtime=${RUNTIME:-1} ramp=${RAMP:-0.25} size=${size:-128M}
else
	runtime=${RUNTIME:-6} ramp=${RAMP:-1} size=${size:-1G}
fi
ramp_ms=$(awk -v r="$ramp" 'BEGIN { printf "%d", r * 1000 }')
need_positive --rounds "$rounds"
need_tools nbdkit qemu-nbd qemu-img cryptsetup python3 go numfmt
need_fio_nbd

# A socket path given by the user must be free: never steal a live server's
# socket, never delete someone's file.
if [ -n "$sock" ] && [ -e "$sock" ]; then
	die "$sock is taken (a server may be listening there); choose another --socket"
fi

t0=$EPOCHREALTIME
say() { awk -v a="$EPOCHREALTIME" -v b="$t0" -v m="$*" 'BEGIN { printf "[%5.1fs] %s\n", a - b, m }' >&2; }

work=$(mktemp -d /tmp/encblk-bench.XXXXXX)
sock=${sock:-$work/nbd.sock}
server_pid=""
cleanup() {
	stop_server
	rm -f "$sock"
	rm -rf "$work"
}
stop_server() {
	if [ -n "$server_pid" ]; then
		stop_pid "$server_pid"
		server_pid=""
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

servers=(encblk-4k encblk-512 encblk-plain nbdkit-file nbdkit-luks qemu-nbd-luks)
if [ -n "$only" ]; then
	IFS=, read -r -a servers <<<"$only"
	for s in "${servers[@]}"; do
		case $s in encblk-4k | encblk-512 | encblk-plain | nbdkit-file | nbdkit-luks | qemu-nbd-luks) ;;
		*) die "unknown server $s" ;; esac
	done
	# the ratio column needs the reference
	case ",$only," in *,nbdkit-file,*) ;; *) servers+=(nbdkit-file) ;; esac
fi
wants() { case " ${servers[*]} " in *" $1 "*) return 0 ;; esac; return 1; }

build_encblk

bytes=$(numfmt --from=iec "$size")
[ $((bytes % 1048576)) = 0 ] || die "--size must be a multiple of 1 MiB"
pass=$work/pass
printf 'benchmark-passphrase' >"$pass"
keyfile=$work/key
head -c 32 /dev/urandom >"$keyfile"

say "creating $size backing files"
# One file of random data; the others get a copy of it (from the page
# cache: much faster than /dev/urandom again). For the encrypted servers
# the bytes are ciphertext they decrypt to noise, which is all a read needs.
plain=$work/plain.img
head -c "$bytes" /dev/urandom >"$plain"
# copy_data FILE OFFSET: plain.img's bytes into FILE from OFFSET on.
copy_data() {
	dd if="$plain" of="$1" bs=1M seek=$(($2 / 1048576)) conv=notrunc status=none
}
fast_kdf=(--pbkdf pbkdf2 --pbkdf-force-iterations 1000)

# encblk LUKS2 volumes (16 MiB header like cryptsetup)
for ss in 4096 512; do
	name=encblk-$([ $ss = 4096 ] && echo 4k || echo 512)
	wants $name || continue
	img=$work/$name.img
	truncate -s $((bytes + 16 * 1048576)) "$img"
	"$encblk" format --batch-mode --key-file "$keyfile" --sector-size $ss "${fast_kdf[@]}" "$img" >/dev/null
	copy_data "$img" $((16 * 1048576))
	say "  $name formatted"
done

# LUKS1 image for nbdkit's luks filter (it reads LUKS1 only) and qemu-nbd
l1=$work/luks1.img
# qemu-nbd's luks driver reads the same LUKS1 image (qemu-img create -f luks
# spends seconds benchmarking its KDF; this does not).
if wants nbdkit-luks || wants qemu-nbd-luks; then
	truncate -s $((bytes + 2 * 1048576)) "$l1"
	cryptsetup luksFormat --batch-mode --type luks1 --cipher aes-xts-plain64 --key-size 512 \
		--hash sha256 "${fast_kdf[@]}" --key-file "$pass" "$l1"
	off=$(cryptsetup luksDump "$l1" | awk '/^Payload offset:/ {print $3 * 512}')
	copy_data "$l1" $(((off + 1048575) / 1048576 * 1048576))
	say "  LUKS1 image formatted"
fi

backing_of() {
	case $1 in
	encblk-4k | encblk-512) echo "$work/$1.img" ;;
	encblk-plain | nbdkit-file) echo "$plain" ;;
	nbdkit-luks | qemu-nbd-luks) echo "$l1" ;;
	esac
}

start_server() {
	local name=$1
	rm -f "$sock"
	case $name in
	encblk-4k | encblk-512)
		"$encblk" serve "$(backing_of "$name")" --listen "unix:$sock" --key-file "$keyfile" >"$work/server.log" 2>&1 &
		;;
	encblk-plain)
		"$encblk" serve --plain "$plain" --listen "unix:$sock" >"$work/server.log" 2>&1 &
		;;
	nbdkit-file)
		nbdkit --foreground --unix "$sock" file "$plain" >"$work/server.log" 2>&1 &
		;;
	nbdkit-luks)
		nbdkit --foreground --unix "$sock" --filter=luks file "$l1" passphrase=+"$pass" >"$work/server.log" 2>&1 &
		;;
	qemu-nbd-luks)
		qemu-nbd --persistent --shared=16 --cache=writeback --aio=threads -k "$sock" \
			--object secret,id=sec0,file="$pass" \
			--image-opts driver=luks,key-secret=sec0,file.driver=file,file.filename="$l1" >"$work/server.log" 2>&1 &
		;;
	esac
	server_pid=$!
	wait_socket "$sock" "$server_pid" "$work/server.log"
}

# cpu.sh PID [DELAY]: user+system clock ticks of a process so far (after
# DELAY seconds, in the background, when given).
cat >"$work/cpu.sh" <<'EOF'
#!/bin/sh
if [ -n "$2" ]; then
	(sleep "$2"; exec "$0" "$1") &
	exit 0
fi
set -- $(cat "/proc/$1/stat" 2>/dev/null || echo 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0)
echo $((${14} + ${15}))
EOF
chmod +x "$work/cpu.sh"
hz=$(getconf CLK_TCK)

# name rw bs iodepth
jobs=(
	"seqread read 1M 16"
	"seqwrite write 1M 16"
	"randread randread 4k 32"
	"randwrite randwrite 4k 32"
)

# jobfile: the four jobs, one after the other (stonewall), in one fio
# process (starting fio costs a second or more on a loaded box). Each job
# samples the server's CPU ticks when its ramp ends and when it ends.
jobfile() {
	cat <<EOF
[global]
ioengine=nbd
uri=nbd+unix:///?socket=$sock
size=$size
runtime=$runtime
ramp_time=${ramp_ms}ms
time_based
numjobs=1
EOF
	for j in "${jobs[@]}"; do
		set -- $j
		cat <<EOF
[$1]
stonewall
rw=$2
bs=$3
iodepth=$4
exec_prerun=$work/cpu.sh $server_pid $ramp
exec_postrun=$work/cpu.sh $server_pid
EOF
	done
}

results=$work/results.txt
: >"$results"
for round in $(seq "$rounds"); do
	for s in "${servers[@]}"; do
		say "round $round/$rounds: $s"
		start_server "$s"
		# The same page cache for every server (this shared VM also drops
		# page cache behind our back): see fresh_cache in lib.sh.
		fresh_cache "$(backing_of "$s")"
		dir=$work/$round-$s
		mkdir "$dir"
		jobfile >"$dir/jobs.fio"
		(cd "$dir" && fio --output-format=json --output=fio.json jobs.fio >fio.err 2>&1) ||
			{ cat "$dir/fio.err" >&2; die "fio against $s failed (its output is above)"; }
		# resident memory of the server after the load (kB)
		rss=$(awk '/^VmRSS:/ {print $2}' /proc/$server_pid/status 2>/dev/null || echo 0)
		printf '%s %s %s %s\n' "$s" "$round" "$rss" "$dir" >>"$results"
		stop_server
	done
done
say "done"

# One python for all the parsing: starting it costs seconds on a loaded box.
python3 - "$results" "$json_out" "$size" "$runtime" "$rounds" "$hz" <<'PY'
import json, sys, datetime, platform, os, statistics
path, json_out, size, runtime, rounds, hz = sys.argv[1:]
rows = []
for line in open(path):
    server, rnd, rss, d = line.split()
    rows.append({"server": server, "job": "rss", "rss_kib": int(rss)})
    for job in json.load(open(d + "/fio.json"))["jobs"]:
        name = job["jobname"]
        side = job["write"] if "write" in name else job["read"]
        ios = max(1, side["total_ios"])
        try:
            c0 = float(open(f"{d}/{name}.prerun.txt").read())
            c1 = float(open(f"{d}/{name}.postrun.txt").read())
            cpu = (c1 - c0) / float(hz) * 1e6 / ios
        except (OSError, ValueError):
            cpu = float("nan")
        rows.append({"server": server, "job": name, "mib_s": side["bw_bytes"] / 1048576,
                     "iops": side["iops"], "cpu_us_per_io": cpu})
servers = list(dict.fromkeys(r["server"] for r in rows))
jobs = ["seqread", "seqwrite", "randread", "randwrite"]
def med(s, j, key):
    v = [r[key] for r in rows if r["server"] == s and r["job"] == j]
    return statistics.median(v) if v else None
ref = "nbdkit-file"
def val(s, j):
    key = "mib_s" if j.startswith("seq") else "iops"
    v = med(s, j, key)
    return None if v is None else (v if j.startswith("seq") else v / 1000)
hdr = ["server", "seq read 1M qd16", "seq write 1M qd16", "rand read 4k qd32", "rand write 4k qd32", "RSS"]
med_note = f", median of {rounds} rounds" if int(rounds) > 1 else ""
print(f"size {size}, {runtime} s per job{med_note}, fio nbd engine over a unix socket; ratio = / {ref}")
print()
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
        entry[j] = {"value": v, "unit": unit, "ratio": ratio, "server_cpu_us_per_io": med(s, j, "cpu_us_per_io")}
    rss = max([r["rss_kib"] for r in rows if r["server"] == s and r["job"] == "rss"] or [0])
    cells.append(f"{rss/1024:.0f} MiB")
    entry["rss_mib"] = rss / 1024
    out.append(entry)
    print("| " + " | ".join(cells) + " |")
print()
print("server CPU time per request, microseconds (user+system; lower is better)")
print()
print("| server | seq read 1M | seq write 1M | rand read 4k | rand write 4k |")
print("|---|---|---|---|---|")
for s in servers:
    cells = [s]
    for j in jobs:
        c = med(s, j, "cpu_us_per_io")
        cells.append("-" if c is None else f"{c:.0f}" if c >= 100 else f"{c:.1f}")
    print("| " + " | ".join(cells) + " |")
if json_out:
    json.dump({"date": datetime.datetime.now(datetime.timezone.utc).isoformat(), "host": platform.node(),
               "cpus": os.cpu_count(), "load": os.getloadavg(), "size": size, "runtime_s": runtime,
               "rounds": int(rounds), "reference": ref, "results": out}, open(json_out, "w"), indent=1)
PY
