#!/usr/bin/env bash
# Makes the fixture of a decryption with a data shift with cryptsetup itself
# (2.6.1 on Debian 12 when it was made), with the key file of make.sh (key):
#
#   decrypt-shift-init.img, .hdr  a LUKS2 volume whose header is on the
#       device (16 KiB metadata area, 160 KiB keyslots area, data at 192 KiB,
#       448 KiB of data in 4096-byte sectors, a 256-bit key), then
#       cryptsetup reencrypt --decrypt --init-only --header
#       decrypt-shift-init.hdr: the header exported to the .hdr file
#       (datashift-checksum, forward, online-reencrypt-v3), the device's own
#       header wiped and the first 192 KiB of ciphertext copied over it
#       (the moved segment); nothing decrypted yet. Zones: [192K, 384K),
#       [384K, 448K), then the moved segment [0, 192K) in place.
#
# decrypt-shift-plaintext.sha256 is the sha256 of the 448 KiB of plaintext
# (low-entropy text, encrypted by OpenSSL (python3-cryptography) with the
# volume key). Stored gzipped. Needs: cryptsetup, python3-cryptography, gzip.
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

off=$((192 << 10))
datasz=$((448 << 10))
{ yes 'encblk decrypt fixture' || true; } | head -c $datasz >"$work/plain"
sha256sum <"$work/plain" | cut -d' ' -f1 >decrypt-shift-plaintext.sha256
img="$work/decrypt-shift-init.img"
truncate -s $((off + datasz)) "$img"
cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
	--luks2-metadata-size 16k --luks2-keyslots-size 160k --offset $((off / 512)) \
	--key-size 256 --sector-size 4096 --key-file key "$img"
cryptsetup luksDump --dump-volume-key --volume-key-file "$work/vk" --key-file key -q "$img" >/dev/null
/usr/bin/python3 - "$img" "$work/vk" "$work/plain" "$off" <<'PY'
import sys
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
img, vk, plain, off = sys.argv[1:]
key = open(vk, "rb").read()
data = open(plain, "rb").read()
out = bytearray()
for i in range(0, len(data), 4096):
    tweak = (i // 512).to_bytes(16, "little")
    e = Cipher(algorithms.AES(key), modes.XTS(tweak)).encryptor()
    out += e.update(data[i:i + 4096]) + e.finalize()
with open(img, "r+b") as f:
    f.seek(int(off))
    f.write(out)
PY
rm -f "$work/vk"
cryptsetup reencrypt --decrypt --init-only --header "$work/decrypt-shift-init.hdr" \
	--force-offline-reencrypt --batch-mode --key-file key "$img"
cryptsetup luksDump "$work/decrypt-shift-init.hdr" >decrypt-shift-init.dump.txt
gzip -9n <"$img" >decrypt-shift-init.img.gz
gzip -9n <"$work/decrypt-shift-init.hdr" >decrypt-shift-init.hdr.gz
