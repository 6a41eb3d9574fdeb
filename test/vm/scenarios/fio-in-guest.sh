# order: 5
# sectors: 4096
# timeout: 300
#
# Scenario 5, fio-in-guest: fio writes /dev/nbd0, served by `encblk serve`
# over two connections, with libaio at iodepth 32, O_DIRECT, random block
# sizes, and verifies every block with crc32c; after a server restart,
# fio --verify_only reads it all back.
. "$ENCBLK_VM_LIB"

backing=$work/backing.img
sock=$work/nbd.sock
dev=/dev/nbd0
key=$work/key
key_file "$key"
truncate -s 64M "$backing"
encblk_format "$backing" "$key"
serve_start "$backing" "$sock" "$key"
nbd_attach "$sock" "$dev" -connections 2
at_exit "nbd-client -d $dev"
# Same job, same seed: the second run regenerates the same offsets and data.
job=(--name=encblk-vm --filename="$dev" --ioengine=libaio --iodepth=32 --direct=1
	--rw=randwrite --bsrange="$SECTOR"-64k --blockalign="$SECTOR" --size=32M
	--verify=crc32c --verify_fatal=1 --randseed=20261123 --output-format=json)

step "fio randwrite + verify=crc32c, libaio iodepth 32, 32 MiB"
fio "${job[@]}" >"$work/fio.json" || fail "fio failed: $(cat "$work/fio.json")"
# Written and read back (the verify pass), in KiB; both must cover the size.
read -r err wkb rkb < <(python3 -c 'import json, sys; j = json.load(open(sys.argv[1]))["jobs"][0]; print(j["error"], j["write"]["io_kbytes"], j["read"]["io_kbytes"])' "$work/fio.json")
echo "   fio: error=$err, wrote $wkb KiB, verified $rkb KiB"
[ "$err" = 0 ] || fail "fio error $err"
[ "$wkb" -ge $((32 * 1024)) ] && [ "$rkb" -ge $((32 * 1024)) ] || fail "fio did not write and verify 32 MiB"

step "detach, restart the server, reattach; fio --verify_only reads it all back"
nbd_detach "$dev"
serve_stop
serve_start "$backing" "$sock" "$key"
nbd_attach "$sock" "$dev" -connections 2
fio "${job[@]}" --verify_only >"$work/fio2.json" || fail "fio --verify_only failed: $(cat "$work/fio2.json")"
read -r err rkb < <(python3 -c 'import json, sys; j = json.load(open(sys.argv[1]))["jobs"][0]; print(j["error"], j["read"]["io_kbytes"])' "$work/fio2.json")
echo "   fio --verify_only: error=$err, verified $rkb KiB"
[ "$err" = 0 ] && [ "$rkb" -ge $((32 * 1024)) ] || fail "fio --verify_only did not verify 32 MiB"
nbd_detach "$dev"
step "done"
