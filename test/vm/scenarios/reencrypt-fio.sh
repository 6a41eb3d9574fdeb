# order: 21
# sectors: 4096
# timeout: 900
#
# reencrypt-fio: the data key of a mounted ext4, served over the kernel's
# nbd driver, is replaced online (`encblk reencrypt --throttle 8M` on the
# served volume: the cap goes to the server) while fio writes a file on it
# with verify=crc32c, run after run, from before the reencryption starts
# until after it ends; every run verifies what it wrote. Afterwards fio
# --verify_only reads the last run's file back through encblk, fsck is
# clean, the header holds only the new key, and the kernel's dm-crypt
# opens the result with the same key file: the tree and the fio file
# match there too.
. "$ENCBLK_VM_LIB"

step "serve, attach, mkfs.ext4, mount, a tree"
served_ext4 112M

# One fio run: 4 KiB random writes of a 24 MiB file, then the verify pass
# (crc32c, fatal); the seed makes a run's data reproducible for
# --verify_only later.
job=(--name=reenc --filename="$mnt/fio.dat" --ioengine=libaio --iodepth=16 --direct=1
	--rw=randwrite --bs=4k --size=24M --verify=crc32c --verify_fatal=1 --output-format=json)
fio_loop() {
	local i=0
	while [ ! -e "$work/stop" ]; do
		i=$((i + 1))
		fio "${job[@]}" --randseed="$i" >"$work/fio-$i.json" 2>&1 || { echo "$i" >"$work/fio-failed"; return 1; }
		echo "$i" >"$work/fio-runs"
	done
}

step "fio randwrite + verify=crc32c in a loop; encblk reencrypt --throttle 8M on the served volume"
old_key=$(volume_key "$backing" "$key")
fio_loop &
fio_pid=$!
at_exit "touch $work/stop"
for i in $(seq 1 600); do
	[ -e "$work/fio-1.json" ] && break
	sleep 0.1
done
"$ENCBLK" reencrypt --control "$control" --key-file "$key" --throttle 8M "$backing" >"$work/reencrypt.log" 2>&1 ||
	fail "encblk reencrypt failed: $(tail -3 "$work/reencrypt.log")"
echo "   encblk reencrypt says: $(tail -1 "$work/reencrypt.log")"
grep -q 'reencrypted .* online' "$work/reencrypt.log" || fail "the server did not run the reencryption online"
# The load covered the whole reencryption: fio was still at it when the
# reencryption ended, and no run had failed.
kill -0 "$fio_pid" 2>/dev/null || fail "fio stopped before the reencryption ended: $(cat "$work"/fio-failed 2>/dev/null) $(tail -5 "$work"/fio-*.json)"
touch "$work/stop"
wait "$fio_pid" || fail "fio verify failed in run $(cat "$work/fio-failed"): $(tail -20 "$work/fio-$(cat "$work/fio-failed").json")"
runs=$(cat "$work/fio-runs")
echo "   $runs fio runs wrote and verified 24 MiB each, during and around the reencryption"
grep -q 'online reencryption finished' "$work/serve.log" || fail "the server did not log the end of the reencryption"

verify_only() {
	fio "${job[@]}" --randseed="$runs" --verify_only >"$work/verify-$1.json" 2>&1 ||
		fail "fio --verify_only through $1 failed: $(tail -20 "$work/verify-$1.json")"
	read -r err rkb < <(python3 -c 'import json, sys; j = json.load(open(sys.argv[1]))["jobs"][0]; print(j["error"], j["read"]["io_kbytes"])' "$work/verify-$1.json")
	[ "$err" = 0 ] && [ "$rkb" -ge $((24 * 1024)) ] || fail "fio --verify_only through $1 verified $rkb KiB (error $err)"
	echo "   fio --verify_only through $1: $rkb KiB match"
}

step "after the reencryption: the last fio file and the tree read back through encblk; fsck clean"
verify_only encblk
check_tree "$mnt/durable" "$work/durable.sums"
umount "$mnt"
fsck_clean "$dev"
nbd_detach "$dev"
serve_stop

step "cryptsetup: one new key, no requirement; dm-crypt reads the same files"
rekeyed_dmcrypt "$old_key"
verify_only dm-crypt
umount "$mnt"
step "done"
