# order: 4
# sectors: 4096
# timeout: 300
#
# Scenario 4, server-crash: `encblk serve` is SIGKILLed during a write load
# on a mounted ext4; after a restart and reattach the journal replays on
# mount, data fsync'ed before the crash is intact and fsck.ext4 -fn is clean.
. "$ENCBLK_VM_LIB"

backing=$work/backing.img
sock=$work/nbd.sock
dev=/dev/nbd0
mnt=$work/mnt
mkdir -p "$mnt"
key=$work/key
key_file "$key"
truncate -s 64M "$backing"
encblk_format "$backing" "$key"

step "serve, attach, mkfs.ext4, mount"
serve_start "$backing" "$sock" "$key"
# -timeout: with one connection and none, the kernel's client keeps a
# request the dead server never answered forever ("Possible stuck request
# ... Runtime 240 seconds" every 30 s, seen once in a full-suite run), and
# the load, and this script, with it; with one, the request fails with EIO
# when it expires, like the others sent to the dead connection.
nbd_attach "$sock" "$dev" -timeout 30
at_exit "nbd-client -d $dev"
mkfs.ext4 -q -F "$dev"
mount "$dev" "$mnt"
at_exit "umount -l $mnt"

step "write and sync a tree, then start a load of fsync'ed files"
make_tree "$mnt/durable" "$work/durable.sums"
sync -f "$mnt"
load_start "$mnt/load"
load_wait 3

step "SIGKILL the server mid-load"
kill -KILL "$serve_pid"
wait "$serve_pid" 2>/dev/null || true
synced=$(load_progress)
echo "   killed with $synced load files fsync'ed"
touch "$work/stop"
wait "$load_pid" 2>/dev/null || true # it fails on the dead device
umount "$mnt" || umount -l "$mnt"
nbd_detach "$dev"
# I/O errors on the dead connection are expected; what comes after is not.
echo "   kernel saw $(dmesg -c | grep -c 'I/O error' || true) I/O error lines on the dead connection"

step "restart the server, reattach, mount (journal replay), check durable files"
serve_start "$backing" "$sock" "$key"
nbd_attach "$sock" "$dev"
mount "$dev" "$mnt"
check_tree "$mnt/durable" "$work/durable.sums"
load_check "$mnt/load" "$synced"
echo "   $(ls "$mnt/load" | wc -l) load files exist after replay"
umount "$mnt"
fsck_clean "$dev"
nbd_detach "$dev"
step "done"
