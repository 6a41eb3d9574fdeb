# order: 20
# sectors: 4096
# timeout: 900
#
# reencrypt-online: the data key of an ext4 served over the kernel's nbd
# driver is replaced online (`encblk reencrypt` on the served volume) under
# an fsync'ed write load. The server is SIGKILLed five times during the
# reencryption and restarted each time: it recovers the hot zone from the
# header's checksums and carries on. At the end the tree and every load
# file fsync'ed before the first kill are intact, fsck is clean, the
# header holds only the new key, and the kernel's dm-crypt opens the result
# with the same key file and reads the same files.
. "$ENCBLK_VM_LIB"

# recorded: the header records a reencryption.
recorded() { "$ENCBLK" status "$backing" 2>/dev/null | grep -q '^reencryption:'; }

step "serve, attach, mkfs.ext4, mount, a tree, a load of fsync'ed files"
served_ext4 112M
load_start "$mnt/load"
load_wait 3

step "encblk reencrypt on the served volume, under the load"
old_key=$(volume_key "$backing" "$key")
"$ENCBLK" reencrypt --control "$control" --key-file "$key" "$backing" >"$work/reencrypt.log" 2>&1 &
re_pid=$!
# The command prints a progress line each second once the server runs it
# (or a last line when it is over already).
for i in $(seq 1 1200); do
	grep -q '(online)\|reencrypted' "$work/reencrypt.log" && break
	kill -0 "$re_pid" 2>/dev/null || break
	sleep 0.1
done
echo "   encblk reencrypt says: $(tail -1 "$work/reencrypt.log")"

step "SIGKILL the server during the reencryption, under the load"
kill -KILL "$serve_pid"
wait "$serve_pid" 2>/dev/null || true
synced=$(load_progress)
touch "$work/stop"
wait "$load_pid" 2>/dev/null || true
wait "$re_pid" 2>/dev/null || true
umount "$mnt" || umount -l "$mnt"
nbd_detach "$dev"
dmesg -c >/dev/null
echo "   killed with $synced load files fsync'ed"

kills=1
while [ "$kills" -lt 5 ] && recorded; do
	step "restart (kill $kills): the server recovers and carries on; SIGKILL it again"
	serve_start "$backing" "$sock" "$key"
	sleep "0.$((RANDOM % 9 + 1))"
	kill -KILL "$serve_pid"
	wait "$serve_pid" 2>/dev/null || true
	kills=$((kills + 1))
done
echo "   $kills kills, $(grep -c 'recovering it from the header' "$work/serve.log" || true) hot zones recovered"
grep -i 'reencrypt' "$work/serve.log" | tail -5 | sed 's/^/   serve: /'

step "restart: the reencryption completes"
serve_start "$backing" "$sock" "$key"
for i in $(seq 1 1800); do
	recorded || break
	sleep 0.5
done
recorded && fail "reencryption still recorded after 15 minutes"
grep -q 'online reencryption finished' "$work/serve.log" || fail "the server did not log the end of the reencryption"
nbd_attach "$sock" "$dev"
mount "$dev" "$mnt"
check_tree "$mnt/durable" "$work/durable.sums"
load_check "$mnt/load" "$synced"
umount "$mnt"
fsck_clean "$dev"
nbd_detach "$dev"
serve_stop

step "cryptsetup: one new key, no requirement; dm-crypt reads the same files"
rekeyed_dmcrypt "$old_key" -o ro
load_check "$mnt/load" "$synced"
umount "$mnt"
step "done"
