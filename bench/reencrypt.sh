#!/usr/bin/env bash
# Offline reencryption throughput: encblk reencrypt against cryptsetup
# reencrypt --force-offline-reencrypt on the same LUKS2 file (made by
# cryptsetup luksFormat: AES-256-XTS, 4096-byte sectors, data at 16 MiB,
# fast KDF so that key derivation is negligible), alternating between the
# two tools round by round: each one reencrypts what the other left, so
# both see the same file in the same state of the page cache and disk.
# Data is allocated (written once) before the first round. Times are wall
# clock of the whole command, KDFs and metadata commits included. This is
# a benchmark, not a test: nothing asserts a timing.
#
#   bench/reencrypt.sh [--size 4G] [--rounds N] [--encblk BINARY] [--hotzone SIZE]
set -euo pipefail

. "$(dirname "$0")/lib.sh"

size=4G rounds=2 encblk="" hotzone=""
while [ $# -gt 0 ]; do
	case $1 in
	--size) need_value "$@"; size=$2; shift ;;
	--rounds) need_value "$@"; rounds=$2; shift ;;
	--encblk) need_value "$@"; encblk=$2; shift ;;
	--hotzone) need_value "$@"; hotzone=$2; shift ;;
	-h|--help) usage; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
	shift
done
need_positive --rounds "$rounds"
need_tools go cryptsetup

work=$(mktemp -d /tmp/encblk-reencrypt.XXXXXX)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM HUP

build_encblk

fast_kdf=(--pbkdf pbkdf2 --pbkdf-force-iterations 1000)
head -c 64 /dev/urandom >"$work/key"
img=$work/vol.img
bytes=$(numfmt --from=iec "$size")
dd if=/dev/zero of="$img" bs=1M count=$(((bytes >> 20) + 16)) status=none conv=fsync
cryptsetup luksFormat -q --type luks2 --key-file "$work/key" "${fast_kdf[@]}" "$img"
zone=()
[ -n "$hotzone" ] && zone=(--hotzone-size "$hotzone")

mibs() { python3 -c "print(f'{$bytes / 2**20 / $1:.0f}')"; }
printf '%-6s %-10s %8s %8s\n' round tool seconds MiB/s
for round in $(seq "$rounds"); do
	start=$(date +%s.%N)
	cryptsetup reencrypt --force-offline-reencrypt -q --key-file "$work/key" "${fast_kdf[@]}" "$img" >/dev/null
	end=$(date +%s.%N)
	t=$(python3 -c "print(f'{$end - $start:.2f}')")
	printf '%-6s %-10s %8s %8s\n' "$round" cryptsetup "$t" "$(mibs "$t")"

	start=$(date +%s.%N)
	"$encblk" reencrypt --key-file "$work/key" "${zone[@]}" "$img" >/dev/null 2>&1
	end=$(date +%s.%N)
	t=$(python3 -c "print(f'{$end - $start:.2f}')")
	printf '%-6s %-10s %8s %8s\n' "$round" encblk "$t" "$(mibs "$t")"
done
