#!/usr/bin/env bash
# test/vm/run.sh — encblk's real-kernel end-to-end suite.
#
# The host's kernel has neither nbd nor dm-crypt, so this boots Debian's
# kernel under qemu (software emulation, no KVM needed) once per scenario.
# The guest's root is the host's root, shared read-only over virtio-9p, so the
# host's binaries (nbd-client, cryptsetup, mkfs.ext4, fio, encblk) run inside
# unchanged. A tiny initramfs (static busybox plus the virtio-9p modules)
# mounts it, puts tmpfs on /tmp and /run, mounts a second, writable 9p export
# (the "share": scenario scripts, the encblk binary, results) on
# /run/encblk-vm and runs the scenario in a chroot. The guest prints marker
# lines on the serial console; this script turns them into an exit status.
#
# Usage: test/vm/run.sh [scenario[:sector]...]
#   scenario  a script name under test/vm/scenarios (without .sh); with no
#             :sector it runs at every sector size its "# sectors:" line lists.
#   With no arguments it runs the quick subset, or everything under
#   ENCBLK_VM_FULL=1.
#
# Environment:
#   ENCBLK_VM_FULL=1        run every scenario at every sector size
#   ENCBLK_REQUIRE_TOOLS=1  a missing qemu, kernel or tool fails instead of skipping
#   ENCBLK_VM_KERNEL=ver    kernel version under /lib/modules (default: newest with a /boot/vmlinuz-ver)
#   ENCBLK_VM_TIMEOUT=secs  per-boot limit before the guest is killed (default: the scenario's "# timeout:" line)
#   ENCBLK_VM_CACHE=dir     where built initramfs images are cached (default ~/.cache/encblk/vm)
#   ENCBLK_VM_MEM, ENCBLK_VM_SMP  guest memory (default 1G) and CPUs (default 2)
#   ENCBLK_VM_ENCBLK=path   test this (static) encblk binary instead of building ./cmd/encblk
#   ENCBLK_VM_QEMU=path     run the guest with this qemu-system-x86_64 (default: the one on PATH;
#                           bench/ublk.sh --qemu debian13 uses Debian 13's, scripts/debian13.sh qemu)
#   ENCBLK_VM_QEMU_ARGS=... more qemu arguments, split on blanks, after the harness's own (a later
#                           option wins): on a host with KVM, "-accel kvm -cpu host"
#   ENCBLK_BENCH_*=value    passed to the guest (benchmark scenarios' knobs)
#
# Console logs go to test/vm/out/<scenario>-<sector>.log (gitignored); on a
# failure the share directory is kept beside it and the log's tail is printed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$here/out
export PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin

quick=(nbd-attach:4096 dm-crypt-compat:4096 sed-opal-scsi:512 ublk-attach:4096 tpm2-interop:4096 encrypt-in-place:4096 reencrypt-fio:4096 reencrypt-online:4096)

log() { printf 'test/vm: %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

# --- tools -----------------------------------------------------------------

missing=()
# need NAME PACKAGE: NAME is a command on PATH or an absolute path.
need() {
	if [[ $1 == /* ]]; then
		[ -e "$1" ] && return 0
	else
		command -v "$1" >/dev/null 2>&1 && return 0
	fi
	missing+=("$1 (Debian package $2)")
}

# newest_kernel prints the newest kernel version that has both an image in
# /boot and modules under /lib/modules.
newest_kernel() {
	local d v best=
	for d in /lib/modules/*/; do
		v=$(basename "$d")
		[ -e "/boot/vmlinuz-$v" ] && [ -e "$d/modules.dep" ] || continue
		best=$(printf '%s\n%s\n' "$best" "$v" | sed '/^$/d' | sort -V | tail -1)
	done
	printf '%s' "$best"
}

qemu=${ENCBLK_VM_QEMU:-qemu-system-x86_64}
need "$qemu" qemu-system-x86
need cpio cpio
need modprobe kmod
need nbd-client nbd-client
need cryptsetup cryptsetup-bin
need mkfs.ext4 e2fsprogs
need losetup mount
need blockdev util-linux
need dmsetup dmsetup
need ip iproute2
need xz xz-utils
need zstd zstd
need fio fio
need strace strace
# The guest's PATH finds Debian's python3, not a host-only one.
need /usr/bin/python3 python3
if [ -x /bin/busybox ] && [[ $(ldd /bin/busybox 2>&1 || true) == *"not a dynamic executable"* ]]; then
	:
else
	missing+=("a static /bin/busybox (Debian package busybox-static)")
fi
kver=${ENCBLK_VM_KERNEL:-$(newest_kernel)}
if [ -z "$kver" ]; then
	missing+=("a kernel in /boot with modules in /lib/modules (Debian package linux-image-6.12-amd64)")
else
	need "/boot/vmlinuz-$kver" linux-image-6.12-amd64
	need "/lib/modules/$kver/modules.dep" linux-image-6.12-amd64
fi
if [ "$(id -u)" -ne 0 ]; then
	missing+=("root (the 9p export of / and loop devices in the guest need it)")
fi

if [ ${#missing[@]} -gt 0 ]; then
	msg="missing: $(printf '%s; ' "${missing[@]}")run scripts/deps.sh"
	if [ "${ENCBLK_REQUIRE_TOOLS:-}" = 1 ]; then
		die "$msg [ENCBLK_REQUIRE_TOOLS=1]"
	fi
	log "SKIP: $msg"
	exit 0
fi

# --- scenarios -------------------------------------------------------------

# header FILE KEY prints the value of a "# KEY: value" line in a scenario.
header() { sed -n "s/^# $2: *//p" "$1" | head -1; }

all_scenarios() {
	local f
	for f in "$here"/scenarios/*.sh; do
		# "# manual: yes" (benchmarks) runs only when named.
		[ -n "$(header "$f" manual)" ] && [ "${1:-}" != all ] && continue
		printf '%s %s\n' "$(header "$f" order)" "$(basename "$f" .sh)"
	done | sort -n | cut -d' ' -f2
}

# expand SPEC prints scenario:sector pairs for one argument.
expand() {
	local name=${1%%:*} sector= f s
	[[ $1 == *:* ]] && sector=${1#*:}
	f=$here/scenarios/$name.sh
	if [ -n "$sector" ]; then
		printf '%s:%s\n' "$name" "$sector"
		return
	fi
	for s in $(header "$f" sectors); do
		printf '%s:%s\n' "$name" "$s"
	done
}

specs=()
if [ $# -gt 0 ]; then
	for a in "$@"; do
		[ -f "$here/scenarios/${a%%:*}.sh" ] ||
			die "no scenario ${a%%:*} (have: $(all_scenarios all | tr '\n' ' '))"
		mapfile -t -O ${#specs[@]} specs < <(expand "$a")
	done
elif [ "${ENCBLK_VM_FULL:-}" = 1 ]; then
	for n in $(all_scenarios); do
		mapfile -t -O ${#specs[@]} specs < <(expand "$n")
	done
else
	specs=("${quick[@]}")
fi

# --- encblk ----------------------------------------------------------------

# The encblk binary is built once per run and handed to the guest in each
# share. Static (no cgo), so it runs in the guest whatever the host's libc.
mkdir -p "$out"
encblk_bin=
if [ -n "${ENCBLK_VM_ENCBLK:-}" ]; then
	encblk_bin=$ENCBLK_VM_ENCBLK
	[ -x "$encblk_bin" ] || die "ENCBLK_VM_ENCBLK=$encblk_bin is not an executable"
	log "using encblk binary $encblk_bin"
elif [ -d "$repo/cmd/encblk" ] && command -v go >/dev/null 2>&1; then
	encblk_bin=$out/encblk
	log "building encblk (CGO_ENABLED=0)"
	(cd "$repo" && CGO_ENABLED=0 go build -o "$encblk_bin" ./cmd/encblk) ||
		die "go build ./cmd/encblk failed"
elif [ -d "$repo/cmd/encblk" ]; then
	log "go not found: scenarios that need encblk will fail"
fi
# The SED scenarios' test-only tools: sedtcmu (a sedsim drive as a SCSI disk
# through target_core_user) and Debian 13's sedutil and cryptsetup 2.7
# (scripts/debian13.sh, cached), for the scenarios that name them.
sedtcmu_bin= debian13=
if grep -qsE 'ENCBLK_VM_SED(TCMU|NVMET)' $(printf "$here/scenarios/%s.sh " "${specs[@]%%:*}"); then
	sedtcmu_bin=$out/sedtcmu
	(cd "$repo" && CGO_ENABLED=0 go build -o "$sedtcmu_bin" ./test/vm/sedtcmu &&
		CGO_ENABLED=0 go build -o "$out/sednvmet" ./test/vm/sednvmet) ||
		die "go build ./test/vm/sedtcmu ./test/vm/sednvmet failed"
fi
# Scenarios with "# tpm: yes" get a TPM 2.0: a host-side swtpm behind
# qemu's tpm-tis device (the guest kernel's driver is built in: /dev/tpmrm0).
if grep -qs '^# tpm: *yes' $(printf "$here/scenarios/%s.sh " "${specs[@]%%:*}"); then
	command -v swtpm >/dev/null 2>&1 || {
		[ "${ENCBLK_REQUIRE_TOOLS:-}" = 1 ] && die "missing: swtpm (Debian package swtpm) [ENCBLK_REQUIRE_TOOLS=1]"
		log "SKIP: missing: swtpm (Debian package swtpm), run scripts/deps.sh"
		exit 0
	}
fi
if grep -qs 'ENCBLK_VM_DEBIAN13' $(printf "$here/scenarios/%s.sh " "${specs[@]%%:*}"); then
	debian13=$("$repo/scripts/debian13.sh") || die "scripts/debian13.sh failed"
	# The guest sees the host's root, but its own tmpfs on /tmp and /run.
	case $(realpath "$debian13") in
	/tmp/* | /run/*) die "the Debian 13 root $debian13 is under /tmp or /run, which the guest does not see: set ENCBLK_DEBIAN13_CACHE elsewhere" ;;
	esac
fi

# --- initramfs -------------------------------------------------------------

# The modules to mount the host's root and those the scenarios use, with
# their dependencies (from modules.dep), decompressed here: decompressing xz
# under emulation would cost the guest many seconds. The chroot has no
# module auto-loading. Optional ones may be missing or refuse to load (the
# accelerated crypto needs the CPU features qemu -cpu max provides).
boot_modules=(virtio_pci 9pnet_virtio 9p)
test_modules=(loop nbd dm-mod dm-crypt xts ecb aes_generic ext4 crc32c_generic configfs target_core_user tcm_loop sd_mod ublk_drv nvme-tcp)
optional_modules=(aesni_intel crc32c_intel)
cache=${ENCBLK_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/encblk/vm}
key=$({
	printf '%s\n' "$kver" "${boot_modules[*]}" "${test_modules[*]}" "${optional_modules[*]}"
	cat "$here/initramfs/init" "$0"
	sha256sum /bin/busybox
} | sha256sum | cut -c1-16)
initrd=$cache/initramfs-$kver-$key.cpio.gz

build_initramfs() {
	local root m path name list=
	root=$(mktemp -d)
	mkdir -p "$root"/{bin,dev,proc,sys,newroot,lib/modules}
	cp /bin/busybox "$root/bin/busybox"
	cp "$here/initramfs/init" "$root/init"
	chmod 755 "$root/init"
	# modprobe --show-depends lists a module's dependencies in load order
	# (from modules.dep) and marks built-in ones. /modules gets one
	# "file required|optional" line per module, in load order.
	for m in "${boot_modules[@]}" "${test_modules[@]}" "${optional_modules[@]}"; do
		local need=required deps
		case " ${optional_modules[*]} " in *" $m "*) need=optional ;; esac
		if ! deps=$(modprobe --set-version "$kver" --show-depends "$m" 2>/dev/null); then
			[ $need = optional ] && continue
			die "kernel $kver has no module $m"
		fi
		while read -r kind path _; do
			[ "$kind" = insmod ] || continue
			name=$(basename "$path")
			case $name in
			*.ko.xz) name=${name%.xz} ;;
			*.ko.zst) name=${name%.zst} ;;
			*.ko) ;;
			*) die "unexpected module file $path" ;;
			esac
			case " $list " in *" $name "*) continue ;; esac
			case $path in
			*.xz) xz -dc "$path" >"$root/lib/modules/$name" ;;
			*.zst) zstd -qdc "$path" >"$root/lib/modules/$name" ;;
			*) cp "$path" "$root/lib/modules/$name" ;;
			esac
			list="$list $name"
			printf '%s %s\n' "$name" "$need" >>"$root/modules"
		done <<<"$deps"
	done
	mkdir -p "$cache"
	# A private temporary name: concurrent runs (two checkouts) may build
	# the same image at once; the rename is atomic.
	tmp=$(mktemp "$initrd.XXXXXX")
	(cd "$root" && find . | LC_ALL=C sort | cpio --quiet -o -H newc | gzip -1) >"$tmp"
	mv "$tmp" "$initrd"
	rm -rf "$root"
	# Images for this kernel that no run has used for an hour are stale.
	# (Each run touches the image it boots, so a concurrent run's image,
	# which qemu re-reads at every boot, is never deleted under it.)
	find "$cache" -name "initramfs-$kver-*.cpio.gz*" ! -name "$(basename "$initrd")" -mmin +60 -delete
}

if [ ! -s "$initrd" ]; then
	log "building initramfs for $kver"
	build_initramfs
fi
touch "$initrd" # in use: keeps another checkout's cleanup away from it

# --- boot ------------------------------------------------------------------

# died_booting LOG: the guest kernel oopsed or panicked before the scenario
# started (no ENCBLK-VM-START on the console). Seen once in CI (session 8,
# nbd-attach): "Oops: int3" in sched_clock_cpu at 1.6 s, on the vCPU taking
# the IPI of a static-key patch (text_poke_bp) at late init, which the
# kernel's int3 handler no longer recognised: the guest kernel's live code
# patching racing qemu TCG's translated code on the other vCPU thread,
# before any of our code ran. Such a boot is retried once, and said so;
# a scenario that started is never retried.
died_booting() {
	! grep -aq 'ENCBLK-VM-START' "$1" 2>/dev/null &&
		grep -aqE 'Kernel panic|Oops: ' "$1" 2>/dev/null
}

# run_one NAME SECTOR boots the guest for one scenario and reports the
# result: 0 passed, 1 failed, 2 the guest died booting (died_booting; its
# console is kept as NAME-SECTOR.boot-failed.log).
run_one() {
	local name=$1 sector=$2 f tmo share logf start rc=0 result
	f=$here/scenarios/$name.sh
	tmo=${ENCBLK_VM_TIMEOUT:-$(header "$f" timeout)}
	tmo=${tmo:-300}
	share=$out/$name-$sector
	logf=$out/$name-$sector.log
	rm -rf "$share" "$logf"
	mkdir -p "$share"
	cp -r "$here/guest" "$here/scenarios" "$share/"
	[ -n "$encblk_bin" ] && cp "$encblk_bin" "$share/encblk"
	[ -n "$sedtcmu_bin" ] && cp "$sedtcmu_bin" "$out/sednvmet" "$share/"
	cat >"$share/job.sh" <<-EOF
		export ENCBLK_VM_DEBIAN13=$debian13 ENCBLK_VM_SEDTCMU=${sedtcmu_bin:+/run/encblk-vm/sedtcmu} ENCBLK_VM_SEDNVMET=${sedtcmu_bin:+/run/encblk-vm/sednvmet}
		export ENCBLK_VM_SCENARIO=$name ENCBLK_VM_SECTOR=$sector ENCBLK_VM_TIMEOUT=$((tmo > 60 ? tmo - 30 : tmo * 3 / 4))
		$(env | grep -E '^ENCBLK_BENCH_[A-Z_]+=[0-9A-Za-z._/-]*$' | sed 's/^/export /')
		exec /bin/bash /run/encblk-vm/guest/runner.sh
	EOF
	# "# tpm: yes": a fresh swtpm for this boot, its state and control
	# socket in a private directory (a short path: unix socket names are
	# limited), stopped after qemu.
	local tpm_args=() tpm_dir= tpm_pid=
	if [ "$(header "$f" tpm)" = yes ]; then
		tpm_dir=$(mktemp -d /tmp/encblk-vm-tpm.XXXXXX)
		swtpm socket --tpm2 --tpmstate "dir=$tpm_dir" --ctrl "type=unixio,path=$tpm_dir/ctrl" \
			--log "file=$out/$name-$sector.swtpm" --terminate &
		tpm_pid=$!
		local i
		for i in $(seq 1 100); do
			[ -S "$tpm_dir/ctrl" ] && break
			sleep 0.1
		done
		[ -S "$tpm_dir/ctrl" ] || die "swtpm made no socket in $tpm_dir"
		tpm_args=(-chardev "socket,id=chrtpm,path=$tpm_dir/ctrl" -tpmdev emulator,id=tpm0,chardev=chrtpm
			-device tpm-tis,tpmdev=tpm0)
	fi
	start=$(date +%s)
	# no_timer_check: under emulation on a loaded host the kernel's IO-APIC
	# timer check can fail and panic the boot ("IO-APIC + timer doesn't
	# work", seen once at load 16); VMs skip it as cloud images do.
	# ENCBLK_VM_QEMU_ARGS is split on blanks on purpose.
	# shellcheck disable=SC2086
	timeout --kill-after=10 "$tmo" "$qemu" \
		-machine q35 -cpu max -smp "${ENCBLK_VM_SMP:-2}" -m "${ENCBLK_VM_MEM:-1G}" \
		-display none -monitor none -serial "file:$logf" -no-reboot \
		-nic none \
		-kernel "/boot/vmlinuz-$kver" -initrd "$initrd" \
		-append "console=ttyS0 panic=-1 loglevel=4 no_timer_check rdinit=/init" \
		-virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
		-virtfs "local,path=$share,mount_tag=results,security_model=none,multidevs=remap" \
		"${tpm_args[@]}" ${ENCBLK_VM_QEMU_ARGS:-} >"$out/$name-$sector.qemu" 2>&1 || rc=$?
	if [ -n "$tpm_pid" ]; then
		kill "$tpm_pid" 2>/dev/null || true
		wait "$tpm_pid" 2>/dev/null || true
		rm -rf "$tpm_dir" "$out/$name-$sector.swtpm"
	fi
	local secs=$(($(date +%s) - start))
	result=$(grep -ao "ENCBLK-VM-RESULT $name $sector [A-Z]*" "$logf" 2>/dev/null | tail -1 | awk '{print $4}')
	local boot
	boot=$(grep -ao 'ENCBLK-VM-BOOTED [0-9.]*' "$logf" 2>/dev/null | awk '{print $2}' | head -1)
	if [ "$result" = PASS ]; then
		log "PASS $name sector=$sector (${secs}s, guest up at ${boot:-?}s)"
		rm -rf "$share" "$out/$name-$sector.qemu"
		return 0
	fi
	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		log "FAIL $name sector=$sector: guest killed after ${tmo}s timeout"
	else
		log "FAIL $name sector=$sector (${secs}s, qemu exit $rc, result ${result:-none})"
	fi
	[ -s "$out/$name-$sector.qemu" ] && sed 's/^/  qemu: /' "$out/$name-$sector.qemu" >&2
	if died_booting "$logf"; then
		mv "$logf" "$out/$name-$sector.boot-failed.log"
		log "the guest kernel died while booting, before the scenario started (console kept in $out/$name-$sector.boot-failed.log)"
		return 2
	fi
	log "console log: $logf (share kept in $share); last lines:"
	tail -n 60 "$logf" | tr -d '\r' | sed 's/^/  | /' >&2
	return 1
}

log "kernel $kver, initramfs $initrd, scenarios: ${specs[*]}"
[ -z "${ENCBLK_VM_QEMU:-}" ] || log "qemu: $ENCBLK_VM_QEMU ($("$qemu" --version | sed -n 1p))"
[ -z "${ENCBLK_VM_QEMU_ARGS:-}" ] || log "qemu arguments added: $ENCBLK_VM_QEMU_ARGS"
failed=()
suite_start=$(date +%s)
for spec in "${specs[@]}"; do
	rc=0
	run_one "${spec%%:*}" "${spec#*:}" || rc=$?
	if [ "$rc" -eq 2 ]; then
		log "RETRY $spec once"
		rc=0
		run_one "${spec%%:*}" "${spec#*:}" || rc=$?
	fi
	[ "$rc" -eq 0 ] || failed+=("$spec")
done
log "suite took $(($(date +%s) - suite_start))s"
if [ ${#failed[@]} -gt 0 ]; then
	die "${#failed[@]} of ${#specs[@]} failed: ${failed[*]}"
fi
log "all ${#specs[@]} passed"
