# order: 30
# sectors: 4096
# timeout: 300
# tpm: yes
#
# tpm2-interop: TPM2 keyslots both ways with systemd 252, on a real
# /dev/tpmrm0 (qemu's tpm-tis in front of a host-side swtpm, run.sh's
# "# tpm: yes").
#  A. encblk formats a volume (files written through dm-crypt with the key
#     file) and seals a keyslot to PCR 7 (keyslot add --tpm2-device auto);
#     systemd-cryptsetup attach ... tpm2-device=auto opens it in dm-crypt
#     through encblk's systemd-tpm2 token alone: the files match. The same
#     with a PIN (--tpm2-with-pin): systemd-cryptsetup needs $PIN for it.
#  B. encblk's keyslot removed, systemd-cryptenroll --tpm2-pcrs=7 enrolls
#     one; encblk serve with no KEK named unlocks through systemd's token,
#     the files match over NBD.
#  C. PCR 7 extended: encblk skips the keyslot with the reason and exits 2
#     (no other KEK named); systemd-cryptsetup refuses too.
. "$ENCBLK_VM_LIB"

[ -c /dev/tpmrm0 ] || fail "no /dev/tpmrm0 (qemu tpm-tis with swtpm)"
export TPM2TOOLS_TCTI=device:/dev/tpmrm0
echo "   TPM: $(cat /sys/class/tpm/tpm0/tpm_version_major 2>/dev/null || echo ?).x, $(tpm2_getcap properties-fixed 2>/dev/null | grep -A2 TPM2_PT_MANUFACTURER | sed -n 's/.*value: *//p' | head -1)"
cryptsetup_bin=/lib/systemd/systemd-cryptsetup
[ -x "$cryptsetup_bin" ] || fail "no $cryptsetup_bin (Debian package systemd)"

key=$work/key
sock=$work/nbd.sock
dev=/dev/nbd0
mnt=$work/mnt
mkdir -p "$mnt"
key_file "$key"
img=$work/vol.img
truncate -s 64M "$img"
at_exit "umount $mnt"
at_exit "nbd-client -d $dev"

step "A: encblk format; ext4 and a file tree through dm-crypt (key file)"
encblk_format "$img" "$key"
loop=$(losetup --find --show "$img")
at_exit "losetup -d $loop"
cryptsetup open --key-file "$key" "$loop" keyed
mkfs.ext4 -q -F /dev/mapper/keyed
mount /dev/mapper/keyed "$mnt"
make_tree "$mnt/t" "$work/t.sums"
umount "$mnt"
cryptsetup close keyed

step "A: encblk keyslot add --tpm2-device auto --tpm2-pcrs 7"
"$ENCBLK" keyslot add --key-file "$key" --tpm2-device auto --tpm2-pcrs 7 "$img"
"$ENCBLK" keyslot list "$img" | sed 's/^/   /'
"$ENCBLK" keyslot list "$img" | grep -q '^1 .*systemd-tpm2: PCRs \[7\] (sha256)' || fail "no TPM2 keyslot 1 bound to PCR 7"

step "A: systemd-cryptsetup attach ... tpm2-device=auto (no key file): the files match"
losetup -c "$loop"
at_exit "$cryptsetup_bin detach tpm"
"$cryptsetup_bin" attach tpm "$loop" - tpm2-device=auto,headless=true
mount /dev/mapper/tpm "$mnt"
check_tree "$mnt/t" "$work/t.sums"
umount "$mnt"
"$cryptsetup_bin" detach tpm

step "A: with a PIN instead: systemd-cryptsetup opens it given \$PIN, not without"
"$ENCBLK" keyslot remove --batch-mode "$img" 1
printf '2468\n' >"$work/pin"
"$ENCBLK" keyslot add --key-file "$key" --tpm2-device auto --tpm2-pcrs 7 --tpm2-with-pin --new-tpm2-pin-file "$work/pin" "$img"
"$ENCBLK" keyslot list "$img" | grep -q '^1 .*systemd-tpm2: PCRs \[7\] (sha256) + PIN' || fail "no TPM2+PIN keyslot 1"
rc=0
"$cryptsetup_bin" attach tpm "$loop" - tpm2-device=auto,headless=true >"$work/err" 2>&1 || rc=$?
[ "$rc" -ne 0 ] && [ ! -e /dev/mapper/tpm ] || fail "systemd-cryptsetup attached a PIN keyslot with no PIN"
echo "   no PIN (exit $rc): $(tail -1 "$work/err")"
PIN=2468 "$cryptsetup_bin" attach tpm "$loop" - tpm2-device=auto,headless=true
mount /dev/mapper/tpm "$mnt"
check_tree "$mnt/t" "$work/t.sums"
umount "$mnt"
"$cryptsetup_bin" detach tpm

step "B: encblk keyslot remove 1; systemd-cryptenroll --tpm2-device=auto --tpm2-pcrs=7"
"$ENCBLK" keyslot remove --batch-mode "$img" 1
systemd-cryptenroll --unlock-key-file="$key" --tpm2-device=auto --tpm2-pcrs=7 "$img" 2>&1 | sed 's/^/   /'
"$ENCBLK" keyslot list "$img" | grep -q 'systemd-tpm2: PCRs \[7\] (sha256)' || fail "systemd-cryptenroll made no TPM2 keyslot"

step "B: encblk serve, no KEK named: unlocked through systemd's token; the files match over NBD"
serve_start "$img" "$sock" none
"$ENCBLK" status --control "$control" | grep -q '^state: *unlocked' || fail "serve did not unlock through the TPM2 token"
grep -q "unlocked through the volume's tokens" "$work/serve.log" || fail "serve's log does not say the tokens unlocked it"
nbd_attach "$sock" "$dev"
mount "$dev" "$mnt"
check_tree "$mnt/t" "$work/t.sums"
umount "$mnt"
nbd_detach "$dev"
serve_stop

step "C: tpm2_pcrextend 7: encblk skips the keyslot with the reason, exit 2"
tpm2_pcrextend 7:sha256=0000000000000000000000000000000000000000000000000000000000000001
rc=0
"$ENCBLK" dump --dump-volume-key --batch-mode "$img" >/dev/null 2>"$work/err" || rc=$?
sed 's/^/   encblk: /' "$work/err"
[ "$rc" -eq 2 ] || fail "encblk dump exited $rc after PCR 7 changed, want 2"
grep -q "keyslot [0-9]* (token [0-9]*): tpm2: the PCRs do not match the keyslot's policy" "$work/err" || fail "no reason naming the keyslot"
rc=0
timeout 120 "$cryptsetup_bin" attach tpm "$loop" - tpm2-device=auto,headless=true >"$work/err" 2>&1 || rc=$?
[ "$rc" -ne 0 ] && [ ! -e /dev/mapper/tpm ] || fail "systemd-cryptsetup attached after PCR 7 changed"
echo "   systemd-cryptsetup refuses too (exit $rc): $(tail -1 "$work/err")"
step "done"
