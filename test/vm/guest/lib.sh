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

# serve_start BACKING SOCK starts the NBD server for BACKING on the unix
# socket SOCK in the background and waits for the socket; serve_pid is its
# process id.
serve_start() {
	rm -f "$2" # a killed server leaves its socket behind
	nbdkit -f --unix "$2" file "$1" &
	serve_pid=$!
	at_exit "kill $serve_pid"
	local i
	for i in $(seq 1 100); do
		[ -S "$2" ] && return 0
		kill -0 "$serve_pid" 2>/dev/null || fail "server exited before listening on $2"
		sleep 0.1
	done
	fail "server not listening on $2"
}

# serve_stop stops the server started by serve_start and waits for it.
serve_stop() {
	kill "$serve_pid"
	wait "$serve_pid" || true
}
