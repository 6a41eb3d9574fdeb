package keyring

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// deviceSize is the size of a regular file, or of a block device (found by
// seeking to its end).
func deviceSize(dev any, fi os.FileInfo) (uint64, error) {
	if fi.Mode().IsRegular() {
		return uint64(fi.Size()), nil
	}
	if s, ok := dev.(io.Seeker); ok {
		n, err := s.Seek(0, io.SeekEnd)
		if err != nil {
			return 0, fmt.Errorf("%w: size of %s: %w", ErrIO, fi.Name(), err)
		}
		return uint64(n), nil
	}
	return 0, fmt.Errorf("%w: %s", errNotSized, fi.Name())
}

var errNotSized = errors.New("cannot tell the device size")
