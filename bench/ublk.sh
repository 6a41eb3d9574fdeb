#!/usr/bin/env bash
# bench/ublk.sh — one encblk volume as /dev/ublkbN, as /dev/nbd0 and in
# dm-crypt, side by side in the test/vm guest (Debian's 6.12 kernel under
# qemu TCG; the host kernel has neither ublk nor nbd). Runs the ublk-bench
# scenario and prints its table (medians of alternating rounds, ratios).
#
# Usage: bench/ublk.sh [--secs N] [--rounds N]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
while [ $# -gt 0 ]; do
	case $1 in
	--secs) export ENCBLK_BENCH_SECS=$2; shift 2 ;;
	--rounds) export ENCBLK_BENCH_ROUNDS=$2; shift 2 ;;
	*) echo "usage: $0 [--secs N] [--rounds N]" >&2; exit 1 ;;
	esac
done
# The backing (272 MiB) lives on the guest's tmpfs: give it room.
export ENCBLK_VM_MEM=${ENCBLK_VM_MEM:-2G} ENCBLK_VM_TIMEOUT=${ENCBLK_VM_TIMEOUT:-3000}
"$here/../test/vm/run.sh" ublk-bench:4096
log=$here/../test/vm/out/ublk-bench-4096.log
grep -a '^   [a-z-]* [a-z0-9-]* [0-9]* ' "$log" | sed 's/^   /round: /' || true
grep -a '^BENCH ' "$log" | sed 's/^BENCH //'
