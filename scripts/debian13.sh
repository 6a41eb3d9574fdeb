#!/usr/bin/env bash
# scripts/debian13.sh — Debian 13 (trixie) tools on a Debian 12 machine.
#
# Installs Debian 13's packages as an unpacked root, from Debian's own
# packages, with a private apt configuration that leaves the system's apt
# untouched (the recipe of shared/design/JUDGES.md). Nothing is built from
# source. The root runs with its own loader and libraries; the wrappers it
# writes do that. Two sets:
#
#   judges (default): sedutil and cryptsetup-bin (2.7.5, with HW_OPAL)
#     $ROOT/bin/sedutil-cli ARGS...     Debian 13's sedutil-cli
#     $ROOT/bin/cryptsetup ARGS...      Debian 13's cryptsetup 2.7.5
#   qemu: qemu-system-x86 (10.0), for benchmarks in the test/vm guest
#     $ROOT/bin/qemu-system-x86_64 ARGS...
#     Its TCG runs the guest's AES-NI instructions with the host's AES-NI
#     (qemu 8.1 and later), about twice qemu 7.2's guest AES-XTS speed:
#     closer to the share of a request that encryption takes on hardware.
#
# Each root is cached in ~/.cache/encblk/debian13 (or $ENCBLK_DEBIAN13_CACHE)
# under its set's name and a hash of this script; a fresh machine (CI) makes
# it again from Debian's mirror. Prints the root's path on stdout. Needs the
# trixie archive keyring (Debian 12's debian-archive-keyring ships it).
#
# Usage: scripts/debian13.sh [--print-root] [judges|qemu]
#   --print-root  print where the root would be, without installing
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${ENCBLK_DEBIAN13_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/encblk/debian13}
key=$(sha256sum "$here/debian13.sh" | cut -c1-12)
print=
if [ "${1:-}" = --print-root ]; then
	print=1
	shift
fi
set_=${1:-judges}
# Each set: its packages, the binaries wrapped (name:path), the root's
# name prefix, what its wrappers add (wrap_env: a line of shell before the
# exec; wrap_args: arguments before the caller's; $r is the root), and a
# smoke test of the finished root ($1).
wrap_env= wrap_args=
case $set_ in
judges)
	debs=(sedutil cryptsetup-bin)
	bins=(sedutil-cli:usr/sbin/sedutil-cli cryptsetup:usr/sbin/cryptsetup)
	prefix=root
	smoke() {
		"$1/bin/cryptsetup" --version >&2 || die "Debian 13's cryptsetup does not run"
		# sedutil-cli has no --version; its help (exit status 136) names it.
		local help
		help=$("$1/bin/sedutil-cli" -h 2>&1 || true)
		[[ $help == *'sedutil-cli <-v> <-n> <action>'* ]] ||
			die "Debian 13's sedutil-cli does not run"
	}
	;;
qemu)
	debs=(qemu-system-x86)
	bins=(qemu-system-x86_64:usr/bin/qemu-system-x86_64)
	prefix=qemu
	# Firmware and modules from the root, never the host qemu 7.2's: qemu
	# aborts on a module of another build, and looks for one when it
	# probes audio drivers (none is in the root): -audio none.
	wrap_env='export QEMU_MODULE_DIR="$r/usr/lib/x86_64-linux-gnu/qemu"'
	wrap_args='-L "$r/usr/share/qemu" -L "$r/usr/share/seabios" -audio none '
	smoke() {
		"$1/bin/qemu-system-x86_64" --version >&2 || die "Debian 13's qemu-system-x86_64 does not run"
	}
	;;
*)
	echo "usage: $0 [--print-root] [judges|qemu]" >&2
	exit 2
	;;
esac
root=$cache/$prefix-$key

if [ -n "$print" ]; then
	printf '%s\n' "$root"
	exit 0
fi
ready=1
for pair in "${bins[@]}"; do
	[ -x "$root/bin/${pair%%:*}" ] || ready=
done
if [ -n "$ready" ]; then
	printf '%s\n' "$root"
	exit 0
fi

log() { printf 'debian13.sh: %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -s "$keyring" ] || die "no $keyring (Debian package debian-archive-keyring)"
# The mirror the system uses (deb822 or one-line sources), deb.debian.org otherwise.
mirror=$(sed -n 's/^URIs: *\(http[^ ]*\/debian\)\/* *$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
if [ -z "$mirror" ]; then
	mirror=$(sed -n 's/^deb  *\(\[[^]]*\] *\)\{0,1\}\(http[^ ]*\/debian\)\/* .*/\2/p' /etc/apt/sources.list 2>/dev/null | head -1)
fi
mirror=${mirror:-http://deb.debian.org/debian}

mkdir -p "$cache"
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/etc" "$work/lists/partial" "$work/cache/archives/partial" "$work/debs" "$work/root"
cat >"$work/etc/trixie.sources" <<EOF
Types: deb
URIs: $mirror
Suites: trixie
Components: main
Signed-By: $keyring
EOF
A=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$work/etc"
	-o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache"
	-o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
	-o APT::Architecture=amd64 -o APT::Architectures=amd64
	-o Debug::NoLocking=1 -o APT::Sandbox::User=root)

log "apt-get update (trixie, $mirror, private lists)"
apt-get "${A[@]}" -qq update >&2 || die "apt-get update of trixie failed"

# Every package the set's tools need at run time, from trixie's own
# dependency graph (recommends left out). Virtual packages and the
# alternatives apt lists in <angle brackets> are dropped.
pkgs=$(apt-cache "${A[@]}" depends --recurse --no-recommends --no-suggests \
	--no-conflicts --no-breaks --no-replaces --no-enhances \
	"${debs[@]}" | grep -v '^ ' | grep -v '^<' | sort -u)
# Packages that are never needed to run a binary: the Debian base system's
# configuration and maintainer-script machinery.
skip='^(debconf|debconf-2.0|dpkg|perl-base|tar|sensible-utils|libc-bin|base-files|init-system-helpers|adduser|passwd|login|mount|util-linux|gcc-14-base|usrmerge|usr-is-merged|cdebconf)$'
pkgs=$(printf '%s\n' "$pkgs" | grep -Ev "$skip")
log "downloading $(printf '%s\n' "$pkgs" | wc -l) packages: $(echo $pkgs)"
# shellcheck disable=SC2086
(cd "$work/debs" && apt-get "${A[@]}" -qq download $pkgs >&2) || die "apt-get download failed"
for f in "$work"/debs/*.deb; do
	dpkg -x "$f" "$work/root"
done
# Debian 13 is merged-/usr: the loader is in usr/lib64 and the libraries
# in usr/lib/x86_64-linux-gnu; the packages' files may still be under /lib.
r=$work/root
ld=$r/usr/lib64/ld-linux-x86-64.so.2
[ -e "$ld" ] || ld=$r/lib64/ld-linux-x86-64.so.2
[ -e "$ld" ] || die "no ld-linux-x86-64.so.2 in the unpacked root"
mkdir -p "$r/bin"
for pair in "${bins[@]}"; do
	name=${pair%%:*} path=${pair#*:}
	[ -x "$r/$path" ] || path=${path#usr/}
	[ -x "$r/$path" ] || die "no $name in the unpacked root"
	# The wrapper finds the root from its own place, so the cache can move.
	cat >"$r/bin/$name" <<EOF
#!/bin/sh
# Debian 13's $name, run with the root's own loader and libraries (scripts/debian13.sh).
r=\$(cd "\$(dirname "\$0")/.." && pwd)
$wrap_env
exec "\$r/${ld#"$r"/}" --library-path "\$r/usr/lib/x86_64-linux-gnu:\$r/lib/x86_64-linux-gnu" "\$r/$path" $wrap_args"\$@"
EOF
	chmod 755 "$r/bin/$name"
done
# Smoke test: each tool starts and says who it is.
smoke "$r"
printf '%s\n' $pkgs >"$r/PACKAGES"
rm -rf "$root"
mv "$r" "$root"
# Older roots of this set (made by another version of this script) are stale.
find "$cache" -maxdepth 1 -name "$prefix-*" ! -name "$prefix-$key" -exec rm -rf {} +
log "root ready: $root"
printf '%s\n' "$root"
