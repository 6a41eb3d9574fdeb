# order: 2
# sectors: 512 4096
# timeout: 240
#
# Scenario 2, dm-crypt-compat: the kernel's dm-crypt opens a LUKS2 volume
# made by cryptsetup luksFormat with the scenario's sector size; the dm table
# must say aes-xts-plain64 with that sector size (and no iv_large_sectors:
# the IV counts data-unit-sized sectors); ext4 on it keeps a file tree across
# close and reopen, and fsck.ext4 -fn is clean.
#
# The backing is a loop device on a guest tmpfs copy: cryptsetup refuses
# backings on 9p, which has no O_DIRECT.
. "$ENCBLK_VM_LIB"

backing=$work/luks.img
key=$work/key
name=encblk-vm-crypt
mnt=$work/mnt
mkdir -p "$mnt"
key_file "$key"

step "cryptsetup luksFormat --sector-size $SECTOR on a 64 MiB loop"
truncate -s 64M "$backing"
loop=$(losetup --find --show "$backing")
at_exit "losetup -d $loop"
cryptsetup luksFormat --batch-mode --type luks2 --cipher aes-xts-plain64 --key-size 512 \
	--sector-size "$SECTOR" "${cryptsetup_fast[@]}" --key-file "$key" "$loop"

open_volume() {
	cryptsetup open --key-file "$key" "$loop" "$name"
	at_exit "cryptsetup close $name"
	local table
	table=$(dmsetup table "$name")
	echo "   dm table: $table"
	set -- $table
	[ "$3" = crypt ] && [ "$4" = aes-xts-plain64 ] || fail "unexpected dm table: $table"
	case " $table " in *iv_large_sectors*) fail "dm table uses iv_large_sectors: $table" ;; esac
	if [ "$SECTOR" -ne 512 ]; then
		case " $table " in *" sector_size:$SECTOR "*) ;; *) fail "dm table lacks sector_size:$SECTOR: $table" ;; esac
	fi
	check_sector_size "/dev/mapper/$name"
}

step "open with kernel dm-crypt; mkfs.ext4; write tree"
open_volume
mkfs.ext4 -q -F "/dev/mapper/$name"
mount "/dev/mapper/$name" "$mnt"
at_exit "umount $mnt"
make_tree "$mnt/tree" "$work/tree.sums"
umount "$mnt"
cryptsetup close "$name"

step "the backing holds no plaintext"
if grep -q 'encblk plaintext line' "$backing"; then
	fail "plaintext found in the encrypted backing"
fi

step "reopen; check files; fsck"
open_volume
mount "/dev/mapper/$name" "$mnt"
check_tree "$mnt/tree" "$work/tree.sums"
umount "$mnt"
fsck_clean "/dev/mapper/$name"
cryptsetup close "$name"
step "done"
