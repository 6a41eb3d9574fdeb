# order: 20
# sectors: 512
# timeout: 420
#
# sed-opal-scsi: a simulated Opal 2 drive (pkg/sed/sedsim) becomes a SATA
# disk behind SAT through the kernel's target_core_user + tcm_loop (the
# test-only handler test/vm/sedtcmu, ENCBLK_VM_SEDTCMU), so encblk reaches
# it through SG_IO and ATA PASS-THROUGH exactly as a real drive. Judges
# that we did not write check it: Debian 13's sedutil-cli
# (ENCBLK_VM_DEBIAN13, scripts/debian13.sh) agrees with `encblk sed
# scan/info`; a range encblk set up is listed and unlocked by sedutil; the
# kernel reads plaintext when it is unlocked and gets DATA PROTECT when
# it is locked.
. "$ENCBLK_VM_LIB"
. "$(dirname "$ENCBLK_VM_LIB")/sed.sh"

sed_start opal
dev=$SED_DEV

step "encblk sed scan / info agree with sedutil-cli --scan / --query / --isValidSED"
$ENCBLK sed scan | tee scan.txt
grep -q "^$(basename "$dev") .*Opal 2" scan.txt || grep -q "$(basename "$dev").*Opal" scan.txt || fail "encblk sed scan does not report Opal on $dev"
$ENCBLK sed info "$dev" | tee info.txt
sedutil --scan | tee sedscan.txt
grep -Eq "^$dev +2 " sedscan.txt || fail "sedutil-cli --scan does not list $dev as Opal 2"
sedutil --isValidSED "$dev" | tee valid.txt
grep -q "SED" valid.txt || fail "sedutil-cli --isValidSED does not call $dev a SED"
sedutil --query "$dev" | tee query.txt
grep -q "Locking function (0x0002)" query.txt || fail "sedutil-cli --query shows no Locking feature"
grep -Eq "LockingEnabled = N" query.txt || fail "sedutil-cli --query: locking enabled on a fresh drive"
