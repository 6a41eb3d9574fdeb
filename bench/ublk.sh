#!/usr/bin/env bash
# bench/ublk.sh — one encblk volume as /dev/ublkbN, as /dev/nbd0 and in
# dm-crypt, side by side in the test/vm guest (Debian's 6.12 kernel under
# qemu TCG; the host kernel has neither ublk nor nbd). Runs the ublk-bench
# scenario and prints its table (medians of alternating rounds, ratios).
#
# Usage: bench/ublk.sh [--secs N] [--rounds N] [--profile] [--only RW] [--plain] [--alt BINARY]
#                      [--qemu debian13|PATH]
#   --profile: the server writes a CPU profile of the run (all jobs, both
#   frontends), saved as test/vm/out/ublk-bench.pprof (go tool pprof -top).
#   --only RW[,RW...]: only the jobs of those fio --rw (randwrite, randread,
#   write, read).
#   --plain: an unencrypted backing (serve --plain) against the loop device
#   itself: what the frontends achieve when encryption does not dominate.
#   --alt BINARY: a fourth device, a copy of the volume served over ublk by
#   another (static) encblk build, in the same rounds: an A/B of a change,
#   e.g. CGO_ENABLED=0 go build -o /var/tmp/encblk-main ./cmd/encblk on main.
#   --qemu debian13: run the guest on Debian 13's qemu 10 (scripts/debian13.sh
#   qemu, cached), whose TCG runs the guest's AES-NI on the host's AES-NI:
#   guest AES-XTS about twice as fast as on Debian 12's qemu 7.2, so
#   encryption takes a share of each request closer to the one it takes on
#   hardware. --qemu PATH: that qemu-system-x86_64.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
while [ $# -gt 0 ]; do
	case $1 in
	--secs) export ENCBLK_BENCH_SECS=$2; shift 2 ;;
	--rounds) export ENCBLK_BENCH_ROUNDS=$2; shift 2 ;;
	--profile) export ENCBLK_BENCH_PROFILE=1; shift ;;
	--only) export ENCBLK_BENCH_ONLY=${2//,/-}; shift 2 ;;
	--plain) export ENCBLK_BENCH_PLAIN=1; shift ;;
	--alt) export ENCBLK_BENCH_ALT=$(realpath "$2"); shift 2 ;;
	--qemu)
		if [ "$2" = debian13 ]; then
			ENCBLK_VM_QEMU=$("$here/../scripts/debian13.sh" qemu)/bin/qemu-system-x86_64
		else
			ENCBLK_VM_QEMU=$(realpath "$2")
		fi
		export ENCBLK_VM_QEMU
		shift 2
		;;
	*) echo "usage: $0 [--secs N] [--rounds N] [--profile] [--only RW] [--plain] [--alt BINARY] [--qemu debian13|PATH]" >&2; exit 1 ;;
	esac
done
# The backing (272 MiB) lives on the guest's tmpfs: give it room.
export ENCBLK_VM_MEM=${ENCBLK_VM_MEM:-2G} ENCBLK_VM_TIMEOUT=${ENCBLK_VM_TIMEOUT:-3000}
"$here/../test/vm/run.sh" ublk-bench:4096
log=$here/../test/vm/out/ublk-bench-4096.log
grep -a '^   [a-z-]* [a-zA-Z0-9-]* [0-9]* ' "$log" | sed 's/^   /round: /' || true
echo "qemu: $("${ENCBLK_VM_QEMU:-qemu-system-x86_64}" --version | sed -n 1p)"
grep -a '^BENCH ' "$log" | sed 's/^BENCH //'
if grep -aq '^PPROF ' "$log"; then
	grep -a '^PPROF ' "$log" | sed 's/^PPROF //' | tr -d '\r' | base64 -d >"$here/../test/vm/out/ublk-bench.pprof"
	echo "cpu profile: test/vm/out/ublk-bench.pprof"
fi
