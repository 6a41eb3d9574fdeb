package testtcmu

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ConfigfsRoot is where configfs is mounted.
var ConfigfsRoot = "/sys/kernel/config"

// Export describes one TCMU backstore exported to the local kernel through
// tcm_loop.
type Export struct {
	HBA      int    // user_<HBA> in target/core
	Name     string // backstore name
	Config   string // dev_config string (the UIO name's last part)
	Size     int64  // bytes
	WWN      string // tcm_loop target WWN, naa.5001405xxxxxxxxx
	Timeout  int    // cmd_time_out seconds (0: the kernel's default)
	backPath string
	tgtPath  string
}

func writeAttr(path, value string) error {
	if err := os.WriteFile(path, []byte(value), 0); err != nil {
		return fmt.Errorf("testtcmu: write %q to %s: %w", value, path, err)
	}
	return nil
}

// Create makes the backstore (it then has a UIO device for OpenUIO).
func (x *Export) Create() error {
	core := filepath.Join(ConfigfsRoot, "target/core")
	if _, err := os.Stat(core); err != nil {
		return fmt.Errorf("testtcmu: %s: %w (modprobe target_core_user, mount configfs)", core, err)
	}
	x.backPath = filepath.Join(core, fmt.Sprintf("user_%d", x.HBA), x.Name)
	if err := os.MkdirAll(x.backPath, 0o755); err != nil {
		return fmt.Errorf("testtcmu: %w", err)
	}
	if err := writeAttr(filepath.Join(x.backPath, "control"), "dev_config="+x.Config); err != nil {
		return err
	}
	if err := writeAttr(filepath.Join(x.backPath, "control"), fmt.Sprintf("dev_size=%d", x.Size)); err != nil {
		return err
	}
	if x.Timeout > 0 {
		if err := writeAttr(filepath.Join(x.backPath, "attrib/cmd_time_out"), fmt.Sprint(x.Timeout)); err != nil {
			return err
		}
	}
	return writeAttr(filepath.Join(x.backPath, "enable"), "1")
}

// Attach exports the backstore as LUN 0 of a tcm_loop target; the kernel
// then scans it and a /dev/sdX appears. It returns the disk's name.
func (x *Export) Attach(timeout time.Duration) (string, error) {
	loop := filepath.Join(ConfigfsRoot, "target/loopback")
	if err := os.MkdirAll(loop, 0o755); err != nil {
		return "", fmt.Errorf("testtcmu: %w (modprobe tcm_loop)", err)
	}
	x.tgtPath = filepath.Join(loop, x.WWN)
	tpg := filepath.Join(x.tgtPath, "tpgt_1")
	lun := filepath.Join(tpg, "lun/lun_0")
	if err := os.MkdirAll(lun, 0o755); err != nil {
		return "", fmt.Errorf("testtcmu: %w", err)
	}
	// The initiator side's WWN: the target's with its last digit changed.
	ini := x.WWN[:len(x.WWN)-1] + "f"
	if err := writeAttr(filepath.Join(tpg, "nexus"), ini); err != nil {
		return "", err
	}
	if err := os.Symlink(x.backPath, filepath.Join(lun, x.Name)); err != nil {
		return "", fmt.Errorf("testtcmu: %w", err)
	}
	// The disk shows up under the tcm_loop adapter's SCSI host.
	deadline := time.Now().Add(timeout)
	for {
		if name, ok := x.findDisk(); ok {
			return name, nil
		}
		if time.Now().After(deadline) {
			return "", errors.New("testtcmu: no block device appeared for the tcm_loop LUN")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// findDisk looks for a block device whose SCSI device belongs to our
// tcm_loop target (the host's proc name is tcm_loop and the target's WWN
// is in the sysfs path of the tcm_loop adapter).
func (x *Export) findDisk() (string, bool) {
	disks, _ := filepath.Glob("/sys/block/sd*")
	for _, d := range disks {
		real, err := filepath.EvalSymlinks(filepath.Join(d, "device"))
		if err != nil {
			continue
		}
		// .../tcm_loop_0/tcm_loop_adapter_N/hostH/targetH:0:T/H:0:T:0
		host := real
		for host != "/" && !strings.HasPrefix(filepath.Base(host), "host") {
			host = filepath.Dir(host)
		}
		if !strings.Contains(host, "tcm_loop") {
			continue
		}
		addr, err := os.ReadFile(filepath.Join(x.tgtPath, "tpgt_1/address"))
		if err == nil && strings.TrimSpace(string(addr)) != "" {
			// address is "H:C:T"; the disk is H:C:T:0.
			if filepath.Base(real) != strings.TrimSpace(string(addr))+":0" {
				continue
			}
		}
		return filepath.Base(d), true
	}
	return "", false
}

// Remove detaches the LUN and deletes the target and the backstore.
func (x *Export) Remove() error {
	var errs []error
	if x.tgtPath != "" {
		tpg := filepath.Join(x.tgtPath, "tpgt_1")
		lun := filepath.Join(tpg, "lun/lun_0")
		errs = append(errs, ignoreMissing(os.Remove(filepath.Join(lun, x.Name))))
		errs = append(errs, ignoreMissing(os.Remove(lun)))
		// Writing nothing useful to nexus is not possible; rmdir of the
		// TPG drops the nexus.
		errs = append(errs, ignoreMissing(os.Remove(tpg)))
		errs = append(errs, ignoreMissing(os.Remove(x.tgtPath)))
	}
	if x.backPath != "" {
		errs = append(errs, ignoreMissing(os.Remove(x.backPath)))
		errs = append(errs, ignoreMissing(os.Remove(filepath.Dir(x.backPath))))
	}
	return errors.Join(errs...)
}

func ignoreMissing(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
