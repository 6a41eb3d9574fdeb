# order: 9
# sectors: 512 4096
# timeout: 360
#
# Scenario 9, ublk-fio: fio writes /dev/ublkbN, served by `encblk serve
# --ublk` with two queues, with libaio at iodepth 32, O_DIRECT, random block
# sizes, and verifies every block with crc32c; after a server restart
# (SIGTERM, new device), fio --verify_only reads it all back.
. "$ENCBLK_VM_LIB"

backing=$work/backing.img
key=$work/key
key_file "$key"
truncate -s 64M "$backing"
encblk_format "$backing" "$key"
ublk_serve_start "$backing" "$key" --ublk-queues 2
[ -d "/sys/block/${ublk_dev#/dev/}/mq/1" ] || fail "$ublk_dev has fewer than two hardware queues"
# Same job, same seed: the second run regenerates the same offsets and data.
job=(--name=encblk-vm --ioengine=libaio --iodepth=32 --direct=1
	--rw=randwrite --bsrange="$SECTOR"-64k --blockalign="$SECTOR" --size=32M
	--verify=crc32c --verify_fatal=1 --randseed=20261204 --output-format=json)

step "fio randwrite + verify=crc32c, libaio iodepth 32, 32 MiB, two queues"
fio "${job[@]}" --filename="$ublk_dev" >"$work/fio.json" || fail "fio failed: $(cat "$work/fio.json")"
read -r err wkb rkb < <(python3 -c 'import json, sys; j = json.load(open(sys.argv[1]))["jobs"][0]; print(j["error"], j["write"]["io_kbytes"], j["read"]["io_kbytes"])' "$work/fio.json")
echo "   fio: error=$err, wrote $wkb KiB, verified $rkb KiB"
[ "$err" = 0 ] || fail "fio error $err"
[ "$wkb" -ge $((32 * 1024)) ] && [ "$rkb" -ge $((32 * 1024)) ] || fail "fio did not write and verify 32 MiB"

step "restart the server; fio --verify_only reads it all back"
serve_stop
ublk_gone "$ublk_dev"
ublk_serve_start "$backing" "$key" --ublk-queues 2
fio "${job[@]}" --filename="$ublk_dev" --verify_only >"$work/fio2.json" || fail "fio --verify_only failed: $(cat "$work/fio2.json")"
read -r err rkb < <(python3 -c 'import json, sys; j = json.load(open(sys.argv[1]))["jobs"][0]; print(j["error"], j["read"]["io_kbytes"])' "$work/fio2.json")
echo "   fio --verify_only: error=$err, verified $rkb KiB"
[ "$err" = 0 ] && [ "$rkb" -ge $((32 * 1024)) ] || fail "fio --verify_only did not verify 32 MiB"
serve_stop
step "done"
