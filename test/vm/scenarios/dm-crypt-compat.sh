# order: 2
# sectors: 512 4096
# timeout: 300
#
# Scenario 2, dm-crypt-compat: LUKS2 volumes move between encblk and the
# kernel's dm-crypt.
#  A. `encblk format --sector-size $SECTOR` makes a volume; `cryptsetup open`
#     (kernel dm-crypt) opens it with the same key file; the dm table must say
#     aes-xts-plain64, data offset 16 MiB, sector_size:$SECTOR and no
#     iv_large_sectors (the IV counts data-unit-sized sectors); ext4 on it
#     keeps a file tree across close and reopen; fsck.ext4 -fn is clean.
#  B. The same for a volume made by `cryptsetup luksFormat`, as a control.
# Both check that the backing holds no plaintext.
#
# Backings are loop devices on the guest's tmpfs: cryptsetup refuses backings
# on 9p, which has no O_DIRECT.
. "$ENCBLK_VM_LIB"

key=$work/key
mnt=$work/mnt
mkdir -p "$mnt"
key_file "$key"

# dm_open FILE NAME opens FILE with the kernel's dm-crypt as /dev/mapper/NAME
# and checks its table.
dm_open() {
	local file=$1 name=$2 loop table
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
}

# dm_close NAME closes a dm-crypt mapping and frees its loop device.
dm_close() {
	local loop
	loop=$(cryptsetup status "$1" | sed -n 's/^ *device: *//p')
	cryptsetup close "$1"
	losetup -d "$loop"
}

# roundtrip FILE NAME: mkfs.ext4 and a file tree through dm-crypt; the tree
# survives close and reopen; fsck is clean; no plaintext in FILE.
roundtrip() {
	local file=$1 name=$2
	dm_open "$file" "$name"
	mkfs.ext4 -q -F "/dev/mapper/$name"
	mount "/dev/mapper/$name" "$mnt"
	at_exit "umount $mnt"
	make_tree "$mnt/tree" "$work/$name.sums"
	umount "$mnt"
	dm_close "$name"
	if grep -q 'encblk plaintext line' "$file"; then
		fail "plaintext found in the encrypted backing $file"
	fi
	dm_open "$file" "$name"
	mount "/dev/mapper/$name" "$mnt"
	check_tree "$mnt/tree" "$work/$name.sums"
	umount "$mnt"
	fsck_clean "/dev/mapper/$name"
	dm_close "$name"
}

step "A: encblk format --sector-size $SECTOR; open with kernel dm-crypt"
truncate -s 64M "$work/encblk.img"
"$ENCBLK" format --batch-mode --sector-size "$SECTOR" "${cryptsetup_fast[@]}" \
	--key-file "$key" "$work/encblk.img"
roundtrip "$work/encblk.img" encblk-made

step "B: cryptsetup luksFormat --sector-size $SECTOR; open with kernel dm-crypt"
truncate -s 64M "$work/luks.img"
cryptsetup luksFormat --batch-mode --type luks2 --cipher aes-xts-plain64 --key-size 512 \
	--sector-size "$SECTOR" "${cryptsetup_fast[@]}" --key-file "$key" "$work/luks.img"
roundtrip "$work/luks.img" cryptsetup-made
step "done"
