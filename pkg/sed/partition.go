package sed

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Partition is where a partition lies on its disk. Locking ranges are
// per disk, so a LUKS2 hw-opal volume on a partition gets a range that
// starts at the partition's offset plus the data offset, as cryptsetup
// does.
type Partition struct {
	Disk  string // whole-disk name, e.g. "sda"
	Start uint64 // bytes from the start of the disk
	Size  uint64 // bytes
}

// Partition returns where the partition at path lies on its disk, from
// sysfs "start" and "size" (in 512-byte units whatever the disk's block
// size), or nil when path is a whole disk.
func (s Sysfs) Partition(path string) (*Partition, error) {
	name, disk, err := s.lookup(path)
	if err != nil {
		return nil, err
	}
	if name == disk {
		return nil, nil
	}
	dir := filepath.Join(s.Root, "class", "block", name)
	var v [2]uint64
	for i, f := range []string{"start", "size"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err == nil {
			v[i], err = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		}
		if err == nil && v[i] > (1<<64-1)/512 {
			err = strconv.ErrRange
		}
		if err != nil {
			return nil, fmt.Errorf("sed: partition %s: sysfs %s: %w", name, f, err)
		}
	}
	return &Partition{Disk: disk, Start: v[0] * 512, Size: v[1] * 512}, nil
}
