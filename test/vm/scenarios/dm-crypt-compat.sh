# order: 2
# sectors: 512 4096
# timeout: 420
#
# Scenario 2, dm-crypt-compat: the same LUKS2 volume is read and written by
# encblk (served over NBD to the kernel's nbd driver) and by the kernel's
# dm-crypt (cryptsetup open), with identical files either way. This checks
# encblk's sector cipher, its tweak rule for large sectors and its data
# offset against the kernel's.
#  A. `encblk format --sector-size $SECTOR`; ext4 and tree 1 written through
#     encblk; cryptsetup open: the dm table says aes-xts-plain64, data offset
#     16 MiB, sector_size:$SECTOR and no iv_large_sectors (the IV counts
#     data-unit-sized sectors); tree 1 reads back through dm-crypt; tree 2 is
#     written through dm-crypt and reads back through encblk; fsck clean.
#  B. `cryptsetup luksFormat --sector-size $SECTOR`; ext4 and tree 3 written
#     through dm-crypt read back through encblk; tree 4 written through encblk
#     reads back through dm-crypt; fsck clean.
# Backings are loop devices on the guest's tmpfs: cryptsetup refuses backings
# on 9p, which has no O_DIRECT.
. "$ENCBLK_VM_LIB"

key=$work/key
sock=$work/nbd.sock
dev=/dev/nbd0
mnt=$work/mnt
mkdir -p "$mnt"
key_file "$key"

# dm_open FILE NAME [mkfs] opens FILE with the kernel's dm-crypt as
# /dev/mapper/NAME, checks its table, makes ext4 on it if asked, and mounts it.
dm_open() {
	local file=$1 name=$2 mkfs=${3:-} loop table
	loop=$(losetup --find --show "$file")
	at_exit "losetup -d $loop"
	cryptsetup open --key-file "$key" "$loop" "$name"
	at_exit "cryptsetup close $name"
	table=$(dmsetup table "$name")
	echo "   dm table: $table"
	# start length crypt cipher key iv_offset device offset [#opts opts...]
	set -- $table
	[ "$3" = crypt ] && [ "$4" = aes-xts-plain64 ] || fail "unexpected dm table: $table"
	[ "$8" = 32768 ] || fail "data offset $8 sectors, want 32768 (16 MiB): $table"
	case " $table " in *iv_large_sectors*) fail "dm table uses iv_large_sectors: $table" ;; esac
	if [ "$SECTOR" -ne 512 ]; then
		case " $table " in *" sector_size:$SECTOR "*) ;; *) fail "dm table lacks sector_size:$SECTOR: $table" ;; esac
	fi
	check_sector_size "/dev/mapper/$name"
	[ -z "$mkfs" ] || mkfs.ext4 -q -F "/dev/mapper/$name"
	mount "/dev/mapper/$name" "$mnt"
}

# dm_close NAME unmounts, closes a dm-crypt mapping and frees its loop device.
dm_close() {
	local loop
	umount "$mnt"
	loop=$(cryptsetup status "$1" | sed -n 's/^ *device: *//p')
	cryptsetup close "$1"
	losetup -d "$loop"
}

# nbd_open FILE [mkfs] serves FILE with encblk, attaches it, makes ext4 on it
# if asked, and mounts it.
nbd_open() {
	serve_start "$1" "$sock" "$key"
	nbd_attach "$sock" "$dev"
	[ -z "${2:-}" ] || mkfs.ext4 -q -F "$dev"
	mount "$dev" "$mnt"
}

# nbd_close unmounts, detaches and stops the server.
nbd_close() {
	umount "$mnt"
	nbd_detach "$dev"
	serve_stop
}

at_exit "umount $mnt"
at_exit "nbd-client -d $dev"

step "A: encblk format --sector-size $SECTOR; mkfs.ext4 and tree 1 through encblk"
a=$work/encblk-made.img
truncate -s 64M "$a"
encblk_format "$a" "$key"
nbd_open "$a" mkfs
make_tree "$mnt/t1" "$work/t1.sums"
nbd_close
no_plaintext "$a"

step "A: kernel dm-crypt reads tree 1, writes tree 2"
dm_open "$a" encblk-made
check_tree "$mnt/t1" "$work/t1.sums"
make_tree "$mnt/t2" "$work/t2.sums"
dm_close encblk-made

step "A: encblk reads trees 1 and 2; fsck"
nbd_open "$a"
check_tree "$mnt/t1" "$work/t1.sums"
check_tree "$mnt/t2" "$work/t2.sums"
umount "$mnt"
fsck_clean "$dev"
mount "$dev" "$mnt"
nbd_close

step "B: cryptsetup luksFormat --sector-size $SECTOR; mkfs.ext4 and tree 3 through dm-crypt"
b=$work/cryptsetup-made.img
truncate -s 64M "$b"
cryptsetup luksFormat --batch-mode --type luks2 --cipher aes-xts-plain64 --key-size 512 \
	--sector-size "$SECTOR" "${cryptsetup_fast[@]}" --key-file "$key" "$b"
dm_open "$b" cryptsetup-made mkfs
make_tree "$mnt/t3" "$work/t3.sums"
dm_close cryptsetup-made
no_plaintext "$b"

step "B: encblk reads tree 3, writes tree 4"
nbd_open "$b"
check_tree "$mnt/t3" "$work/t3.sums"
make_tree "$mnt/t4" "$work/t4.sums"
nbd_close

step "B: kernel dm-crypt reads trees 3 and 4; fsck"
dm_open "$b" cryptsetup-made
check_tree "$mnt/t3" "$work/t3.sums"
check_tree "$mnt/t4" "$work/t4.sums"
umount "$mnt"
fsck_clean /dev/mapper/cryptsetup-made
mount /dev/mapper/cryptsetup-made "$mnt"
dm_close cryptsetup-made
step "done"
