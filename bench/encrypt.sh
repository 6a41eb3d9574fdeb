#!/usr/bin/env bash
# Offline encryption in place (LUKS2 datashift) throughput: encblk
# reencrypt --encrypt against cryptsetup reencrypt --encrypt, both with
# --reduce-device-size 32M (header in the first 16 MiB, data shifted by
# 16 MiB, backward), on the same file, alternating round by round. Before
# each run the plaintext file is restored from a golden copy (not timed,
# then synced), so both tools start from the same bytes on disk. Both use
# a 512-bit key, 512-byte sectors (cryptsetup's --encrypt default) and a
# fast KDF so that key derivation is negligible. Times are wall clock of
# the whole command. This is a benchmark, not a test: nothing asserts a
# timing.
#
# Then decryption in place with a data shift: the file, encrypted once by
# encblk, is restored before each run and decrypted back to offset 0 with
# its header exported to a new file, by cryptsetup reencrypt --decrypt
# --header NEWFILE and by encblk reencrypt --decrypt --header NEWFILE,
# alternating. The load average is printed before and after.
#
#   bench/encrypt.sh [--size 2G] [--rounds N] [--reduce 32M] [--only encrypt|decrypt] [--encblk BINARY]
set -euo pipefail

. "$(dirname "$0")/lib.sh"

size=2G rounds=2 reduce=32M encblk="" only=""
while [ $# -gt 0 ]; do
	case $1 in
	--size) need_value "$@"; size=$2; shift ;;
	--rounds) need_value "$@"; rounds=$2; shift ;;
	--reduce) need_value "$@"; reduce=$2; shift ;;
	--encblk) need_value "$@"; encblk=$2; shift ;;
	--only) need_value "$@"; only=$2; shift ;;
	-h|--help) usage; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
	shift
done
need_positive --rounds "$rounds"
case $only in "" | encrypt | decrypt) ;; *) die "--only encrypt or decrypt" ;; esac
need_tools go cryptsetup

work=$(mktemp -d /tmp/encblk-encrypt.XXXXXX)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM HUP

build_encblk

fast_kdf=(--pbkdf pbkdf2 --pbkdf-force-iterations 1000)
head -c 64 /dev/urandom >"$work/key"
img=$work/plain.img
golden=$work/golden.img
bytes=$(numfmt --from=iec "$size")
red=$(numfmt --from=iec "$reduce")
data=$((bytes - red))
dd if=/dev/urandom of="$golden" bs=1M count=$((data >> 20)) status=none
truncate -s "$bytes" "$golden"

restore() {
	rm -f "$img"
	cp "$golden" "$img"
	sync -f "$img"
}
mibs() { python3 -c "print(f'{$data / 2**20 / $1:.0f}')"; }
timed() {
	local start end
	start=$(date +%s.%N)
	"$@" >/dev/null 2>&1 || die "failed: $*"
	end=$(date +%s.%N)
	python3 -c "print(f'{$end - $start:.2f}')"
}
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
echo "load average before: $(loadavg)"
total() { python3 -c "import sys; print(f'{sum(map(float, sys.argv[1:])):.2f}')" "$@"; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}x')"; }
if [ "$only" != decrypt ]; then
	cs=() eb=()
	printf '%-6s %-8s %-10s %8s %8s\n' round mode tool seconds MiB/s
	for round in $(seq "$rounds"); do
		restore
		t=$(timed cryptsetup reencrypt --encrypt --reduce-device-size "$reduce" --type luks2 --force-offline-reencrypt \
			-q --key-file "$work/key" "${fast_kdf[@]}" "$img")
		cs+=("$t")
		printf '%-6s %-8s %-10s %8s %8s\n' "$round" encrypt cryptsetup "$t" "$(mibs "$t")"

		restore
		t=$(timed "$encblk" reencrypt --encrypt --reduce-device-size "$reduce" --key-file "$work/key" "${fast_kdf[@]}" "$img")
		eb+=("$t")
		printf '%-6s %-8s %-10s %8s %8s\n' "$round" encrypt encblk "$t" "$(mibs "$t")"
	done
	echo "encrypt: cryptsetup $(total "${cs[@]}") s, encblk $(total "${eb[@]}") s: encblk $(ratio "$(total "${cs[@]}")" "$(total "${eb[@]}")") as fast"
fi
if [ "$only" != encrypt ]; then
	# The encrypted golden copy: made once by encblk (not timed).
	restore
	"$encblk" reencrypt --encrypt --reduce-device-size "$reduce" --key-file "$work/key" "${fast_kdf[@]}" "$img" >/dev/null 2>&1 ||
		die "encblk reencrypt --encrypt failed"
	mv "$img" "$golden"
	data=$((bytes - red / 2)) # the volume's size: what is decrypted
	cs=() eb=()
	printf '%-6s %-8s %-10s %8s %8s\n' round mode tool seconds MiB/s
	for round in $(seq "$rounds"); do
		restore
		rm -f "$work/new.hdr"
		t=$(timed cryptsetup reencrypt --decrypt --header "$work/new.hdr" --force-offline-reencrypt -q --key-file "$work/key" "$img")
		cs+=("$t")
		printf '%-6s %-8s %-10s %8s %8s\n' "$round" decrypt cryptsetup "$t" "$(mibs "$t")"

		restore
		rm -f "$work/new.hdr"
		t=$(timed "$encblk" reencrypt --decrypt --header "$work/new.hdr" --key-file "$work/key" "$img")
		eb+=("$t")
		printf '%-6s %-8s %-10s %8s %8s\n' "$round" decrypt encblk "$t" "$(mibs "$t")"
	done
	echo "decrypt: cryptsetup $(total "${cs[@]}") s, encblk $(total "${eb[@]}") s: encblk $(ratio "$(total "${cs[@]}")" "$(total "${eb[@]}")") as fast"
fi
echo "load average after: $(loadavg)"
