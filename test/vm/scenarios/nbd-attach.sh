# order: 1
# sectors: 512 4096
# timeout: 300
#
# Scenario 1, nbd-attach: `encblk format` makes a volume and `encblk serve`
# serves it on a unix socket; the kernel's nbd driver attaches it with
# nbd-client (one connection, then four), ext4 is made and mounted on it, a
# file tree written; after detach and reattach, and again after a server
# restart, every file's SHA-256 matches and a forced fsck.ext4 -fn is clean.
# The backing holds no plaintext.
. "$ENCBLK_VM_LIB"

backing=$work/backing.img
key=$work/key
sock=$work/nbd.sock
dev=/dev/nbd0
mnt=$work/mnt
mkdir -p "$mnt"
key_file "$key"

step "encblk format --sector-size $SECTOR (64 MiB); encblk serve"
truncate -s 64M "$backing"
encblk_format "$backing" "$key"
serve_start "$backing" "$sock" "$key"

step "attach $dev (1 connection, block size $SECTOR); mkfs.ext4; mount; write tree"
nbd_attach "$sock" "$dev"
at_exit "nbd-client -d $dev"
mkfs.ext4 -q -F "$dev"
mount "$dev" "$mnt"
at_exit "umount $mnt"
make_tree "$mnt/tree" "$work/tree.sums"
sync
umount "$mnt"
nbd_detach "$dev"

step "reattach with -connections 4; check files; fsck"
nbd_attach "$sock" "$dev" -connections 4
mount "$dev" "$mnt"
check_tree "$mnt/tree" "$work/tree.sums"
umount "$mnt"
fsck_clean "$dev"
nbd_detach "$dev"

step "restart encblk serve; reattach; check files"
serve_stop
no_plaintext "$backing"
serve_start "$backing" "$sock" "$key"
nbd_attach "$sock" "$dev"
mount "$dev" "$mnt"
check_tree "$mnt/tree" "$work/tree.sums"
umount "$mnt"
nbd_detach "$dev"
serve_stop
step "done"
