# bench/lib.sh — sourced by the bench scripts (not run): what they all do
# alike. It sets $me (the script's name, for messages) and $top (the
# repository root) and defines the functions below.

me=$(basename "$0")
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# die MESSAGE...: prints "script: MESSAGE" on stderr and exits 1.
die() {
	echo "$me: $*" >&2
	exit 1
}

# need_value "$@": in an argument loop, at a flag that takes a value, dies
# unless a value follows it ("script: --size needs a value"), instead of
# bash's "unbound variable" at $2.
need_value() {
	[ $# -ge 2 ] || die "$1 needs a value"
}

# usage: prints the script's leading comment block (its help).
usage() {
	awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"
}

# need_tools TOOL...: dies unless every TOOL is on PATH.
need_tools() {
	local t
	for t in "$@"; do
		command -v "$t" >/dev/null || die "$t not found (run scripts/deps.sh)"
	done
}

# need_fio_nbd: dies unless fio is there with its nbd engine.
need_fio_nbd() {
	need_tools fio
	fio --enghelp 2>/dev/null | grep -qw nbd || die "this fio has no nbd engine"
}

# need_positive FLAG VALUE: dies unless VALUE is a whole number above 0.
need_positive() {
	case $2 in '' | *[!0-9]* | 0) die "$1 wants a positive whole number, not '$2'" ;; esac
}

# cached_build NAME PACKAGE: builds the Go PACKAGE (static, no cgo) as NAME
# in a cache outside the run's temporary directory and prints its path. go
# build skips relinking an up-to-date binary, which saves ~10 s on a loaded
# machine.
cached_build() {
	local dir=${XDG_CACHE_HOME:-$HOME/.cache}/encblk-bench
	mkdir -p "$dir"
	echo "$me: building $2" >&2
	(cd "$top" && CGO_ENABLED=0 go build -o "$dir/$1" "$2") || die "building $2 failed"
	echo "$dir/$1"
}

# build_encblk: sets $encblk to a fresh build of ./cmd/encblk unless it is
# set already (the scripts' --encblk BINARY).
build_encblk() {
	if [ -z "${encblk:-}" ]; then
		encblk=$(cached_build encblk ./cmd/encblk)
	fi
}

# wait_socket SOCKET PID LOG: waits up to 10 s for the server PID to create
# the unix socket SOCKET. If the server exits first, or never creates it,
# prints the server's LOG and dies.
wait_socket() {
	local _
	for _ in $(seq 200); do
		[ -S "$1" ] && return 0
		if ! kill -0 "$2" 2>/dev/null; then
			cat "$3" >&2
			die "the server exited before listening on $1 (its log is above)"
		fi
		sleep 0.05
	done
	cat "$3" >&2
	die "the server did not create $1 within 10 s (its log is above)"
}

# stop_pid PID: asks the process to stop (SIGTERM), gives it 5 s, then
# kills it; reaps it either way. PID must be a child of this shell.
stop_pid() {
	local _
	kill "$1" 2>/dev/null || true
	for _ in $(seq 50); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# fresh_cache FILE: write FILE's dirty pages back, drop its pages from the
# page cache and read it in again, so that every server a script compares
# starts from the same page cache. The kernel's cost per small write
# depends on the folios a file is cached in (this 6.18 kernel caches files
# in large folios, and a 4 KiB write walks all the buffer heads of the one
# it lands in); without the drop, a server inherits the folios the
# previous one left, and the cost per 4 KiB write differs by 2x. Reading
# it back in means no server pays for the disk.
fresh_cache() {
	sync "$1"
	dd if="$1" iflag=nocache count=0 status=none
	cat "$1" >/dev/null
}
