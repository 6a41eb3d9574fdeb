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
