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

step "encblk lock: I/O waits"
"$ENCBLK" lock --control "$control"
"$ENCBLK" status --control "$control" | grep -E '^(state|ublk):' | sed 's/^/   status: /'
dd if=/dev/urandom of="$mnt/probe-write" bs=4096 count=1 oflag=direct conv=notrunc status=none &
probe_w=$!
dd if="$mnt/probe-read" of=/dev/null bs=65536 iflag=direct status=none &
probe_r=$!
before=$(load_progress)
sleep 5
kill -0 "$probe_w" 2>/dev/null || fail "an O_DIRECT write completed while the volume was locked"
kill -0 "$probe_r" 2>/dev/null || fail "an O_DIRECT read completed while the volume was locked"
[ "$(load_progress)" -le $((before + 1)) ] || fail "the load went on while locked ($before -> $(load_progress) files)"
echo "   after 5 s locked: probe write and read still waiting, load at $(load_progress) files (was $before)"

step "encblk unlock: I/O resumes"
"$ENCBLK" unlock --control "$control" --key-file "$key"
wait "$probe_w" || fail "the O_DIRECT write failed after unlock"
wait "$probe_r" || fail "the O_DIRECT read failed after unlock"
load_wait $((before + 2))
load_stop
echo "   probes completed; load at $(load_progress) files"
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
