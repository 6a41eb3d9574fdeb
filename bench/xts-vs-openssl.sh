#!/usr/bin/env bash
# Compares pkg/xts with OpenSSL's AES-256-XTS on this machine, one core:
# `openssl speed -evp aes-256-xts -bytes N` (encrypt and -decrypt, N = 4096
# and 512) against `encblk benchmark --json` (512-bit keys), run back to back
# ROUNDS times (default 3) so that load from other users hits both alike.
# Prints the median of each figure and the ratio encblk/openssl.
# Both report bytes per CPU second (openssl speed's default, encblk's too).
# Takes about 10 s of CPU per round.
#
#   [ROUNDS=3] [OPENSSL_SECONDS=1] [ENCBLK_DURATION=300ms] bench/xts-vs-openssl.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"
case ${1:-} in
'') ;;
-h | --help) usage; exit 0 ;;
*) die "takes no arguments (ROUNDS, OPENSSL_SECONDS, ENCBLK_DURATION in the environment; see --help)" ;;
esac
rounds=${ROUNDS:-3}
secs=${OPENSSL_SECONDS:-1}
dur=${ENCBLK_DURATION:-300ms}

need_tools openssl python3 go
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
build_encblk

# openssl_kbs BYTES [-decrypt]: thousands of bytes per second.
openssl_kbs() {
	openssl speed ${2:-} -seconds "$secs" -evp aes-256-xts -bytes "$1" 2>/dev/null |
		awk '/^AES-256-XTS/ { sub(/k$/, "", $2); print $2 }'
}

for r in $(seq "$rounds"); do
	for n in 4096 512; do
		echo "openssl enc $n $(openssl_kbs "$n")" >>"$tmp/raw"
		echo "openssl dec $n $(openssl_kbs "$n" -decrypt)" >>"$tmp/raw"
	done
	"$encblk" benchmark --json --duration "$dur" >"$tmp/encblk.$r.json"
	echo "round $r of $rounds done" >&2
done

python3 - "$tmp" "$rounds" <<'PY'
import json, statistics, sys
tmp, rounds = sys.argv[1], int(sys.argv[2])
ossl = {}
for line in open(f"{tmp}/raw"):
    _, d, n, kbs = line.split()
    ossl.setdefault((d, int(n)), []).append(float(kbs) / 1000)  # -> MB/s
ours, impl = {}, "?"
for r in range(1, rounds + 1):
    rep = json.load(open(f"{tmp}/encblk.{r}.json"))
    impl = rep["implementation"]
    for x in rep["results"]:
        if x["key_bits"] != 512:
            continue
        ours.setdefault(("enc", x["sector_size"]), []).append(x["encrypt_mbps"])
        ours.setdefault(("dec", x["sector_size"]), []).append(x["decrypt_mbps"])
print(f"AES-256-XTS (512-bit key), one data unit per call, one core; median of {rounds} rounds")
print(f"encblk implementation: {impl}")
print(f"{'op':<8}{'bytes':>6}{'openssl MB/s':>15}{'encblk MB/s':>15}{'ratio':>8}")
for d in ("enc", "dec"):
    for n in (4096, 512):
        o, e = statistics.median(ossl[(d, n)]), statistics.median(ours[(d, n)])
        print(f"{'encrypt' if d == 'enc' else 'decrypt':<8}{n:>6}{o:>15.1f}{e:>15.1f}{e / o:>8.2f}")
PY
