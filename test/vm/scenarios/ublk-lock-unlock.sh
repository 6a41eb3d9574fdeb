# order: 7
# sectors: 4096
# timeout: 360
#
# Scenario 7, ublk-lock-unlock: with ext4 mounted from /dev/ublkbN (`encblk
# serve --ublk`) and a write load running, `encblk lock` makes O_DIRECT
# reads and writes wait and stops the load; `encblk unlock` resumes them
# with no error in the kernel log, as over NBD. A server started locked
# brings its device up when unlocked (the kernel's partition scan waits for
# the key), and one stopped (SIGTERM) while still locked exits cleanly.
. "$ENCBLK_VM_LIB"

backing=$work/backing.img
key=$work/key
mnt=$work/mnt
mkdir -p "$mnt"
key_file "$key"

step "format, serve --ublk, mkfs.ext4, mount, write tree"
truncate -s 64M "$backing"
encblk_format "$backing" "$key"
ublk_serve_start "$backing" "$key"
mkfs.ext4 -q -F "$ublk_dev"
mount "$ublk_dev" "$mnt"
at_exit "umount $mnt"
make_tree "$mnt/tree" "$work/tree.sums"
head -c 65536 /dev/urandom >"$mnt/probe-read"
head -c 65536 /dev/urandom >"$mnt/probe-write"
sync
load_start "$mnt/load"
load_wait 2

lock_waits_unlock "$mnt" "$key"
load_stop
check_tree "$mnt/tree" "$work/tree.sums"
load_check "$mnt/load" "$(load_progress)"
umount "$mnt"
fsck_clean "$ublk_dev"
serve_stop
ublk_gone "$ublk_dev"

# locked_start starts `encblk serve --ublk --locked` and waits for its
# control socket; serve_pid is its process id.
locked_start() {
	local i
	rm -f "$control"
	: >"$work/serve.out"
	"$ENCBLK" serve --ublk --locked --control "$control" "$backing" >"$work/serve.out" 2>>"$work/serve.log" &
	serve_pid=$!
	at_exit "kill $serve_pid"
	for i in $(seq 1 300); do
		[ -S "$control" ] && return 0
		kill -0 "$serve_pid" 2>/dev/null || fail "encblk serve --ublk --locked exited early"
		sleep 0.1
	done
	fail "no control socket after 30 s"
}

step "serve --ublk --locked: the device comes up at unlock"
locked_start
"$ENCBLK" status --control "$control" | grep -q '^state: *locked' || fail "not locked"
"$ENCBLK" unlock --control "$control" --key-file "$key"
for i in $(seq 1 600); do grep -q ublkb "$work/serve.out" && break; sleep 0.1; done
dev=$(sed -n "s|^$backing: \(/dev/ublkb[0-9]*\)$|\1|p" "$work/serve.out")
[ -b "$dev" ] || fail "no device after unlock: $(cat "$work/serve.out")"
mount -o ro "$dev" "$mnt"
check_tree "$mnt/tree" "$work/tree.sums"
umount "$mnt"
serve_stop
ublk_gone "$dev"

step "serve --ublk --locked, SIGTERM while locked: exits 0, no device left"
locked_start
sleep 1
kill -TERM "$serve_pid"
for i in $(seq 1 600); do kill -0 "$serve_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$serve_pid" 2>/dev/null && fail "serve still running 60 s after SIGTERM"
wait "$serve_pid" || fail "serve exited with status $? after SIGTERM while locked"
[ -z "$(ls /sys/class/ublk-char 2>/dev/null)" ] || fail "a ublk device is left: $(ls /sys/class/ublk-char)"
# The partition scan's reads failed on purpose.
echo "   kernel logged $(dmesg -c | grep -c 'I/O error' || true) I/O error lines from the abandoned partition scan"
step "done"
