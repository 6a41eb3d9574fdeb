# order: 23
# sectors: 512
# timeout: 600
#
# sed-faults: bad input on the real kernel path. test/vm/sedtcmu
# (ENCBLK_VM_SEDTCMU) is told to answer security commands with garbage
# (all of them, or all but Level 0 Discovery),
# with ABORTED COMMAND, or not at all (the kernel's TCMU times the command
# out); encblk sed info / setup / unlock each print one line, exit with a
# documented status, never hang, and leave the drive as it was.
. "$ENCBLK_VM_LIB"
. "$(dirname "$ENCBLK_VM_LIB")/sed.sh"

printf 'admin-pw' >admin.key
head -c 32 /dev/urandom >kek.key
chmod 600 admin.key kek.key

sed_start opal -cmd-timeout 8 -hang 20s
dev=$SED_DEV

# one_line EXPECT_RC CMD...: runs CMD under a 120 s limit; it must fail with
# one line on stderr (and exit status EXPECT_RC, "any" for nonzero).
one_line() {
	local want=$1 rc=0 t0 t1
	shift
	t0=$(date +%s)
	timeout -k 5 120 "$@" >out.txt 2>err.txt || rc=$?
	t1=$(date +%s)
	cat err.txt
	echo "   exit status $rc after $((t1 - t0))s: $*"
	[ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || fail "$* hung"
	[ "$rc" -ne 0 ] || fail "$* succeeded"
	[ "$want" = any ] || [ "$rc" -eq "$want" ] || fail "$*: exit status $rc, want $want"
	[ "$(wc -l <err.txt)" -eq 1 ] || fail "$*: $(wc -l <err.txt) lines on stderr, want one"
}
setup=(sed setup --yes-destroy-data --admin-key-file admin.key --key-file kek.key
	--pbkdf pbkdf2 --pbkdf-force-iterations 1000)
# untouched: with the fault gone (a hung command drains first), the drive
# is still factory-fresh.
untouched() {
	local i
	echo -n >"$work/sed.fault"
	for i in $(seq 1 12); do
		$ENCBLK sed info "$dev" >info.txt 2>/dev/null && break
		sleep 5
	done
	grep -q "enabled no" info.txt || { cat info.txt; fail "the drive changed under a failed command"; }
}

for f in garbage sense; do
	step "fault $f: discovery and a session fail with one line"
	echo "$f" >"$work/sed.fault"
	one_line any $ENCBLK sed info "$dev"
	one_line any $ENCBLK "${setup[@]}" "$dev"
	untouched
	$ENCBLK sed scan >scan.txt || fail "encblk sed scan failed with a faulty drive"
done

step "fault session-garbage: discovery is fine, the session's answers are garbage"
echo session-garbage >"$work/sed.fault"
$ENCBLK sed info "$dev" >/dev/null || fail "discovery failed under session-garbage"
one_line 4 $ENCBLK "${setup[@]}" "$dev"
untouched

step "fault hang: the kernel times the command out; encblk ends with one line"
echo hang >"$work/sed.fault"
one_line 5 $ENCBLK sed info "$dev"
one_line 5 $ENCBLK "${setup[@]}" "$dev"
untouched
dmesg -c >/dev/null
