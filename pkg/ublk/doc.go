// Package ublk serves a blockdev.Device as a Linux ublk block device
// (/dev/ublkbN): the kernel's ublk_drv hands block requests to userspace
// through io_uring, with no socket in between.
//
// Control: /dev/ublk-control takes IORING_OP_URING_CMD commands on a ring
// with 128-byte entries (ADD_DEV, SET_PARAMS, START_DEV, STOP_DEV, DEL_DEV,
// GET_DEV_INFO, START/END_USER_RECOVERY, GET_FEATURES).
//
// Data: each hardware queue has its own ring on its own locked OS thread
// (the kernel takes a queue's commands only from the task that fetched
// them). At start the queue issues FETCH_REQ for every tag with the tag's
// buffer address; a completion means a request is in the tag's descriptor
// (a read-only mmap of /dev/ublkcN), with a write's data already copied
// into the buffer. The request runs on the device on its own goroutine,
// and COMMIT_AND_FETCH_REQ reports its result (bytes, or -errno: a failed
// request is committed too) and fetches the tag's next request; for a read
// the kernel copies the data out of the buffer at that commit.
//
// Recovery: devices are created with UBLK_F_USER_RECOVERY and
// UBLK_F_USER_RECOVERY_REISSUE. If the server dies, the kernel keeps
// /dev/ublkbN, queues new I/O and requeues what the dead server held; a
// new server (Options.Recover, or AutoID finding a device of the same
// Owner) runs START_USER_RECOVERY, fetches again and END_USER_RECOVERY,
// and the filesystem on top never notices beyond the pause.
//
// Pitfalls:
//   - DEL_DEV waits until every opener of /dev/ublkbN has closed it (a
//     mounted filesystem holds it): Stop uses DEL_DEV_ASYNC where the driver
//     has it (Linux 6.9+), so a server with a mounted device still exits.
//   - A server must not live in a mount namespace that holds a mount of
//     its own device: at exit the kernel tears the namespace down, the
//     unmount waits for I/O that only the exiting server could serve, and
//     both hang.
//   - ublk_drv's ublks_max parameter limits unprivileged devices (64); this
//     package creates privileged ones and needs CAP_SYS_ADMIN.
//   - The queue count is clamped by the kernel to the number of CPUs.
package ublk
