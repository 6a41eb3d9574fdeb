# order: 21
# sectors: 512 4096
# timeout: 600
#
# encrypt-in-place: an ext4 image with files, shrunk by 32 MiB, is turned
# into a LUKS2 volume in place (`encblk reencrypt --encrypt
# --reduce-device-size 32M`, datashift as cryptsetup), interrupted once by
# SIGKILL (strace's fault injection at its 7th fdatasync: on the host the
# data sync of the first zone)
# and finished with --resume. Then encblk serves it over the kernel's nbd
# driver: mounted, every file intact, fsck clean; the kernel's dm-crypt
# opens it too and reads the same files; no plaintext is left in the image.
. "$ENCBLK_VM_LIB"

img=$work/plain.img
mnt=$work/mnt
sock=$work/nbd.sock
dev=/dev/nbd0
key=$work/key
mkdir -p "$mnt"
key_file "$key"

step "an ext4 image of 128 MiB with a tree of files, shrunk by 32 MiB"
truncate -s 128M "$img"
mkfs.ext4 -q -F -b 4096 "$img"
loop=$(losetup --find --show "$img")
mount "$loop" "$mnt"
make_tree "$mnt/tree" "$work/tree.sums"
umount "$mnt"
losetup -d "$loop"
e2fsck -fy "$img" >/dev/null 2>&1 || true
resize2fs "$img" 96M >/dev/null 2>&1
truncate -s 128M "$img" # resize2fs shrank the file too: the last 32 MiB are given up
fsck_clean "$img"

step "encblk reencrypt --encrypt --reduce-device-size 32M, SIGKILLed inside a zone"
set +e
strace -f -qq -o /dev/null -e trace=fdatasync -e inject=fdatasync:signal=SIGKILL:when=7 \
	"$ENCBLK" reencrypt --encrypt --reduce-device-size 32M --sector-size "$SECTOR" "${cryptsetup_fast[@]}" \
	--key-file "$key" "$img" >"$work/encrypt.log" 2>&1
rc=$?
set -e
[ "$rc" -ne 0 ] || fail "encblk reencrypt --encrypt was not killed"
dump=$(cryptsetup luksDump --disable-locks "$img" 2>&1 || true)
if ! grep -q 'online-reencrypt-v2' <<<"$dump"; then
	cat "$work/encrypt.log" >&2
	printf '%s\n' "$dump" | head -40 >&2
	fail "no encryption recorded after the SIGKILL"
fi
if grep -q 'in-reencryption' <<<"$dump"; then
	echo "   killed (status $rc) inside a zone: a hot zone is recorded"
else
	echo "   killed (status $rc) between zones"
fi

step "encblk reencrypt --resume finishes it"
"$ENCBLK" reencrypt --resume --key-file "$key" "$img" >"$work/resume.log" 2>&1 || { cat "$work/resume.log" >&2; fail "resume failed"; }
grep -q 'encrypted .* in place' "$work/resume.log" || fail "resume did not report the encryption"
dump=$(cryptsetup luksDump --disable-locks "$img")
grep -q Requirements <<<"$dump" && fail "reencryption requirement left in the header"
no_plaintext "$img"

step "encblk serve over nbd: mount, files intact, fsck clean"
serve_start "$img" "$sock" "$key"
nbd_attach "$sock" "$dev"
mount "$dev" "$mnt"
check_tree "$mnt/tree" "$work/tree.sums"
umount "$mnt"
fsck_clean "$dev"
nbd_detach "$dev"
serve_stop

step "dm-crypt opens it and reads the same files"
loop=$(losetup --find --show "$img")
at_exit "losetup -d $loop"
cryptsetup open --key-file "$key" "$loop" inplace
at_exit "cryptsetup close inplace"
mount -o ro /dev/mapper/inplace "$mnt"
check_tree "$mnt/tree" "$work/tree.sums"
umount "$mnt"
step "done"
