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

step "encblk lock: I/O waits"
"$ENCBLK" lock --control "$control"
"$ENCBLK" status --control "$control" | sed 's/^/   status: /'
dd if=/dev/urandom of="$mnt/probe-write" bs=4096 count=1 oflag=direct conv=notrunc status=none &
probe_w=$!
dd if="$mnt/probe-read" of=/dev/null bs=65536 iflag=direct status=none &
probe_r=$!
before=$(load_progress)
sleep 5
kill -0 "$probe_w" 2>/dev/null || fail "an O_DIRECT write completed while the volume was locked"
kill -0 "$probe_r" 2>/dev/null || fail "an O_DIRECT read completed while the volume was locked"
# One fsync that was in flight when the lock came may finish; no more.
[ "$(load_progress)" -le $((before + 1)) ] || fail "the load went on while locked ($before -> $(load_progress) files)"
echo "   after 5 s locked: probe write and read still waiting, load at $(load_progress) files (was $before)"

step "encblk unlock: I/O resumes"
"$ENCBLK" unlock --control "$control" --key-file "$key"
wait "$probe_w" || fail "the O_DIRECT write failed after unlock"
wait "$probe_r" || fail "the O_DIRECT read failed after unlock"
load_wait $((before + 2))
echo "   probes completed; load at $(load_progress) files"

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
