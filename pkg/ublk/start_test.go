package ublk

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
)

// TestStartNoDriver: without ublk_drv, Start fails at once with a line
// that names the module.
func TestStartNoDriver(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat(ControlPath); err == nil {
		t.Skipf("%s exists: this kernel has ublk (the test/vm scenarios cover it)", ControlPath)
	}
	_, err := Start(context.Background(), newMem(1<<20, 512), Options{ID: AutoID})
	if !errors.Is(err, ErrNoDriver) || !strings.Contains(err.Error(), "ublk_drv") {
		t.Fatalf("Start: %v, want ErrNoDriver naming ublk_drv", err)
	}
}
