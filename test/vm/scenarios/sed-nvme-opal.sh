# order: 24
# sectors: 512
# timeout: 600
#
# sed-nvme-opal: a simulated Opal 2 drive as an NVMe namespace through the
# kernel's NVMe/TCP host (test/vm/sednvmet, ENCBLK_VM_SEDNVMET, on
# 127.0.0.1), so the kernel's own Opal client (block/sed-opal.c) drives
# it. cryptsetup 2.7.5 (Debian 13, ENCBLK_VM_DEBIAN13) makes a
# --hw-opal-only volume that encblk unlocks and locks; encblk makes one
# that cryptsetup opens. encblk's NVMe transport runs against the
# namespace.
. "$ENCBLK_VM_LIB"
. "$(dirname "$ENCBLK_VM_LIB")/sed.sh"

pw=encblk-opal-admin
printf '%s' "$pw" >admin.key
head -c 32 /dev/urandom | base64 | head -c 32 >kek.key
chmod 600 admin.key kek.key

nvme_start
dev=$NVME_DEV
cat /sys/block/$(basename "$dev")/device/model 2>/dev/null || true
step "encblk sed info through the NVMe transport"
$ENCBLK sed info "$dev" | tee info.txt
grep -q "Opal 2" info.txt || fail "encblk does not see Opal 2 on $dev"

step "cryptsetup 2.7.5 luksFormat --hw-opal-only (the kernel's Opal client)"
cryptsetup27 --version
printf '%s\n' "$pw" | cryptsetup27 luksFormat -q --type luks2 --hw-opal-only --key-file kek.key \
	--pbkdf pbkdf2 --pbkdf-force-iterations 1000 "$dev" --debug >format.log 2>&1 ||
	{ grep -i -B2 -A2 "opal\|error\|fail" format.log | tail -60; tail -30 "$work/sednvmet.log"; cp "$work/nvme.trace" /run/encblk-vm/ 2>/dev/null; fail "cryptsetup luksFormat --hw-opal-only failed"; }
cryptsetup27 luksDump "$dev" | tee dump.txt
$ENCBLK sed info "$dev" | tee info.txt
grep -q "enabled yes" info.txt || fail "encblk does not see locking enabled after cryptsetup"

off=16 # MiB: the data offset of both tools' hw-opal volumes here
readable() { dd if="$dev" of=/dev/null bs=64k count=1 skip=$((off * 16)) iflag=direct status=none 2>/dev/null; }
expect_locked() {
	dmesg -c >/dev/null
	if readable; then fail "a locked range was readable"; fi
	dmesg -c >/dev/null
}
head -c 1048576 /dev/urandom >data.bin

step "encblk sed unlock / lock the volume cryptsetup made; plaintext through $dev"
expect_locked
$ENCBLK sed unlock --key-file kek.key "$dev"
dd if=data.bin of="$dev" bs=1M seek=$off oflag=direct status=none
cmp <(dd if="$dev" bs=1M skip=$off count=1 iflag=direct status=none) data.bin || fail "data differs"
$ENCBLK sed lock --key-file kek.key "$dev"
expect_locked

step "cryptsetup 2.7.5 open (the kernel unlocks the range) reads what encblk wrote"
cryptsetup27 open --key-file kek.key "$dev" c27
at_exit "$ENCBLK_VM_DEBIAN13/bin/cryptsetup close c27"
cmp <(dd if=/dev/mapper/c27 bs=1M count=1 iflag=direct status=none) data.bin || fail "data through cryptsetup's mapping differs"
cryptsetup27 close c27
expect_locked

step "a fresh drive: encblk sed setup --hw-opal-only; cryptsetup 2.7.5 opens it"
nvme_stop
rm -f "$work/nvme.state" "$work/nvme.img"
nvme_start
dev=$NVME_DEV
$ENCBLK sed setup --yes-destroy-data --hw-opal-only --admin-key-file admin.key --key-file kek.key \
	--pbkdf pbkdf2 --pbkdf-force-iterations 1000 "$dev"
cryptsetup27 luksDump "$dev" | sed -n '/Data segments/,/Keyslots/p'
expect_locked
cryptsetup27 open --key-file kek.key "$dev" c27 --debug >open.log 2>&1 ||
	{ grep -v "^# \(Reusing\|LUKS2 req\|opal - known\)" open.log | tail -40; grep '^send' "$work/nvme.trace" | tail -4 | cut -c1-400; fail "cryptsetup open of encblk's volume failed"; }
dd if=data.bin of=/dev/mapper/c27 bs=1M oflag=direct status=none
cryptsetup27 close c27
expect_locked
$ENCBLK sed unlock --key-file kek.key "$dev"
cmp <(dd if="$dev" bs=1M skip=$off count=1 iflag=direct status=none) data.bin || fail "encblk does not read what cryptsetup wrote"
$ENCBLK sed lock --key-file kek.key "$dev"
expect_locked

step "hw-opal-crypt both ways: cryptsetup 2.7.5 luksFormat --hw-opal (drive + dm-crypt); encblk unlocks the range"
nvme_stop
rm -f "$work/nvme.state" "$work/nvme.img"
nvme_start
dev=$NVME_DEV
printf '%s\n' "$pw" | cryptsetup27 luksFormat -q --type luks2 --hw-opal --key-file kek.key \
	--pbkdf pbkdf2 --pbkdf-force-iterations 1000 "$dev"
cryptsetup27 luksDump "$dev" | sed -n '/Data segments/,/Keyslots/p'
cryptsetup27 open --key-file kek.key "$dev" c27
dd if=data.bin of=/dev/mapper/c27 bs=1M oflag=direct status=none
cryptsetup27 close c27
expect_locked
$ENCBLK sed unlock --key-file kek.key "$dev"
# The range is open: what it holds is dm-crypt's ciphertext, not the data.
dd if="$dev" of=raw.bin bs=1M skip=$off count=1 iflag=direct status=none
cmp -s raw.bin data.bin && fail "hw-opal-crypt range holds plaintext"
$ENCBLK sed lock --key-file kek.key "$dev"
expect_locked

step "encblk sed setup (hw-opal-crypt): cryptsetup 2.7.5 opens it, data round-trips"
nvme_stop
rm -f "$work/nvme.state" "$work/nvme.img"
nvme_start
dev=$NVME_DEV
$ENCBLK sed setup --yes-destroy-data --admin-key-file admin.key --key-file kek.key \
	--pbkdf pbkdf2 --pbkdf-force-iterations 1000 "$dev"
cryptsetup27 luksDump "$dev" | sed -n '/Data segments/,/Keyslots/p'
cryptsetup27 open --key-file kek.key "$dev" c27
dd if=data.bin of=/dev/mapper/c27 bs=1M oflag=direct status=none
cryptsetup27 close c27
expect_locked
cryptsetup27 open --key-file kek.key "$dev" c27
cmp <(dd if=/dev/mapper/c27 bs=1M count=1 iflag=direct status=none) data.bin || fail "data through cryptsetup differs after reopening"
cryptsetup27 close c27
$ENCBLK sed unlock --key-file kek.key "$dev"
dd if="$dev" of=raw.bin bs=1M skip=$off count=1 iflag=direct status=none
cmp -s raw.bin data.bin && fail "hw-opal-crypt range holds plaintext"
$ENCBLK sed lock --key-file kek.key "$dev"
dmesg -c >/dev/null
