# order: 8
# sectors: 4096
# timeout: 420
#
# Scenario 8, ublk-recovery: hostile environments first: io_uring disabled
# by sysctl, a user without CAP_SYS_ADMIN, a recovery id that does not
# exist and one that belongs to another volume each fail at once with one
# line naming the cause. Then `encblk serve --ublk` is SIGKILLed during a
# load of fsync'ed files on a mounted ext4; the kernel keeps /dev/ublkbN and
# queues its I/O; a restarted server recovers the same device
# (UBLK_F_USER_RECOVERY), the load goes on on the same mount, every file
# fsync'ed before the kill is intact and fsck.ext4 -fn is clean, with no
# I/O error or warning in the kernel log. `encblk status` shows the
# killed server's device as orphaned (text and JSON) with what to do;
# `encblk ublk delete` refuses a served device and removes an orphan.
. "$ENCBLK_VM_LIB"

# ublk_orphan_status BACKING DEV RECOVERABLE: encblk status shows DEV as
# BACKING's orphaned ublk device, in text and in JSON.
ublk_orphan_status() {
	local out
	out=$("$ENCBLK" status "$1") || fail "status of $1 failed: $out"
	printf '%s\n' "$out" | grep -E "^ublk: +$2 orphaned \(.*\): .*encblk ublk delete ${2#/dev/ublkb}" ||
		fail "status shows no orphaned $2: $out"
	out=$("$ENCBLK" status --json "$1") || fail "status --json of $1 failed: $out"
	printf '%s\n' "$out" | python3 -c '
import json, sys
v = json.load(sys.stdin)["volumes"][0]
o = v.get("ublk_orphans") or []
assert len(o) == 1 and o[0]["device"] == sys.argv[1] and o[0]["recoverable"] == (sys.argv[2] == "true"), o
print("   json:", o[0])' "$2" "$3" || fail "status --json: no orphan $2: $out"
}

backing=$work/backing.img
other=$work/other.img
mnt=$work/mnt
mkdir -p "$mnt"
key=$work/key
key_file "$key"
truncate -s 64M "$backing" "$other"
encblk_format "$backing" "$key"
encblk_format "$other" "$key"

# refused CMD... MESSAGE: serve fails with status 1 and one line matching
# MESSAGE (an extended regular expression) on stderr, leaving no new device.
refused() {
	local msg=${*: -1} rc=0 out devs
	devs=$(ls /sys/class/ublk-char 2>/dev/null || true)
	out=$("${@:1:$#-1}" 2>&1 >/dev/null) || rc=$?
	[ "$rc" -eq 1 ] || fail "$* exited $rc, want 1: $out"
	[ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] || fail "$*: want one line, got: $out"
	printf '%s\n' "$out" | grep -Eq "$msg" || fail "$*: '$out' does not match '$msg'"
	echo "   refused: $out"
	[ "$(ls /sys/class/ublk-char 2>/dev/null || true)" = "$devs" ] || fail "a refused server left a ublk device"
}

step "hostile environments: one line, status 1, no device"
sysctl -qw kernel.io_uring_disabled=2
refused "$ENCBLK" serve --ublk --control "$control" --key-file "$key" "$backing" \
	'io_uring is not available.*kernel.io_uring_disabled=2'
sysctl -qw kernel.io_uring_disabled=0
chmod 666 "$other"
mkdir "$work/nobody"
chown 65534:65534 "$work/nobody"
refused setpriv --reuid=65534 --regid=65534 --clear-groups env ENCBLK_RUNTIME_DIR="$work/nobody/run" \
	"$ENCBLK" serve --ublk --locked "$other" 'ublk needs root'
refused "$ENCBLK" serve --ublk --ublk-recover 7 --control "$control" --key-file "$key" "$backing" \
	'no such ublk device'
# The tags' buffers (plaintext) are mlocked: without CAP_IPC_LOCK, a low
# RLIMIT_MEMLOCK refuses them, naming the limit.
refused prlimit --memlock=8388608:8388608 setpriv --inh-caps=-ipc_lock --bounding-set=-ipc_lock \
	"$ENCBLK" serve --ublk --control "$control" --key-file "$key" "$backing" \
	'cannot lock the request buffers in RAM.*RLIMIT_MEMLOCK 8192 KiB.*MiB locked in all'

step "serve --ublk, mkfs.ext4, mount, durable tree, fsync'ing load"
ublk_serve_start "$backing" "$key"
first=$ublk_dev
n=${first#/dev/ublkb}
mkfs.ext4 -q -F "$ublk_dev"
mount "$ublk_dev" "$mnt"
at_exit "umount -l $mnt"
make_tree "$mnt/durable" "$work/durable.sums"
sync -f "$mnt"
load_start "$mnt/load"
load_wait 3

step "SIGKILL the server mid-load; the device stays"
kill -KILL "$serve_pid"
wait "$serve_pid" 2>/dev/null || true
synced=$(load_progress)
echo "   killed with $synced load files fsync'ed"
[ -b "$first" ] || fail "$first vanished with its server"
refused "$ENCBLK" serve --ublk --ublk-recover "$n" --control "$control" --key-file "$key" "$other" \
	'belongs to another volume'
ublk_orphan_status "$backing" "$first" true

step "restart: the server recovers $first; the load goes on on the same mount"
ublk_serve_start "$backing" "$key"
[ "$ublk_dev" = "$first" ] || fail "restarted server made $ublk_dev, not $first"
grep -q 'ublk device recovered' "$work/serve.log" || fail "the server did not log a recovery"
load_wait $((synced + 3))
load_stop
echo "   load at $(load_progress) files after recovery (was $synced at the kill)"
check_tree "$mnt/durable" "$work/durable.sums"
load_check "$mnt/load" "$(load_progress)"
umount "$mnt"
fsck_clean "$first"

out=$("$ENCBLK" status "$backing")
if printf '%s\n' "$out" | grep -q orphaned; then fail "a served device shows as orphaned: $out"; fi
rc=0
out=$("$ENCBLK" ublk delete "$n" 2>&1) || rc=$?
[ "$rc" -eq 3 ] && printf '%s\n' "$out" | grep -q 'served by another process' ||
	fail "ublk delete of a served device: status $rc, $out"
echo "   refused while served: $out"

step "SIGTERM removes the device"
serve_stop
ublk_gone "$first"

step "an orphan nobody recovers: encblk ublk delete removes it"
ublk_serve_start "$backing" "$key"
kill -KILL "$serve_pid"
wait "$serve_pid" 2>/dev/null || true
ublk_orphan_status "$backing" "$ublk_dev" true
"$ENCBLK" ublk delete "${ublk_dev#/dev/ublkb}" | grep -qx "deleted $ublk_dev" || fail "ublk delete printed nothing"
ublk_gone "$ublk_dev"
out=$("$ENCBLK" status "$backing")
if printf '%s\n' "$out" | grep -q ublk; then fail "status still shows a ublk device: $out"; fi
step "done"
