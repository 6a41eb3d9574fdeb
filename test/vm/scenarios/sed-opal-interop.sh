# order: 21
# sectors: 512
# timeout: 600
#
# sed-opal-interop: encblk and Debian 13's sedutil-cli (ENCBLK_VM_DEBIAN13)
# on one simulated Opal 2 drive seen by the kernel as /dev/sdX through
# test/vm/sedtcmu (ENCBLK_VM_SEDTCMU), both directions. sedutil takes the
# drive (-n: the password is the PIN, no hashing) and locks a range: the
# kernel gets DATA PROTECT; `encblk sed setup` authenticates with
# sedutil's admin password and makes a hw-opal volume; sedutil lists its
# range locked, `encblk sed unlock` opens it, sedutil sees it unlocked;
# `encblk sed lock` locks it and sedutil unlocks it with the admin
# password: the kernel reads encblk's plaintext. After a power cycle the
# range is locked again (LockOnReset) and encblk unlocks it.
. "$ENCBLK_VM_LIB"
. "$(dirname "$ENCBLK_VM_LIB")/sed.sh"

pw=encblk-sedutil-admin
printf '%s' "$pw" >admin.key
head -c 32 /dev/urandom >kek.key
chmod 600 admin.key kek.key

sed_start opal
dev=$SED_DEV

# readable OFFSET_MIB: one O_DIRECT read of 64 KiB at OFFSET_MIB MiB.
readable() { dd if="$dev" of=/dev/null bs=64k count=1 skip=$(($1 * 16)) iflag=direct status=none 2>/dev/null; }
# expect_data_protect OFFSET_MIB: the read fails and the kernel says why.
expect_data_protect() {
	dmesg -c >/dev/null
	if readable "$1"; then fail "read at $1 MiB succeeded on a locked range"; fi
	grep -q "Data Protect" <<<"$(dmesg)" || { dmesg | tail; fail "no Data Protect sense in the kernel log"; }
	grep -q "Access denied - no access rights" <<<"$(dmesg)" || echo "   (kernel did not decode ASC 20/02)"
	dmesg -c >/dev/null
}
ranges() { sedutil -n --listLockingRanges "$pw" "$dev"; }
# lr1 prints sedutil's line of lock states for range 1.
lr1() {
	local o
	o=$(ranges)
	awk '/^LR1 / { f = 1; next } f { print; exit }' <<<"$o"
}

step "sedutil -n --initialSetup; --setMBREnable off"
sedutil -n --initialSetup "$pw" "$dev"
sedutil -n --setMBREnable off "$pw" "$dev"
$ENCBLK sed info "$dev" | tee info.txt
grep -q "enabled yes" info.txt || fail "encblk sees locking not enabled after sedutil --initialSetup"

step "sedutil --setupLockingRange 1 (LBA 2048, 8 MiB), --enableLockingRange, --setLockingRange LK"
sedutil -n --setupLockingRange 1 2048 16384 "$pw" "$dev"
sedutil -n --enableLockingRange 1 "$pw" "$dev"
sedutil -n --setLockingRange 1 LK "$pw" "$dev"
lr1 | tee lr1.txt
grep -q "RLocked = Y  WLocked = Y" lr1.txt || fail "sedutil does not list range 1 locked"
$ENCBLK sed info "$dev" >info.txt
grep -q "locked yes" info.txt || fail "encblk sed info does not see the range sedutil locked"
expect_data_protect 1
readable 12 || fail "LBA outside sedutil's range not readable"
sedutil -n --setLockingRange 1 RW "$pw" "$dev"
readable 1 || fail "sedutil --setLockingRange 1 RW did not unlock"

step "encblk sed setup with sedutil's admin password (hw-opal-only, range 1)"
$ENCBLK sed setup --yes-destroy-data --hw-opal-only --admin-key-file admin.key --key-file kek.key \
	--pbkdf pbkdf2 --pbkdf-force-iterations 1000 "$dev" | tee setup.txt
offset=$(sed -n 's/.* bytes at offset \([0-9]*\)), locked$/\1/p' setup.txt)
[ -n "$offset" ] || fail "no data offset in encblk sed setup's output"
mib=$((offset / 1048576))
ranges | tee ranges.txt
grep -q "^LR1 Begin $((offset / 512)) for " ranges.txt || fail "sedutil does not list range 1 at encblk's data offset"
lr1 >lr1.txt
grep -q "RLKEna = Y  WLKEna = Y  RLocked = Y  WLocked = Y" lr1.txt || fail "sedutil: encblk's range is not locked"
expect_data_protect "$mib"

step "encblk sed unlock: plaintext through /dev/sdX; sedutil sees it unlocked"
$ENCBLK sed unlock --key-file kek.key "$dev"
head -c 1048576 /dev/urandom >data.bin
dd if=data.bin of="$dev" bs=1M seek="$mib" oflag=direct status=none
cmp <(dd if="$dev" bs=1M skip="$mib" count=1 iflag=direct status=none) data.bin || fail "data read back differs"
lr1 | tee lr1.txt
grep -q "RLocked = N  WLocked = N" lr1.txt || fail "sedutil does not see the range encblk unlocked as unlocked"

step "encblk sed lock; sedutil --setLockingRange RW with the admin password reads encblk's data"
$ENCBLK sed lock --key-file kek.key "$dev"
expect_data_protect "$mib"
sedutil -n --setLockingRange 1 RW "$pw" "$dev"
cmp <(dd if="$dev" bs=1M skip="$mib" count=1 iflag=direct status=none) data.bin || fail "sedutil-unlocked data differs"
sedutil -n --setLockingRange 1 LK "$pw" "$dev"
expect_data_protect "$mib"

step "power cycle: the range comes back locked; encblk unlocks it"
sed_restart
dev=$SED_DEV
dmesg -c >/dev/null
expect_data_protect "$mib"
$ENCBLK sed unlock --key-file kek.key "$dev"
cmp <(dd if="$dev" bs=1M skip="$mib" count=1 iflag=direct status=none) data.bin || fail "data after power cycle differs"
$ENCBLK sed lock --key-file kek.key "$dev"
dmesg -c >/dev/null
