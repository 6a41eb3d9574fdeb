# Shared steps for the SED scenarios (sourced after lib.sh): the test-only
# sedtcmu handler that shows a sedsim drive as a SCSI disk, and Debian 13's
# sedutil-cli.

sed_log=$work/sedtcmu.log

# sed_start MODE [ARGS...] starts sedtcmu (MODE opal or ata) over a 64 MiB
# backing in $work and sets SED_DEV to its /dev/sdX. The drive's firmware
# state is kept in $work/sed.state across sed_restart.
sed_start() {
	local mode=$1
	shift
	[ -x "${ENCBLK_VM_SEDTCMU:-}" ] || fail "no sedtcmu (run.sh builds it for scenarios that name ENCBLK_VM_SEDTCMU)"
	mountpoint -q /sys/kernel/config || mount -t configfs configfs /sys/kernel/config
	[ -e "$work/sed.img" ] || truncate -s 64M "$work/sed.img"
	SED_MODE=$mode SED_ARGS=("$@")
	sed_run
	at_exit sed_stop
}

sed_run() {
	rm -f "$work/sed.ready"
	cp "$ENCBLK_VM_SEDTCMU" /tmp/sedtcmu 2>/dev/null || true
	/tmp/sedtcmu -mode "$SED_MODE" -backing "$work/sed.img" -state "$work/sed.state" \
		-ready "$work/sed.ready" -fault "$work/sed.fault" "${SED_ARGS[@]}" >>"$sed_log" 2>&1 &
	SED_PID=$!
	local i
	for i in $(seq 1 600); do
		[ -s "$work/sed.ready" ] && break
		kill -0 "$SED_PID" 2>/dev/null || { cat "$sed_log" >&2; fail "sedtcmu exited"; }
		sleep 0.1
	done
	[ -s "$work/sed.ready" ] || { cat "$sed_log" >&2; fail "sedtcmu: no disk after 60s"; }
	SED_DEV=$(cat "$work/sed.ready")
	step "sedtcmu: $SED_MODE drive is $SED_DEV ($(cat /sys/block/$(basename "$SED_DEV")/device/vendor) $(cat /sys/block/$(basename "$SED_DEV")/device/model))"
}

# sed_stop removes the disk and stops sedtcmu.
sed_stop() {
	[ -n "${SED_PID:-}" ] || return 0
	kill -TERM "$SED_PID" 2>/dev/null || true
	wait "$SED_PID" 2>/dev/null || true
	SED_PID=
}

# sed_restart is a power cycle: the disk goes away, the drive comes back
# with its firmware state (ranges with LockOnReset locked).
sed_restart() {
	sed_stop
	sed_run
}

# sedutil runs Debian 13's sedutil-cli.
sedutil() {
	[ -x "${ENCBLK_VM_DEBIAN13:-}/bin/sedutil-cli" ] || fail "no Debian 13 sedutil-cli (scripts/debian13.sh)"
	"$ENCBLK_VM_DEBIAN13/bin/sedutil-cli" "$@"
}

# nvme_start starts sednvmet over $work/nvme.img on 127.0.0.1:4420 and
# connects the kernel's NVMe/TCP host to it; sets NVME_DEV (the namespace)
# and NVME_CTRL (the controller's character device).
nvme_nqn=nqn.2026-12.org.encblk:sedsim
nvme_start() {
	[ -x "${ENCBLK_VM_SEDNVMET:-}" ] || fail "no sednvmet (run.sh builds it for scenarios that name ENCBLK_VM_SEDNVMET)"
	[ -e "$work/nvme.img" ] || truncate -s 64M "$work/nvme.img"
	rm -f "$work/nvme.ready"
	cp "$ENCBLK_VM_SEDNVMET" /tmp/sednvmet
	/tmp/sednvmet -v -trace "$work/nvme.trace" -backing "$work/nvme.img" -state "$work/nvme.state" -ready "$work/nvme.ready" >>"$work/sednvmet.log" 2>&1 &
	NVME_PID=$!
	at_exit nvme_stop
	local i
	for i in $(seq 1 100); do
		[ -s "$work/nvme.ready" ] && break
		sleep 0.1
	done
	[ -s "$work/nvme.ready" ] || { cat "$work/sednvmet.log" >&2; fail "sednvmet did not start"; }
	[ -e /dev/nvme-fabrics ] || fail "no /dev/nvme-fabrics (nvme-tcp not loaded)"
	echo "transport=tcp,traddr=127.0.0.1,trsvcid=4420,nqn=$nvme_nqn,hostnqn=nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-0000000e0c0b,hostid=00000000-0000-4000-8000-0000000e0c0b,nr_io_queues=1" >/dev/nvme-fabrics ||
		{ cat "$work/sednvmet.log" >&2; dmesg | tail -20 >&2; fail "nvme connect failed"; }
	for i in $(seq 1 300); do
		NVME_DEV=$(ls /dev/nvme*n1 2>/dev/null | head -1)
		[ -n "$NVME_DEV" ] && [ "$(blockdev --getsize64 "$NVME_DEV" 2>/dev/null || echo 0)" -gt 0 ] && break
		sleep 0.1
	done
	[ -n "$NVME_DEV" ] || { cat "$work/sednvmet.log" >&2; dmesg | tail -20 >&2; fail "no NVMe namespace appeared"; }
	NVME_CTRL=/dev/$(basename "$(dirname "$(readlink -f /sys/block/$(basename "$NVME_DEV")/device)")" 2>/dev/null || true)
	step "sednvmet: Opal namespace is $NVME_DEV"
}

# nvme_stop disconnects the host and stops sednvmet.
nvme_stop() {
	local c
	for c in /sys/class/nvme/nvme*; do
		[ -e "$c/delete_controller" ] && echo 1 >"$c/delete_controller"
	done
	[ -n "${NVME_PID:-}" ] || return 0
	kill -TERM "$NVME_PID" 2>/dev/null || true
	wait "$NVME_PID" 2>/dev/null || true
	NVME_PID=
}

# nvme_restart is a power cycle of the NVMe drive.
nvme_restart() {
	nvme_stop
	nvme_start
}

# cryptsetup27 runs Debian 13's cryptsetup 2.7.5.
cryptsetup27() {
	[ -x "${ENCBLK_VM_DEBIAN13:-}/bin/cryptsetup" ] || fail "no Debian 13 cryptsetup (scripts/debian13.sh)"
	"$ENCBLK_VM_DEBIAN13/bin/cryptsetup" "$@"
}
