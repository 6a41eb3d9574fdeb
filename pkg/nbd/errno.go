package nbd

import (
	"context"
	"errors"
	"syscall"
)

// nbdErrno maps a device error to the NBD error value the client sees: a
// wrapped syscall.Errno picks it, a cancelled context means the server is
// going away (ESHUTDOWN), anything else is EIO. Mapping follows the spec's
// "Error values" (EDQUOT and EFBIG are ENOSPC) and nbdkit (EROFS is EPERM).
func nbdErrno(err error) uint32 {
	if err == nil {
		return 0
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		switch e {
		case syscall.EPERM, syscall.EROFS, syscall.EACCES:
			return errPerm
		case syscall.EIO:
			return errIO
		case syscall.ENOMEM:
			return errNoMem
		case syscall.EINVAL:
			return errInval
		case syscall.ENOSPC, syscall.EDQUOT, syscall.EFBIG:
			return errNoSpc
		case syscall.EOVERFLOW:
			return errOverflow
		case syscall.ENOTSUP:
			return errNotSup
		case syscall.ESHUTDOWN:
			return errShutdown
		}
		return errIO
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return errShutdown
	}
	return errIO
}
