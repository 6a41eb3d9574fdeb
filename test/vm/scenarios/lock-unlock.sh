# order: 3
# sectors: 4096
# timeout: 420
#
# Scenario 3, lock-unlock: with ext4 mounted from `encblk serve` over the
# kernel's nbd driver and a write load running,
#  - `encblk lock` makes I/O wait: an O_DIRECT write and an O_DIRECT read
#    issued while locked do not complete, and the load makes no progress;
#  - `encblk unlock` resumes them, with no error in the kernel log;
#  - `encblk rotate` to a new key file during the write load changes nothing
#    the filesystem sees; afterwards the old key file opens no keyslot
#    (cryptsetup) and the new one opens the volume in the kernel's dm-crypt
#    and in encblk with every file intact.
. "$ENCBLK_VM_LIB"

backing=$work/backing.img
key=$work/key
newkey=$work/key.new
sock=$work/nbd.sock
dev=/dev/nbd0
mnt=$work/mnt
mkdir -p "$mnt"
key_file "$key"
key_file "$newkey"

step "format, serve, attach, mkfs.ext4, mount, write tree"
truncate -s 64M "$backing"
encblk_format "$backing" "$key"
serve_start "$backing" "$sock" "$key"
nbd_attach "$sock" "$dev"
at_exit "nbd-client -d $dev"
mkfs.ext4 -q -F "$dev"
mount "$dev" "$mnt"
at_exit "umount $mnt"
make_tree "$mnt/tree" "$work/tree.sums"
# Probe files for O_DIRECT I/O while locked; allocated and on disk now.
head -c 65536 /dev/urandom >"$mnt/probe-read"
head -c 65536 /dev/urandom >"$mnt/probe-write"
sync

load_start "$mnt/load"
load_wait 2

lock_waits_unlock "$mnt" "$key"

step "encblk rotate to a new key file during the load"
at_rotate=$(load_progress)
"$ENCBLK" rotate --control "$control" --key-file "$key" --new-key-file "$newkey" "${cryptsetup_fast[@]}"
load_wait $((at_rotate + 2))
load_stop
echo "   load wrote $(load_progress) files ($at_rotate when rotate began)"
check_tree "$mnt/tree" "$work/tree.sums"
load_check "$mnt/load" "$(load_progress)"
umount "$mnt"
nbd_detach "$dev"
serve_stop

step "the old key opens nothing; the new key opens it in dm-crypt and encblk"
loop=$(losetup --find --show "$backing")
at_exit "losetup -d $loop"
if cryptsetup open --test-passphrase --key-file "$key" "$loop" 2>/dev/null; then
	fail "the old key file still opens a keyslot after rotate"
fi
cryptsetup open --key-file "$newkey" "$loop" rotated
at_exit "cryptsetup close rotated"
mount -o ro /dev/mapper/rotated "$mnt"
check_tree "$mnt/tree" "$work/tree.sums"
umount "$mnt"
cryptsetup close rotated
losetup -d "$loop"
serve_start "$backing" "$sock" "$newkey"
nbd_attach "$sock" "$dev"
fsck_clean "$dev"
mount "$dev" "$mnt"
check_tree "$mnt/tree" "$work/tree.sums"
umount "$mnt"
nbd_detach "$dev"
serve_stop
step "done"
