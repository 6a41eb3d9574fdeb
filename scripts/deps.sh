#!/usr/bin/env bash
# Installs every external tool encblk's tests and benchmarks use, from
# Debian's packages. Idempotent: packages already installed cost nothing, and
# `apt-get update` runs only when something is missing. Needs root.
set -euo pipefail

packages=(
	# NBD peers and clients
	nbdkit libnbd-bin fuse3 qemu-utils fio
	# LUKS2 interop and filesystems
	cryptsetup-bin e2fsprogs util-linux mount
	# deterministic interruption of cryptsetup reencrypt (fault injection)
	strace
	# socket activation of encblk serve (systemd-socket-activate)
	systemd
	# independent crypto (OpenSSL via python3-cryptography) and KMIP server
	openssl python3 python3-cryptography python3-pykmip
	# kernel VM harness (test/vm); 6.12 (bookworm-security) has ublk too
	qemu-system-x86 linux-image-6.12-amd64 busybox-static nbd-client kmod cpio xz-utils zstd dmsetup iproute2
	# real-process crash tests (SIGKILL injected at each fsync)
	strace
	# promtool lints the metrics exposition
	prometheus
	# age files (header backups, the age KEK source): the age tools, SSH keys,
	# and script(1) to give age a terminal for its passphrase
	age openssh-client bsdutils
	# pkg/sed judges in test/vm: ATA Security (sedutil, cryptsetup 2.7 come from
	# Debian 13 through scripts/debian13.sh)
	hdparm debian-archive-keyring
	# machine-bound KEKs (pkg/kek): Tang servers and clevis (both directions of the
	# clevis LUKS2 token), jose for JWE checks, socat to serve tangd on loopback;
	# swtpm and tpm2-tools for the systemd-tpm2 token, clevis-tpm2 for clevis's
	# tpm2 pin (alone and inside sss)
	tang clevis clevis-luks clevis-tpm2 jose socat swtpm swtpm-tools tpm2-tools
	# pkg/sed: ioctl struct layouts checked against the kernel's uapi headers
	gcc libc6-dev linux-libc-dev
)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "deps.sh: missing packages (${missing[*]}); run as root to install them" >&2
	exit 1
fi

echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
echo "deps.sh: done" >&2
