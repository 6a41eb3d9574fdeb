package main

import "testing"

func TestParseSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"1G", 1 << 30}, {"1GiB", 1 << 30}, {"512m", 512 << 20}, {"4096", 4096}, {"2T", 2 << 40}, {"10KB", 10 << 10},
		{"", 0}, {"G", 0}, {"-1G", 0}, {"1.5G", 0}, {"0", 0}, {"99999999999T", 0},
	} {
		got, err := parseSize(c.in)
		if (err != nil) != (c.want == 0) || got != c.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"1G", "1GiB", "512m", "4096", "", "-1", "9223372036854775807", "1e9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseSize(s)
		if err == nil && n <= 0 {
			t.Fatalf("parseSize(%q) = %d without error", s, n)
		}
	})
}
