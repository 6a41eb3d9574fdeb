# order: 90
# sectors: 4096
# timeout: 1500
# manual: yes (a benchmark: only when named, e.g. by bench/ublk.sh)
#
# ublk-bench measures one volume three ways in the same guest, in
# alternating rounds: /dev/ublkbN (encblk serve --ublk, two queues),
# /dev/nbd0 (the same server over the kernel's nbd client, two
# connections) and dm-crypt on a loop device of the same backing. fio
# (libaio, O_DIRECT) runs 4k random read and write at iodepth 32 and 1 MiB
# sequential read and write at iodepth 8, for ENCBLK_BENCH_SECS seconds
# each (default 8, after a 1 s ramp), ENCBLK_BENCH_ROUNDS rounds (default 3); the
# medians, and the medians of the per-round ratios, are printed as "BENCH"
# lines. Asserts nothing
# about speed: under TCG only the ratios of one run mean anything.
# ENCBLK_BENCH_PLAIN=1 serves a plain (unencrypted) backing instead (serve
# --plain), with the loop device itself in dm-crypt's place: what the
# frontends achieve when encryption does not dominate.
# ENCBLK_BENCH_ALT=BINARY adds a fourth device, "alt": a copy of the volume
# served over ublk by another encblk binary (an older build), in the same
# rounds: an A/B of a code change that the host's load does not skew.
. "$ENCBLK_VM_LIB"

secs=${ENCBLK_BENCH_SECS:-8}
rounds=${ENCBLK_BENCH_ROUNDS:-3}
backing=$work/backing.img
key=$work/key
sock=$work/nbd.sock
key_file "$key"
truncate -s 272M "$backing"
plain=${ENCBLK_BENCH_PLAIN:-0}
kern=dm-crypt serve_args=(--key-file "$key")
if [ "$plain" = 1 ]; then
	kern=loop serve_args=(--plain)
else
	encblk_format "$backing" "$key"
fi

# bench_serve BINARY CONTROL BACKING ARGS... starts BINARY serve --ublk
# (two queues) on BACKING and sets srv_pid and srv_dev (/dev/ublkbN).
bench_serve() {
	local bin=$1 ctl=$2 img=$3 i unset=()
	shift 3
	rm -f "$ctl"
	# Only the server under test writes the CPU profile.
	[ "$bin" = "$ENCBLK" ] || unset=(-u ENCBLK_CPUPROFILE)
	env "${unset[@]}" "$bin" serve --ublk --ublk-queues 2 --control "$ctl" "${serve_args[@]}" "$@" "$img" \
		>"$img.out" 2>>"$img.log" &
	srv_pid=$!
	at_exit "kill $srv_pid"
	for i in $(seq 1 600); do
		srv_dev=$(sed -n "s|^$img: \(/dev/ublkb[0-9]*\)$|\1|p" "$img.out")
		[ -n "$srv_dev" ] && [ -b "$srv_dev" ] && return 0
		kill -0 "$srv_pid" 2>/dev/null || fail "$bin serve --ublk exited: $(cat "$img.log")"
		sleep 0.1
	done
	fail "$bin serve --ublk printed no device after 60 s"
}

step "serve --ublk (2 queues) and NBD (2 connections); $kern on a loop device of the same backing"
# ENCBLK_BENCH_PROFILE=1: the server writes a CPU profile of the run
# (cmd/encblk's ENCBLK_CPUPROFILE), printed base64 on "PPROF " lines at the
# end for bench/ublk.sh to decode.
[ "${ENCBLK_BENCH_PROFILE:-0}" = 1 ] && export ENCBLK_CPUPROFILE=$work/cpu.prof
bench_serve "$ENCBLK" "$control" "$backing" --listen "unix:$sock"
serve_pid=$srv_pid ublk_dev=$srv_dev
for i in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.1; done
nbd_attach "$sock" /dev/nbd0 -connections 2
at_exit "nbd-client -d /dev/nbd0"
loop=$(losetup --find --show "$backing")
at_exit "losetup -d $loop"
declare -A devs=([ublk]=$ublk_dev [nbd]=/dev/nbd0 [loop]=$loop)
declare -A pids=([ublk]=$serve_pid [nbd]=$serve_pid [dm-crypt]=$serve_pid [loop]=$serve_pid)
declare -A controls=([ublk]=$control)
alt=${ENCBLK_BENCH_ALT:-}
if [ -n "$alt" ]; then
	# A volume of its own (a copy would share the LUKS UUID, and the
	# server would take it for this one's device to recover).
	truncate -s 272M "$work/alt.img"
	[ "$plain" = 1 ] || encblk_format "$work/alt.img" "$key"
	bench_serve "$alt" "$work/alt.sock" "$work/alt.img"
	alt_pid=$srv_pid devs[alt]=$srv_dev pids[alt]=$srv_pid controls[alt]=$work/alt.sock
	echo "   alt: ${devs[alt]}, served by $alt ($("$alt" --version 2>/dev/null || echo ?))"
fi
if [ "$plain" != 1 ]; then
	cryptsetup open --key-file "$key" "$loop" bench-dm
	at_exit "cryptsetup close bench-dm"
	devs[dm-crypt]=/dev/mapper/bench-dm
fi
for d in ublk nbd "$kern"; do
	echo "   $d: ${devs[$d]}, $(blockdev --getsize64 "${devs[$d]}") bytes, $(blockdev --getss "${devs[$d]}")-byte blocks"
done

# cpu_ticks prints the server's user+system ticks, the guest's busy ticks,
# the server's context switches (all threads, voluntary and not) and the
# guest's.
cpu_ticks() {
	local srv cs pid=${pids[$1]}
	srv=$(awk '{print $14 + $15}' "/proc/$pid/stat")
	cs=$(cat /proc/"$pid"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {print s + 0}')
	echo "$srv $(awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat) $cs $(awk '/^ctxt/{print $2}' /proc/stat)"
}

# ublk_stats DEV prints DEV's ublk queues' counters (encblk status --json:
# requests, inline, io_uring_enter waits, worker wake-ups), zeros if none.
ublk_stats() {
	[ -n "${controls[$1]:-}" ] || { echo 0 0 0 0; return; }
	"$ENCBLK" status --control "${controls[$1]}" --json | python3 -c 'import json, sys
s = json.load(sys.stdin)["volumes"][0].get("ublk_stats", {})
print(*(s.get(k, 0) for k in ("requests", "inline", "waits", "wakes")))'
}

jobs=("randwrite 4k 32" "randread 4k 32" "write 1M 8" "read 1M 8")
# ENCBLK_BENCH_ONLY=RW[-RW...]: only the jobs of those fio --rw (e.g.
# randwrite: a profile of 4 KiB writes alone).
if [ -n "${ENCBLK_BENCH_ONLY:-}" ]; then
	for i in "${!jobs[@]}"; do
		case "-$ENCBLK_BENCH_ONLY-" in *"-${jobs[$i]%% *}-"*) ;; *) unset "jobs[$i]" ;; esac
	done
	[ ${#jobs[@]} -gt 0 ] || fail "ENCBLK_BENCH_ONLY=$ENCBLK_BENCH_ONLY: no such job"
fi
# Fill the range once so that reads read written data.
case "${jobs[*]}" in *read*)
	dd if=/dev/urandom of="$ublk_dev" bs=1M count=256 oflag=direct status=none
	[ -z "$alt" ] || dd if=/dev/urandom of="${devs[alt]}" bs=1M count=256 oflag=direct status=none
	;;
esac
: >"$work/results"
for r in $(seq 1 "$rounds"); do
	step "round $r of $rounds"
	for j in "${jobs[@]}"; do
		read -r rw bs qd <<<"$j"
		order=(ublk nbd "$kern" ${alt:+alt})
		# Alternate who goes first from round to round.
		for ((k = 0; k < (r - 1) % ${#order[@]}; k++)); do order=("${order[@]:1}" "${order[0]}"); done
		for d in "${order[@]}"; do
			# CPU time (clock ticks) of the server and of the whole guest
			# (everything but idle and iowait) around each job: per request,
			# what each path costs, which the vCPUs bound.
			stats_before="$(ublk_stats "$d")"
			cpu_before="$(cpu_ticks "$d")"
			fio --name=b --filename="${devs[$d]}" --ioengine=libaio --direct=1 --rw="$rw" --bs="$bs" \
				--iodepth="$qd" --size=256M --time_based --runtime="$secs" --ramp_time=1 \
				--randseed=7 --output-format=json >"$work/fio.json" || fail "fio $d $j: $(cat "$work/fio.json")"
			cpu_after="$(cpu_ticks "$d")"
			stats_after="$(ublk_stats "$d")"
			python3 - "$work/fio.json" "$d" "$rw" "$bs" "$r" "$secs" $cpu_before $cpu_after $stats_before $stats_after >>"$work/results" <<-'PY'
				import json, os, sys
				j = json.load(open(sys.argv[1]))["jobs"][0]
				side = j["read"] if "read" in sys.argv[3] else j["write"]
				srv0, sys0, scs0, gcs0, srv1, sys1, scs1, gcs1 = map(int, sys.argv[7:15])
				st0, st1 = list(map(int, sys.argv[15:19])), list(map(int, sys.argv[19:23]))
				# Requests over the whole window the ticks cover (ramp included).
				ios = max(side["iops"] * (int(sys.argv[6]) + 1), 1)
				us = 1e6 / os.sysconf("SC_CLK_TCK") / ios
				# Per ublk request (a 1 MiB I/O is two 512 KiB requests):
				# inline share, io_uring_enter waits, wake-ups; "-" for the
				# others.
				rq = st1[0] - st0[0]
				u = ["%.2f" % ((b - a) / rq) for a, b in zip(st0[1:], st1[1:])] if rq > 0 else ["-"] * 3
				print(sys.argv[2], sys.argv[3] + "-" + sys.argv[4], sys.argv[5], round(side["iops"], 1), round(side["bw"] / 1024, 2),
				      round((srv1 - srv0) * us, 1), round((sys1 - sys0) * us, 1),
				      round((scs1 - scs0) / ios, 2), round((gcs1 - gcs0) / ios, 2), *u)
			PY
			tail -1 "$work/results" | sed 's/^/   /'
		done
	done
done

step "medians"
python3 - "$work/results" "$kern" <<-'PY'
	import statistics, sys
	kern = sys.argv[2]
	rows = [l.split() for l in open(sys.argv[1])]
	runs, rounds, jobs = {}, {}, []
	for dev, job, rnd, iops, mib, srv, tot, scs, gcs, *u in rows:
	    runs.setdefault((dev, job), []).append((float(iops), float(mib), float(srv), float(tot), float(scs), float(gcs), u))
	    rounds.setdefault((job, rnd), {})[dev] = float(iops)
	    if job not in jobs:
	        jobs.append(job)
	# Ratios are taken within each round (the three devices back to back),
	# then their median: a median of ublk's figures over a median of nbd's
	# would compare different rounds.
	print("BENCH | job | ublk IOPS (MiB/s) | nbd IOPS (MiB/s) | %s IOPS (MiB/s) | ublk/nbd | ublk/%s | ublk/nbd per round |" % (kern, kern))
	print("BENCH |---|---|---|---|---|---|---|")
	alts = []
	for job in jobs:
	    m = {d: (statistics.median(v[0] for v in runs[(d, job)]), statistics.median(v[1] for v in runs[(d, job)])) for d in ("ublk", "nbd", kern)}
	    rs = [r for (j, _), r in sorted(rounds.items(), key=lambda kv: int(kv[0][1])) if j == job and len(r) >= 3]
	    cell = lambda d: "%.0f (%.1f)" % m[d]
	    ratio = lambda d: statistics.median(r["ublk"] / r[d] for r in rs)
	    per = " ".join("%.2f" % (r["ublk"] / r["nbd"]) for r in rs)
	    print("BENCH | %s | %s | %s | %s | %.2fx | %.2fx | %s |" % (job, cell("ublk"), cell("nbd"), cell(kern), ratio("nbd"), ratio(kern), per))
	    if ("alt", job) in runs:
	        a = [r for r in rs if "alt" in r]
	        alts.append("BENCH | %s | %.0f | %.2fx | %s | %s |" % (job, statistics.median(v[0] for v in runs[("alt", job)]),
	                    statistics.median(r["ublk"] / r["alt"] for r in a), " ".join("%.2f" % (r["ublk"] / r["alt"]) for r in a),
	                    " ".join("%.2f" % (r["alt"] / r["nbd"]) for r in a)))
	# CPU per request, medians: the server's, and the whole guest's
	# (server, kernel, fio), in microseconds; context switches per request,
	# the server's threads' (the guest's); for ublk, per kernel request:
	# share run inline, io_uring_enter waits and worker wake-ups.
	if alts:
	    print("BENCH")
	    print("BENCH | job | alt IOPS | ublk/alt | ublk/alt per round | alt/nbd per round |")
	    print("BENCH |---|---|---|---|---|")
	    print("\n".join(alts))
	print("BENCH")
	print("BENCH | job | CPU us/request: ublk server (guest) | nbd server (guest) | %s (guest) | ctx switches/request: ublk server (guest) | nbd server (guest) | %s (guest) | ublk per kernel request: inline, enters, wakes | nbd/ublk guest CPU |" % (kern, kern))
	print("BENCH |---|---|---|---|---|---|---|---|---|")
	for job in jobs:
	    c = lambda d, i: statistics.median(v[i] for v in runs[(d, job)])
	    us = [v[6] for v in runs[("ublk", job)] if v[6][0] != "-"]
	    uc = " ".join("%.2f" % statistics.median(float(x[i]) for x in us) for i in range(3)) if us else "-"
	    # The guest's CPU per request, nbd's over ublk's: the most ublk/nbd
	    # can reach while both paths keep the vCPUs busy.
	    print("BENCH | %s | %.0f (%.0f) | %.0f (%.0f) | - (%.0f) | %.1f (%.1f) | %.1f (%.1f) | - (%.1f) | %s | %.2fx |" % (job, c("ublk", 2), c("ublk", 3), c("nbd", 2), c("nbd", 3), c(kern, 3),
	          c("ublk", 4), c("ublk", 5), c("nbd", 4), c("nbd", 5), c(kern, 5), uc, c("nbd", 3) / max(c("ublk", 3), 1e-9)))
	    if ("alt", job) in runs:
	        print("BENCH | %s (alt) | %.0f (%.0f) | | | %.1f (%.1f) | | | | |" % (job, c("alt", 2), c("alt", 3), c("alt", 4), c("alt", 5)))
PY
[ "$plain" = 1 ] || cryptsetup close bench-dm
if [ -n "$alt" ]; then
	kill "$alt_pid"
	wait "$alt_pid" || fail "$alt serve exited with status $? on SIGTERM"
fi
losetup -d "$loop"
nbd_detach /dev/nbd0
serve_stop
if [ -s "$work/cpu.prof" ]; then
	base64 -w 76 "$work/cpu.prof" | sed 's/^/PPROF /'
fi
step "done"
