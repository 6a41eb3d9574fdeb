# order: 22
# sectors: 512
# timeout: 600
#
# sed-ata-hdparm: a simulated ATA Security drive (sedsim's ATA drive behind
# test/vm/sedtcmu, ENCBLK_VM_SEDTCMU) as /dev/sdX; hdparm 9.65 (Debian 12)
# and `encblk sed ata` drive it both ways through ATA PASS-THROUGH: hdparm -I
# shows the state encblk set; a password set by either is unlocked and
# disabled by the other; a locked drive's reads fail; a frozen drive refuses
# security commands with one line and exit status 1 from encblk.
. "$ENCBLK_VM_LIB"
. "$(dirname "$ENCBLK_VM_LIB")/sed.sh"

command -v hdparm >/dev/null || fail "no hdparm (Debian package hdparm, scripts/deps.sh)"
printf 'encblk-user-pw' >user.pw
printf 'hdparm-pw' >hdparm.pw
chmod 600 user.pw hdparm.pw

sed_start ata
dev=$SED_DEV
# hdparm_sec prints hdparm -I's Security section, one state per line.
hdparm_sec() {
	local o
	o=$(hdparm -I "$dev")
	awk '/^Security:/ { f = 1; next } f && /^[A-Z]/ { exit } f' <<<"$o" | sed 's/^[[:space:]]*//; s/[[:space:]][[:space:]]*/ /g'
}
# sec_is STATE...: every STATE ("not enabled", "locked", "frozen"...) is a line of hdparm -I.
sec_is() {
	local s got
	got=$(hdparm_sec)
	for s in "$@"; do
		grep -qx "$s" <<<"$got" || { printf '%s\n' "$got"; fail "hdparm -I: no \"$s\""; }
	done
}
readable() { dd if="$dev" of=/dev/null bs=4k count=1 iflag=direct status=none 2>/dev/null; }

step "fresh drive: hdparm -I and encblk sed ata status agree (supported, not enabled)"
hdparm_sec | tee sec.txt
sec_is supported "not enabled" "not locked" "not frozen"
$ENCBLK sed ata status "$dev" | tee status.txt
head -c 1048576 /dev/urandom >data.bin
dd if=data.bin of="$dev" bs=1M oflag=direct status=none

step "encblk sed ata set-password: hdparm -I shows enabled; after a power cycle locked, reads fail"
$ENCBLK sed ata set-password --password-file user.pw "$dev"
sec_is enabled "not locked"
sed_restart
dev=$SED_DEV
dmesg -c >/dev/null
sec_is enabled locked
if readable; then fail "a locked drive was readable"; fi
dmesg -c >/dev/null

step "hdparm --security-unlock with encblk's password; data intact"
hdparm --user-master u --security-unlock "$(cat user.pw)" "$dev"
sec_is enabled "not locked"
cmp <(dd if="$dev" bs=1M count=1 iflag=direct status=none) data.bin || fail "data differs after hdparm unlock"

step "hdparm --security-disable; encblk sees no password"
hdparm --user-master u --security-disable "$(cat user.pw)" "$dev"
sec_is "not enabled"
$ENCBLK sed ata status "$dev" | tee status.txt

step "hdparm --security-set-pass; power cycle; encblk sed ata unlock and disable"
hdparm --user-master u --security-set-pass "$(cat hdparm.pw)" "$dev"
sec_is enabled
sed_restart
dev=$SED_DEV
dmesg -c >/dev/null
sec_is locked
rc=0
$ENCBLK sed ata unlock --password-file user.pw "$dev" 2>err.txt || rc=$?
cat err.txt
echo "   wrong password: exit status $rc"
[ "$rc" -eq 2 ] || fail "unlock with a wrong password: exit status $rc, want 2 (wrong key)"
[ "$(wc -l <err.txt)" -eq 1 ] || fail "a wrong password gave more than one line"
$ENCBLK sed ata unlock --password-file hdparm.pw "$dev"
sec_is "not locked"
cmp <(dd if="$dev" bs=1M count=1 iflag=direct status=none) data.bin || fail "data differs after encblk unlock"
$ENCBLK sed ata disable --password-file hdparm.pw "$dev"
sec_is "not enabled"

step "hdparm --security-freeze: hdparm -I shows frozen, encblk is refused with one line"
hdparm --security-freeze "$dev"
sec_is frozen
rc=0
$ENCBLK sed ata set-password --password-file user.pw "$dev" 2>err.txt || rc=$?
cat err.txt
echo "   frozen: exit status $rc"
[ "$rc" -ne 0 ] || fail "set-password on a frozen drive succeeded"
[ "$(wc -l <err.txt)" -eq 1 ] || fail "the refusal is more than one line"
sec_is "not enabled" frozen
dmesg -c >/dev/null
