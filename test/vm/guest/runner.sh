#!/bin/bash
# Runs one scenario inside the test/vm guest (in the chroot on the host's
# root) and prints the marker line run.sh reads:
#   ENCBLK-VM-RESULT <scenario> <sector> PASS|FAIL <details>
# Environment from job.sh: ENCBLK_VM_SCENARIO, ENCBLK_VM_SECTOR,
# ENCBLK_VM_TIMEOUT.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/tmp LC_ALL=C
share=/run/encblk-vm
name=$ENCBLK_VM_SCENARIO
sector=$ENCBLK_VM_SECTOR
script=$share/scenarios/$name.sh

# The initramfs loaded the modules (run.sh lists them); check the ones the
# scenarios need, and load any that is missing with the host's modprobe.
for m in loop nbd dm-mod dm-crypt xts ext4 ublk_drv; do
	[ -d "/sys/module/${m//-/_}" ] && continue
	if ! modprobe "$m"; then
		echo "ENCBLK-VM-RESULT $name $sector FAIL modprobe $m"
		exit 1
	fi
done
ip link set lo up 2>/dev/null || true
flags=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -xE 'aes|avx|avx2|vaes|vpclmulqdq|avx512f|avx512vl' | tr '\n' ' ')
echo "runner: kernel $(uname -r), $(nproc) cpus, cpu flags: ${flags:-none}," \
	"kernel xts driver: $(grep -A3 'name *: xts(aes)' /proc/crypto | sed -n 's/driver *: //p' | head -1)"

# Run encblk from the guest's tmpfs: the share is 9p without a page cache,
# and every exec would read the binary over it again.
encblk=
if [ -x "$share/encblk" ]; then
	encblk=/tmp/encblk
	cp "$share/encblk" "$encblk"
fi

dmesg -c >/dev/null
start=$(date +%s.%N)
echo "ENCBLK-VM-START $name $sector"
ENCBLK_VM_LIB=$share/guest/lib.sh ENCBLK=$encblk SECTOR=$sector \
	timeout -k 10 "$ENCBLK_VM_TIMEOUT" bash -euo pipefail "$script"
rc=$?
secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')

# Kernel complaints fail a scenario even if its own checks passed. A
# scenario that provokes I/O errors on purpose clears the kernel log
# (dmesg -c) once they are expected no more.
kerrs=$(dmesg | grep -E 'EXT4-fs error|Buffer I/O error|I/O error, dev|BUG:|WARNING:|Call Trace|hung_task|blocked for more than' || true)
if [ "$rc" -eq 0 ] && [ -n "$kerrs" ]; then
	echo "runner: kernel log has errors:"
	printf '%s\n' "$kerrs" | head -40
	rc=99
fi
if [ "$rc" -ne 0 ]; then
	[ "$rc" -eq 124 ] && echo "runner: scenario timed out after ${ENCBLK_VM_TIMEOUT}s"
	echo "runner: last kernel messages:"
	dmesg | tail -40
	echo "ENCBLK-VM-RESULT $name $sector FAIL rc=$rc secs=$secs"
	exit 1
fi
echo "ENCBLK-VM-RESULT $name $sector PASS secs=$secs"
