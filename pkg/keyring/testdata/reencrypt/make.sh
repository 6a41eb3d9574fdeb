#!/usr/bin/env bash
# Makes the LUKS2 reencryption fixtures in this directory with cryptsetup
# itself (2.6.1 on Debian 12 when they were made). Each image is small: a
# 16 KiB metadata area, a 260 KiB keyslots area (room for the two keyslots and a 4 KiB
# reencrypt area; data at 1 MiB) and 256 KiB
# of data, reencrypted in 64 KiB hot zones so that interruptions land between
# zones. Interruptions are made deterministic with strace's fault injection:
# the signal is sent when cryptsetup enters its Nth fdatasync (the data sync
# of hot zone N, before the metadata commit that ends the zone).
#
#   reencrypt-init.img   reencrypt --init-only: metadata set up, nothing moved
#   reencrypt-clean.img  SIGINT at zone 2: cryptsetup finishes the zone and
#                        stops cleanly (progress 128 KiB, no hot zone)
#   reencrypt-crash.img  SIGKILL at zone 2: the zone is written but its commit
#                        never happens (a segment flagged in-reencryption)
#   encrypt-init.img     reencrypt --encrypt --reduce-device-size 1M --init-only
#                        of a plain 3 MiB file (datashift resilience; the
#                        plaintext's first 2 MiB hash to encrypt-plaintext.sha256)
#
# key is the key file of every keyslot. plaintext.sha256 is the sha256 of the
# plaintext each volume holds (the same random bytes, written before format
# or encryption). Images are stored gzipped. Needs: cryptsetup, strace,
# python3-cryptography (to write the plaintext through AES-XTS), gzip.
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

datasz=$((256 << 10))
head -c 32 /dev/urandom >key
head -c $datasz /dev/urandom >"$work/plain"
sha256sum <"$work/plain" | cut -d' ' -f1 >plaintext.sha256

fmt=(--type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000
	--luks2-metadata-size 16k --luks2-keyslots-size 260k --key-size 256 --sector-size 4096)
re=(--force-offline-reencrypt --key-file key --pbkdf pbkdf2 --pbkdf-force-iterations 1000
	--hotzone-size 64k -q)

# luks IMG: a LUKS2 volume whose data area holds the plaintext, encrypted
# with its volume key by OpenSSL (python3-cryptography).
luks() {
	truncate -s $(((1 << 20) + datasz)) "$1"
	cryptsetup luksFormat -q "${fmt[@]}" --key-file key "$1" 2>/dev/null
	cryptsetup luksDump --dump-volume-key --volume-key-file "$work/vk" --key-file key -q "$1" >/dev/null
	/usr/bin/python3 - "$1" "$work/vk" "$work/plain" <<'PY'
import sys
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
img, vk, plain = sys.argv[1:]
key = open(vk, "rb").read()
data = open(plain, "rb").read()
out = bytearray()
for i in range(0, len(data), 4096):
    tweak = (i // 512).to_bytes(16, "little")
    e = Cipher(algorithms.AES(key), modes.XTS(tweak)).encryptor()
    out += e.update(data[i:i + 4096]) + e.finalize()
with open(img, "r+b") as f:
    f.seek(1 << 20)
    f.write(out)
PY
	rm -f "$work/vk"
}

luks "$work/reencrypt-init.img"
cryptsetup reencrypt "${re[@]}" --init-only "$work/reencrypt-init.img"

luks "$work/reencrypt-clean.img"
strace -f -qq -o /dev/null -e trace=fdatasync -e inject=fdatasync:signal=SIGINT:when=2 \
	cryptsetup reencrypt "${re[@]}" "$work/reencrypt-clean.img" || true

luks "$work/reencrypt-crash.img"
strace -f -qq -o /dev/null -e trace=fdatasync -e inject=fdatasync:signal=SIGKILL:when=2 \
	cryptsetup reencrypt "${re[@]}" "$work/reencrypt-crash.img" || true

# A plain file of 3 MiB (low-entropy text, so that the fixture compresses),
# 1 MiB of which is given up (--reduce-device-size): --init-only sets up the
# datashift metadata (cryptsetup chose a 512 KiB data offset and shift) and
# copies the head of the data to the end of the file (the
# backup-moved-segment); nothing is encrypted yet.
{ yes 'encblk encrypt fixture' || true; } | head -c $((3 << 20)) >"$work/encrypt-init.img"
head -c $((2 << 20)) "$work/encrypt-init.img" | sha256sum | cut -d' ' -f1 >encrypt-plaintext.sha256
cryptsetup reencrypt --encrypt --init-only --reduce-device-size 1M "${fmt[@]}" "${re[@]}" "$work/encrypt-init.img"

for f in reencrypt-init reencrypt-clean reencrypt-crash encrypt-init; do
	cryptsetup luksDump "$work/$f.img" >"$f.dump.txt"
	gzip -9n <"$work/$f.img" >"$f.img.gz"
done
