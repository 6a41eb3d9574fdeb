# Shared steps for test/vm scenarios (sourced; runs inside the guest, under
# bash -euo pipefail). Scenario scripts get SECTOR (512 or 4096), ENCBLK (the
# encblk binary, absent until built) and a private tmpfs at /tmp.

work=/tmp/encblk-vm
mkdir -p "$work"
cd "$work"
t0=$(date +%s.%N)
cleanups=()

# step prints a progress line with the time since the scenario began.
step() {
	printf '== [%6.1fs] %s\n' "$(awk -v s="$t0" -v e="$(date +%s.%N)" 'BEGIN { print e - s }')" "$*"
}

# fail stops the scenario with a message.
fail() {
	echo "FAIL: $*" >&2
	if [ -s "$work/serve.log" ]; then
		echo "-- last lines of encblk serve's log:" >&2
		tail -n 30 "$work/serve.log" >&2
	fi
	exit 1
}

# at_exit registers a command to run (last registered first) when the
# scenario ends, so a failure still unmounts and detaches before the runner
# reads dmesg.
at_exit() { cleanups=("$*" "${cleanups[@]}"); }
run_cleanups() {
	local c
	for c in "${cleanups[@]}"; do
		eval "$c" >/dev/null 2>&1 || true
	done
}
trap run_cleanups EXIT

# make_tree DIR SUMS writes a file tree whose sizes straddle 512- and
# 4096-byte sector edges, plus some larger random files, and records their
# SHA-256 in SUMS (keep it off the device under test).
make_tree() {
	local dir=$1 sums=$2 i s
	mkdir -p "$dir/a/b/c" "$dir/empty-dir" "$dir/many"
	: >"$dir/zero-length"
	for s in 1 511 512 513 4095 4096 4097 65537; do
		head -c "$s" /dev/urandom >"$dir/a/size-$s"
	done
	head -c $((1024 * 1024 + 7)) /dev/urandom >"$dir/a/b/one-mib-plus-7"
	head -c $((2 * 1024 * 1024)) /dev/urandom >"$dir/a/b/c/two-mib"
	awk 'BEGIN { for (i = 0; i < 25000; i++) print "encblk plaintext line", i }' >"$dir/a/text"
	for i in $(seq 1 200); do
		printf 'file %d\n' "$i" >"$dir/many/f$i"
	done
	ln -s a/text "$dir/symlink"
	tree_sums "$dir" >"$sums"
}

# tree_sums DIR prints the SHA-256 of every file, and every symlink's
# target, under DIR in a stable order (lost+found is the filesystem's own).
tree_sums() {
	(
		cd "$1"
		find . -path ./lost+found -prune -o -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
		find . -type l -printf '%p -> %l\n' | LC_ALL=C sort
		find . -path ./lost+found -prune -o -type d -print | LC_ALL=C sort
	)
}

# check_tree DIR SUMS fails unless DIR holds exactly the files in SUMS.
check_tree() {
	local got
	got=$(tree_sums "$1")
	if [ "$got" != "$(cat "$2")" ]; then
		diff <(printf '%s\n' "$got") "$2" | head -20 >&2
		fail "file tree under $1 differs from $2"
	fi
	echo "   $(grep -c '^[0-9a-f]\{64\} ' "$2") files match their SHA-256"
}

# nbd_wait DEV waits until the kernel reports a size for an attached nbd device.
nbd_wait() {
	local dev=${1#/dev/} i
	for i in $(seq 1 100); do
		if [ "$(cat "/sys/block/$dev/size" 2>/dev/null || echo 0)" -gt 0 ]; then
			return 0
		fi
		sleep 0.1
	done
	fail "/dev/$dev has no size after attach"
}

# nbd_detach DEV disconnects an nbd device and waits until it is free.
nbd_detach() {
	local dev=${1#/dev/} i
	nbd-client -d "/dev/$dev" >/dev/null
	for i in $(seq 1 100); do
		if [ "$(cat "/sys/block/$dev/size" 2>/dev/null || echo 0)" -eq 0 ]; then
			return 0
		fi
		sleep 0.1
	done
	fail "/dev/$dev still attached after nbd-client -d"
}

# check_sector_size DEV fails unless the device's logical block size is SECTOR.
check_sector_size() {
	local lbs
	lbs=$(blockdev --getss "$1")
	[ "$lbs" -eq "$SECTOR" ] || fail "$1 logical block size $lbs, want $SECTOR"
}

# fsck_clean DEV runs a forced, read-only fsck.ext4 and fails on any finding.
fsck_clean() {
	local out
	if ! out=$(fsck.ext4 -fn "$1" 2>&1); then
		printf '%s\n' "$out" >&2
		fail "fsck.ext4 -fn $1 is not clean"
	fi
	echo "   fsck.ext4 -fn $1: clean ($(printf '%s\n' "$out" | tail -1))"
}

# key_file PATH writes a random 64-byte key file.
key_file() {
	head -c 64 /dev/urandom >"$1"
	chmod 600 "$1"
}

# Fast key derivation: the point here is the data path, not the KDF, and
# argon2 under software emulation costs seconds per keyslot.
cryptsetup_fast=(--pbkdf pbkdf2 --pbkdf-force-iterations 1000)

# serve_start BACKING SOCK KEYFILE [FLAG...] starts `encblk serve` for
# BACKING on the unix socket SOCK, unlocked with KEYFILE (none: no KEK
# named, the volume's tokens are tried), with its control
# socket at $control, in the background; serve_pid is its process id. Its log
# goes to $work/serve.log (printed by fail).
control=$work/control.sock
serve_start() {
	local backing=$1 sock=$2 keyf=(--key-file "$3") i
	shift 3
	[ "${keyf[1]}" = none ] && keyf=()
	[ -x "$ENCBLK" ] || fail "no encblk binary at $ENCBLK"
	rm -f "$sock" "$control" # a killed server leaves its sockets behind
	"$ENCBLK" serve --listen "unix:$sock" --control "$control" "${keyf[@]}" "$@" "$backing" \
		>>"$work/serve.log" 2>&1 &
	serve_pid=$!
	at_exit "kill $serve_pid"
	for i in $(seq 1 300); do
		[ -S "$sock" ] && [ -S "$control" ] && return 0
		kill -0 "$serve_pid" 2>/dev/null || fail "encblk serve exited before listening on $sock"
		sleep 0.1
	done
	fail "encblk serve not listening on $sock after 30 s"
}

# serve_stop stops the server started by serve_start (SIGTERM) and fails
# unless it exits cleanly.
serve_stop() {
	kill "$serve_pid"
	wait "$serve_pid" || fail "encblk serve exited with status $? on SIGTERM"
}

# encblk_format FILE KEYFILE makes a LUKS2 volume of the scenario's sector
# size with encblk.
encblk_format() {
	"$ENCBLK" format --batch-mode --sector-size "$SECTOR" "${cryptsetup_fast[@]}" --key-file "$2" "$1"
}

# nbd_attach SOCK DEV [nbd-client flags] attaches DEV to the default export on
# SOCK with the scenario's block size and checks the device's sector size.
nbd_attach() {
	local sock=$1 dev=$2
	shift 2
	nbd-client -unix "$sock" "$dev" -block-size "$SECTOR" "$@" >/dev/null
	nbd_wait "$dev"
	check_sector_size "$dev"
}

# no_plaintext FILE fails if FILE holds a line of make_tree's text file.
no_plaintext() {
	if grep -q 'encblk plaintext line' "$1"; then
		fail "plaintext found in the encrypted backing $1"
	fi
}

# load_start DIR starts a write load in the background: files DIR/f0, f1, ...
# each a copy of one random 64 KiB chunk and each fsync'ed; after each fsync
# returns, the count of finished files goes to $work/progress. load_pid is
# its process id.
load_start() {
	head -c 65536 /dev/urandom >"$work/chunk"
	rm -f "$work/progress" "$work/stop"
	mkdir -p "$1"
	sync -f "$1"
	(
		i=0
		while [ ! -e "$work/stop" ]; do
			dd if="$work/chunk" of="$1/f$i" bs=65536 conv=fsync status=none || exit 1
			i=$((i + 1))
			echo "$i" >"$work/progress"
		done
	) &
	load_pid=$!
	at_exit "kill $load_pid"
}

# load_progress prints how many load files are written and fsync'ed.
load_progress() { cat "$work/progress" 2>/dev/null || echo 0; }

# load_wait N waits (up to 60 s) until more than N load files are fsync'ed.
load_wait() {
	local i
	for i in $(seq 1 600); do
		[ "$(load_progress)" -gt "$1" ] && return 0
		kill -0 "$load_pid" 2>/dev/null || fail "the write load died"
		sleep 0.1
	done
	fail "the write load made no progress past $1 files"
}

# load_stop ends the load and fails if it failed.
load_stop() {
	touch "$work/stop"
	wait "$load_pid" || fail "the write load failed"
}

# load_check DIR N fails unless DIR/f0 ... f(N-1) all hold the load's chunk.
load_check() {
	local i
	for i in $(seq 0 $(($2 - 1))); do
		cmp -s "$work/chunk" "$1/f$i" || fail "load file $1/f$i is missing or differs"
	done
	echo "   all $2 fsync'ed load files intact"
}

# volume_key BACKING KEYFILE prints BACKING's volume key as cryptsetup dumps
# it (hex, no blanks); --disable-locks: encblk may be serving BACKING.
volume_key() {
	cryptsetup luksDump --disable-locks --dump-volume-key --batch-mode --key-file "$2" "$1" 2>/dev/null |
		sed -n '/dump:/,$p' | tr -d ' \t\n'
}

# served_ext4 SIZE is the start of the reencryption scenarios: a SIZE
# backing formatted by encblk with the key file $key, served on $sock,
# attached as $dev (nbd-client -timeout 30), with a mounted ext4 at $mnt
# holding make_tree's tree at $mnt/durable (sums in $work/durable.sums).
served_ext4() {
	backing=$work/backing.img
	sock=$work/nbd.sock
	dev=/dev/nbd0
	mnt=$work/mnt
	key=$work/key
	mkdir -p "$mnt"
	key_file "$key"
	truncate -s "$1" "$backing"
	encblk_format "$backing" "$key"
	serve_start "$backing" "$sock" "$key"
	nbd_attach "$sock" "$dev" -timeout 30
	at_exit "nbd-client -d $dev"
	mkfs.ext4 -q -F "$dev"
	mount "$dev" "$mnt"
	at_exit "umount -l $mnt"
	make_tree "$mnt/durable" "$work/durable.sums"
	sync -f "$mnt"
}

# rekeyed_dmcrypt OLDKEY [MOUNT-OPTION...] checks the end of a reencryption
# of served_ext4's volume (its server stopped): no requirement left in the
# header, a volume key other than OLDKEY, and the kernel's dm-crypt opens
# it with $key; it is mounted at $mnt (unmounted and closed at exit) and
# the tree matches.
rekeyed_dmcrypt() {
	local old=$1 new loop
	shift
	cryptsetup luksDump "$backing" | grep -q Requirements && fail "reencryption requirement left in the header"
	new=$(volume_key "$backing" "$key")
	[ -n "$new" ] && [ "$new" != "$old" ] || fail "the volume key did not change"
	loop=$(losetup --find --show "$backing")
	at_exit "losetup -d $loop"
	cryptsetup open --key-file "$key" "$loop" reenc
	at_exit "cryptsetup close reenc"
	mount "$@" /dev/mapper/reenc "$mnt"
	check_tree "$mnt/durable" "$work/durable.sums"
}

# lock_waits_unlock MNT KEYFILE locks the volume served on $control while
# the load runs, and checks that an O_DIRECT write and read on MNT (MNT/
# probe-read must exist) and the load wait while it is locked (one fsync in
# flight when the lock came may finish, no more), then unlocks it with
# KEYFILE and checks that they all complete. before is the load's count at
# the lock.
lock_waits_unlock() {
	local mnt=$1 key=$2 probe_w probe_r
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
	echo "   probes completed; load at $(load_progress) files"
}

# ublk_serve_start BACKING KEYFILE [FLAG...] starts `encblk serve --ublk`
# for BACKING (no NBD unless a --listen flag is given) with its control
# socket at $control, in the background; serve_pid is its process id and
# ublk_dev the block device it printed ("BACKING: /dev/ublkbN").
ublk_serve_start() {
	local backing=$1 keyf=$2 i
	shift 2
	[ -x "$ENCBLK" ] || fail "no encblk binary at $ENCBLK"
	rm -f "$control"
	: >"$work/serve.out"
	"$ENCBLK" serve --ublk --control "$control" --key-file "$keyf" "$@" "$backing" \
		>"$work/serve.out" 2>>"$work/serve.log" &
	serve_pid=$!
	at_exit "kill $serve_pid"
	for i in $(seq 1 600); do
		ublk_dev=$(sed -n "s|^$backing: \(/dev/ublkb[0-9]*\)$|\1|p" "$work/serve.out")
		[ -n "$ublk_dev" ] && [ -b "$ublk_dev" ] && return 0
		kill -0 "$serve_pid" 2>/dev/null || fail "encblk serve --ublk exited before printing its device"
		sleep 0.1
	done
	fail "encblk serve --ublk printed no device after 60 s"
}

# ublk_gone DEV waits until the ublk device DEV and its char device are gone.
ublk_gone() {
	local n=${1#/dev/ublkb} i
	for i in $(seq 1 100); do
		[ ! -e "/sys/block/ublkb$n" ] && [ ! -e "/sys/class/ublk-char/ublkc$n" ] && return 0
		sleep 0.1
	done
	fail "$1 still exists after its server stopped"
}
