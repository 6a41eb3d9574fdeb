# order: 25
# sectors: 512
# timeout: 420
#
# sed-nvme-ioctl: the kernel's own Opal client, driven directly through
# the IOC_OPAL_* ioctls (guest/opalctl.c, compiled here against
# <linux/sed-opal.h>), on a simulated Opal 2 drive seen as an NVMe
# namespace (test/vm/sednvmet, ENCBLK_VM_SEDNVMET): it takes ownership,
# activates the Locking SP, sets up and locks a range, and encblk sees the
# same state through its own NVMe transport; encblk adopts the drive with
# the kernel's admin password, the kernel locks the range encblk set up
# and encblk unlocks it; the kernel's RevertTPer returns it to the
# factory state encblk then reports.
. "$ENCBLK_VM_LIB"
. "$(dirname "$ENCBLK_VM_LIB")/sed.sh"

pw=kernel-opal-admin
printf '%s' "$pw" >admin.key
head -c 32 /dev/urandom >kek.key
chmod 600 admin.key kek.key
gcc -Wall -o opalctl "$(dirname "$ENCBLK_VM_LIB")/opalctl.c"

nvme_start
dev=$NVME_DEV
info() { $ENCBLK sed info "$dev" >info.txt; grep Locking info.txt; }
readable() { dd if="$dev" of=/dev/null bs=64k count=1 skip=$((16 * 16)) iflag=direct status=none 2>/dev/null; }

step "kernel: IOC_OPAL_TAKE_OWNERSHIP, ACTIVATE_LSP, LR_SETUP range 1 (16 MiB..24 MiB), LOCK_UNLOCK LK"
./opalctl "$dev" status
./opalctl "$dev" take-ownership "$pw"
./opalctl "$dev" activate "$pw"
./opalctl "$dev" setup-range "$pw" 1 32768 16384
./opalctl "$dev" lock "$pw" 1
./opalctl "$dev" status | tee st.txt
grep -q "locked 1" st.txt || fail "the kernel does not report the range locked"
info
grep -q "enabled yes, locked yes" info.txt || fail "encblk does not see what the kernel set up"
dmesg -c >/dev/null
if readable; then fail "range locked by the kernel was readable"; fi
dmesg -c >/dev/null

step "kernel: LOCK_UNLOCK RW; encblk sees it unlocked"
./opalctl "$dev" unlock "$pw" 1
info
grep -q "enabled yes, locked no" info.txt || fail "encblk does not see the range unlocked"
readable || fail "range unlocked by the kernel not readable"

step "encblk sed setup with the kernel's admin password; the kernel locks, encblk unlocks"
$ENCBLK sed setup --yes-destroy-data --hw-opal-only --range 1 --admin-key-file admin.key --key-file kek.key \
	--pbkdf pbkdf2 --pbkdf-force-iterations 1000 "$dev"
$ENCBLK sed unlock --key-file kek.key "$dev"
./opalctl "$dev" lock "$pw" 1
info
grep -q "locked yes" info.txt || fail "encblk does not see the kernel's lock"
$ENCBLK sed unlock --key-file kek.key "$dev"
./opalctl "$dev" status | tee st.txt
grep -q "locked 0" st.txt || fail "the kernel does not see encblk's unlock"
readable || fail "range encblk unlocked not readable"

step "kernel: IOC_OPAL_REVERT_TPR; encblk sees a factory-fresh drive"
./opalctl "$dev" revert "$pw"
info
grep -q "enabled no" info.txt || fail "encblk still sees locking enabled after the kernel's revert"
dmesg -c >/dev/null
