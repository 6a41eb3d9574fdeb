# order: 21
# sectors: 512 4096
# timeout: 900
#
# encrypt-in-place: an ext4 image with files, shrunk by 32 MiB, is turned
# into a LUKS2 volume in place (`encblk reencrypt --encrypt
# --reduce-device-size 32M`, datashift as cryptsetup), interrupted once by
# SIGKILL (strace's fault injection at its 7th fdatasync: on the host the
# data sync of the first zone)
# and finished with --resume. Then encblk serves it over the kernel's nbd
# driver: mounted, every file intact, fsck clean; the kernel's dm-crypt
# opens it too and reads the same files; no plaintext is left in the image.
# Then it is decrypted back in place (`encblk reencrypt --decrypt --header
# NEWFILE`: the header exported, the data moved back to offset 0, as
# cryptsetup), SIGKILLed once the first zone is hot and finished with
# --resume: the image mounts plain through a loop device with every file
# intact and fsck clean, and holds the filesystem it started with. A copy
# decrypted by cryptsetup and stopped by SIGINT is finished by encblk too.
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
cryptsetup close inplace
losetup -d "$loop"
cp --sparse=always "$img" "$work/cs.img"

# wait_zone HDR PID: wait until the decryption recorded in HDR has a zone
# done or in progress (a linear segment), then return.
wait_zone() {
	for _ in $(seq 600); do
		cryptsetup luksDump --disable-locks "$1" 2>/dev/null | grep -q '^  1: linear' && return 0
		kill -0 "$2" 2>/dev/null || return 0
		sleep 0.05
	done
}

step "encblk reencrypt --decrypt --header NEWFILE, SIGKILLed once a zone is under way"
hdr=$work/exported.hdr
"$ENCBLK" reencrypt --decrypt --header "$hdr" --throttle 16M --key-file "$key" "$img" >"$work/decrypt.log" 2>&1 &
pid=$!
wait_zone "$hdr" "$pid"
kill -KILL "$pid" 2>/dev/null || true
set +e
wait "$pid"
rc=$?
set -e
[ "$rc" -eq 137 ] || { cat "$work/decrypt.log" >&2; fail "encblk reencrypt --decrypt was not killed (status $rc)"; }
dump=$(cryptsetup luksDump --disable-locks "$hdr")
grep -q 'online-reencrypt-v3' <<<"$dump" || fail "no decryption recorded in $hdr after the SIGKILL"
cryptsetup isLuks "$img" && fail "the image still holds a LUKS header"
if grep -q 'in-reencryption' <<<"$dump"; then
	echo "   killed inside a zone: a hot zone is recorded"
else
	echo "   killed between zones"
fi

step "encblk reencrypt --resume --header finishes it: the image mounts plain"
"$ENCBLK" reencrypt --resume --header "$hdr" --key-file "$key" "$img" >"$work/resume2.log" 2>&1 || { cat "$work/resume2.log" >&2; fail "resume failed"; }
grep -q 'decrypted .* in place' "$work/resume2.log" || fail "resume did not report the decryption"
cryptsetup luksDump "$hdr" | grep -q 'luks2' && fail "a keyslot is left in $hdr"
fsck_clean "$img"
loop=$(losetup --find --show "$img")
mount -o ro "$loop" "$mnt"
check_tree "$mnt/tree" "$work/tree.sums"
umount "$mnt"
losetup -d "$loop"

step "cryptsetup reencrypt --decrypt of a copy, stopped by SIGINT; encblk finishes it"
set +e
strace -f -qq -o /dev/null -e trace=fdatasync -e inject=fdatasync:signal=SIGINT:when=2 \
	cryptsetup reencrypt --decrypt --header "$work/cs.hdr" --force-offline-reencrypt --batch-mode --key-file "$key" "$work/cs.img" >/dev/null 2>&1
set -e
cryptsetup luksDump --disable-locks "$work/cs.hdr" | grep -q 'online-reencrypt-v3' || fail "cryptsetup's decryption is not recorded as stopped"
"$ENCBLK" reencrypt --resume --header "$work/cs.hdr" --key-file "$key" "$work/cs.img" >"$work/resume3.log" 2>&1 || { cat "$work/resume3.log" >&2; fail "encblk did not finish cryptsetup's decryption"; }
cmp -n $((96 << 20)) "$img" "$work/cs.img" || fail "encblk's and cryptsetup's decryptions differ"
loop=$(losetup --find --show "$work/cs.img")
mount -o ro "$loop" "$mnt"
check_tree "$mnt/tree" "$work/tree.sums"
umount "$mnt"
losetup -d "$loop"
step "done"
