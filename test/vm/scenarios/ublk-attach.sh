# order: 6
# sectors: 512 4096
# timeout: 360
#
# Scenario 6, ublk-attach: `encblk serve --ublk` serves a volume as
# /dev/ublkbN through the kernel's ublk driver, with the volume's sector
# size as the logical block size; `encblk status` names the device. ext4 is
# made and mounted on it and a file tree written. SIGTERM removes the
# device; after a restart (with an NBD listener on the same volume too)
# every SHA-256 matches, the same bytes read back through /dev/nbd0 and
# fsck.ext4 -fn is clean. Finally the backing opens in the kernel's
# dm-crypt with identical files, and holds no plaintext.
. "$ENCBLK_VM_LIB"

backing=$work/backing.img
key=$work/key
mnt=$work/mnt
sock=$work/nbd.sock
mkdir -p "$mnt"
key_file "$key"

step "encblk format --sector-size $SECTOR (64 MiB); encblk serve --ublk"
truncate -s 64M "$backing"
encblk_format "$backing" "$key"
ublk_serve_start "$backing" "$key" --ublk-queues 2
echo "   device $ublk_dev"
check_sector_size "$ublk_dev"
"$ENCBLK" status --control "$control" | grep -q "^ublk: *$ublk_dev\$" || fail "encblk status does not name $ublk_dev"
[ "$(blockdev --getsize64 "$ublk_dev")" -eq $((64 * 1024 * 1024 - 16 * 1024 * 1024)) ] ||
	fail "$ublk_dev is $(blockdev --getsize64 "$ublk_dev") bytes, want 48 MiB"

step "mkfs.ext4; mount; write tree"
mkfs.ext4 -q -F "$ublk_dev"
mount "$ublk_dev" "$mnt"
at_exit "umount $mnt"
make_tree "$mnt/tree" "$work/tree.sums"
umount "$mnt"

step "SIGTERM: the device goes away"
first=$ublk_dev
serve_stop
ublk_gone "$first"
no_plaintext "$backing"

step "restart with --ublk and an NBD listener; check files; same bytes over nbd; fsck"
ublk_serve_start "$backing" "$key" --listen "unix:$sock"
for i in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.1; done
mount "$ublk_dev" "$mnt"
check_tree "$mnt/tree" "$work/tree.sums"
umount "$mnt"
nbd_attach "$sock" /dev/nbd0 -readonly
at_exit "nbd-client -d /dev/nbd0"
cmp <(dd if="$ublk_dev" bs=1M iflag=direct status=none) <(dd if=/dev/nbd0 bs=1M iflag=direct status=none) ||
	fail "$ublk_dev and /dev/nbd0 differ"
echo "   $ublk_dev and /dev/nbd0 read the same 48 MiB"
nbd_detach /dev/nbd0
fsck_clean "$ublk_dev"
serve_stop
ublk_gone "$ublk_dev"

step "dm-crypt opens the backing written through ublk: same files"
loop=$(losetup --find --show "$backing")
at_exit "losetup -d $loop"
cryptsetup open --key-file "$key" "$loop" ublk-check
at_exit "cryptsetup close ublk-check"
mount -o ro /dev/mapper/ublk-check "$mnt"
check_tree "$mnt/tree" "$work/tree.sums"
umount "$mnt"
cryptsetup close ublk-check
losetup -d "$loop"
step "done"
