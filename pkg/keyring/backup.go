package keyring

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// A header backup is the header area byte for byte: both LUKS2 copies and
// the keyslots area (LUKS1: the header and key material), the same file
// cryptsetup luksHeaderBackup writes and luksHeaderRestore reads. Whoever
// holds a backup and an old KEK that it still lists can open the volume,
// even after the KEK was rotated out: keep backups as safe as the keys.

// Backup writes the header area to w.
func (k *Keyring) Backup(w io.Writer) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	size := int64(k.headerAreaSizeLocked())
	if _, err := io.Copy(w, io.NewSectionReader(k.dev, 0, size)); err != nil {
		return fmt.Errorf("header backup: %w", err)
	}
	return nil
}

func (k *Keyring) headerAreaSizeLocked() uint64 {
	if k.v1 != nil {
		return k.v1.areaSize()
	}
	return 2*k.bin.HdrSize + k.meta.Config.KeyslotsSize
}

// maxBackupSize is the largest header area a backup can hold: two LUKS2
// copies of the largest size and the largest keyslots area.
const maxBackupSize = 2*maxHdrSize + maxKeyslotsSize

// Restore reads a header backup from r to its end and writes it over the
// header of dev (the backing device, or a detached header file), then
// syncs. The backup must be a valid LUKS header with both copies intact.
// If dev already holds a LUKS header, its data offset must be the
// backup's, so the data stays where the header says. Nothing is written
// unless r was read to its end without error and the backup checked out,
// so a reader that authenticates as it goes (an age file) cannot leave a
// half-restored header. dev must be open read-write.
func Restore(dev *os.File, r io.Reader) error {
	data, err := io.ReadAll(io.LimitReader(r, maxBackupSize+1))
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if len(data) > maxBackupSize {
		return fmt.Errorf("%w: header backup is larger than %d bytes, the largest LUKS header area", ErrCorrupt, maxBackupSize)
	}
	b, err := openDevice(backupImage{bytes.NewReader(data)}, true)
	if err != nil {
		return fmt.Errorf("header backup: %w", err)
	}
	if p, s := b.HeaderStatus(); p != nil || s != nil {
		return fmt.Errorf("%w: header backup has a bad copy (primary: %v, secondary: %v); repair the backup first", ErrCorrupt, p, s)
	}
	size := b.HeaderAreaSize()
	if uint64(len(data)) < size {
		return fmt.Errorf("%w: header backup is truncated (%d bytes, its header area is %d)", ErrCorrupt, len(data), size)
	}
	if cur, err := openDevice(dev, true); err == nil {
		if co, bo := segmentOffset(cur), segmentOffset(b); co != bo {
			return fmt.Errorf("the device's data starts at %d, the backup's at %d: refusing to restore a header of another volume", co, bo)
		}
	}
	if _, err := dev.WriteAt(data[:size], 0); err != nil {
		return fmt.Errorf("%w: restore header: %w", ErrIO, err)
	}
	if err := dev.Sync(); err != nil {
		return fmt.Errorf("%w: sync: %w", ErrIO, err)
	}
	return nil
}

// backupImage is a header backup held in memory, opened read-only.
type backupImage struct{ *bytes.Reader }

func (backupImage) WriteAt([]byte, int64) (int, error) { return 0, ErrReadOnly }
func (backupImage) Sync() error                        { return nil }

func segmentOffset(k *Keyring) uint64 {
	if s := k.Segments(); len(s) > 0 {
		return s[0].Offset
	}
	return 0
}
