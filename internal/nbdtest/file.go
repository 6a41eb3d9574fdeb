// Package nbdtest holds fixtures for testing pkg/nbd: backing.Plain (the
// unencrypted backend of internal/backing) with the capabilities a test
// chooses, so the NBD server can be exercised without encryption.
package nbdtest

import (
	"context"
	"errors"

	"github.com/encblk/encblk/internal/backing"
	"github.com/encblk/encblk/pkg/nbd"
)

// File is a backing.Plain over a regular file that advertises the Info a
// test gives, not Plain's own, and answers NBD_CMD_CACHE.
type File struct {
	*backing.Plain
	f    *backing.File
	info nbd.Info
}

var (
	_ nbd.Backend       = (*File)(nil)
	_ nbd.BlockStatuser = (*File)(nil)
	_ nbd.Cacher        = (*File)(nil)
)

// OpenFile opens path (read-only when info.ReadOnly) as a Backend that
// advertises info as given; every capability in AllCaps works.
func OpenFile(path string, info nbd.Info) (*File, error) {
	f, err := backing.Open(path, backing.Options{ReadOnly: info.ReadOnly})
	if err != nil {
		return nil, err
	}
	p, err := backing.NewPlain(f)
	if err != nil {
		return nil, errors.Join(err, f.Close())
	}
	return &File{Plain: p, f: f, info: info}, nil
}

// AllCaps is an Info with every capability File has.
func AllCaps() nbd.Info {
	return nbd.Info{
		CanTrim: true, CanZero: true, CanFastZero: true, CanFUA: true,
		CanFlush: true, CanMultiConn: true, CanCache: true,
	}
}

// Close closes the file.
func (b *File) Close() error { return b.f.Close() }

// Info is the Info given to OpenFile.
func (b *File) Info() nbd.Info { return b.info }

// Cache reads the range, which leaves it in the page cache.
func (b *File) Cache(ctx context.Context, off, length int64) error {
	buf := make([]byte, min(length, 1<<20))
	for length > 0 {
		n := min(length, int64(len(buf)))
		if err := b.ReadAt(ctx, buf[:n], off); err != nil {
			return err
		}
		off, length = off+n, length-n
	}
	return nil
}
