package xts

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestMeasure(t *testing.T) {
	m, err := Measure(context.Background(), 256, 4096, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if m.Implementation != paths[0].String() || m.KeyBits != 256 || m.SectorSize != 4096 {
		t.Errorf("Measure returned %+v", m)
	}
	if !(m.EncryptMBps > 0 && m.DecryptMBps > 0) {
		t.Errorf("throughput not positive: %+v", m)
	}
	if _, err := Measure(context.Background(), 384, 512, time.Millisecond); !errors.Is(err, ErrKeySize) {
		t.Errorf("384-bit key: %v", err)
	}
	if _, err := Measure(context.Background(), 512, 777, time.Millisecond); !errors.Is(err, ErrSectorSize) {
		t.Errorf("sector size 777: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Measure(ctx, 512, 512, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
}
