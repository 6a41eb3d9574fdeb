# order: 1
# sectors: 512 4096
# timeout: 240
#
# Scenario 1, nbd-attach: the kernel's nbd driver attaches an NBD export with
# nbd-client (one connection, then four), ext4 is made and mounted on it, a
# file tree written, and after detach and reattach every file's SHA-256 and a
# forced fsck.ext4 -fn are clean.
#
# Server: nbdkit's file plugin on a tmpfs backing (the encblk server replaces
# it once `encblk serve` lands).
. "$ENCBLK_VM_LIB"

backing=$work/backing.img
sock=$work/nbd.sock
dev=/dev/nbd0
mnt=$work/mnt
mkdir -p "$mnt"

step "backing: 64 MiB, served by nbdkit on $sock"
truncate -s 64M "$backing"
nbdkit --unix "$sock" --pidfile "$work/nbdkit.pid" file "$backing"
at_exit 'kill $(cat '"$work"'/nbdkit.pid)'
for _ in $(seq 1 50); do [ -S "$sock" ] && break; sleep 0.1; done

attach() {
	nbd-client -unix "$sock" "$dev" -block-size "$SECTOR" "$@"
	nbd_wait "$dev"
	check_sector_size "$dev"
}

step "attach $dev (1 connection, block size $SECTOR)"
attach
at_exit "nbd-client -d $dev"
step "mkfs.ext4, mount, write tree"
mkfs.ext4 -q -F "$dev"
mount "$dev" "$mnt"
at_exit "umount $mnt"
make_tree "$mnt/tree" "$work/tree.sums"
sync
umount "$mnt"
nbd_detach "$dev"

step "reattach with -connections 4; check files"
attach -connections 4
mount "$dev" "$mnt"
check_tree "$mnt/tree" "$work/tree.sums"
umount "$mnt"
fsck_clean "$dev"
nbd_detach "$dev"
step "done"
