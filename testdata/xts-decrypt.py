#!/usr/bin/python3
"""Decrypt sectors of a LUKS2 aes-xts-plain64 data segment with OpenSSL.

An independent check of encblk's ciphertext: it uses OpenSSL's AES-XTS
through Debian's python3-cryptography and shares no code with encblk.

Reads one JSON object on stdin:
  {"key": hex volume key (64 or 32 bytes), "path": backing file,
   "data_offset": bytes, "sector_size": bytes, "iv_tweak": 512-byte units,
   "ranges": [[plaintext offset, length], ...]}   (whole sectors)
and prints the hex plaintext of each range, one per line. The tweak of the
sector at plaintext offset X is X/512 + iv_tweak (little-endian, 16 bytes).
"""
import json
import sys

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def main():
    req = json.load(sys.stdin)
    key = bytes.fromhex(req["key"])
    ss = req["sector_size"]
    with open(req["path"], "rb") as f:
        for off, length in req["ranges"]:
            if off % ss or length % ss:
                sys.exit("range %d+%d is not whole sectors" % (off, length))
            f.seek(req["data_offset"] + off)
            ct = f.read(length)
            if len(ct) != length:
                sys.exit("short read at %d" % off)
            out = bytearray()
            for i in range(0, length, ss):
                tweak = ((off + i) // 512 + req["iv_tweak"]).to_bytes(16, "little")
                d = Cipher(algorithms.AES(key), modes.XTS(tweak)).decryptor()
                out += d.update(ct[i:i + ss]) + d.finalize()
            print(out.hex())


main()
