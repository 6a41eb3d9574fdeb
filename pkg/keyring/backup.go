package keyring

import (
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

// Restore writes the header backup at backupPath over the header of dev
// (the backing device, or a detached header file) and syncs. The backup
// must be a valid LUKS header. If dev already holds a LUKS header, its data
// offset must be the backup's, so the data stays where the header says.
// dev must be open read-write.
func Restore(dev *os.File, backupPath string) error {
	b, err := Open(backupPath, &Options{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("header backup %s: %w", backupPath, err)
	}
	defer b.Close()
	if p, s := b.HeaderStatus(); p != nil || s != nil {
		return fmt.Errorf("%w: header backup %s has a bad copy (primary: %v, secondary: %v); repair the backup first", ErrCorrupt, backupPath, p, s)
	}
	if cur, err := openDevice(dev, true); err == nil {
		if co, bo := segmentOffset(cur), segmentOffset(b); co != bo {
			return fmt.Errorf("the device's data starts at %d, the backup's at %d: refusing to restore a header of another volume", co, bo)
		}
	}
	size := int64(b.HeaderAreaSize())
	if _, err := io.Copy(io.NewOffsetWriter(dev, 0), io.NewSectionReader(b.file, 0, size)); err != nil {
		return fmt.Errorf("%w: restore header: %w", ErrIO, err)
	}
	if err := dev.Sync(); err != nil {
		return fmt.Errorf("%w: sync: %w", ErrIO, err)
	}
	return nil
}

func segmentOffset(k *Keyring) uint64 {
	if s := k.Segments(); len(s) > 0 {
		return s[0].Offset
	}
	return 0
}
