package rotation

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Period is a rotation period: at least MinPeriod, at most MaxPeriod, or 0
// (off).
type Period time.Duration

const (
	day  = 24 * time.Hour
	year = 365 * day
	// MinPeriod and MaxPeriod bound a period: a week, and 70 years.
	MinPeriod = Period(7 * day)
	MaxPeriod = Period(70 * year)
)

// ErrPeriod is wrapped by every error of ParsePeriod.
var ErrPeriod = errors.New("invalid rotation period")

// ParsePeriod reads a period: a whole number followed by h (hours), d
// (days), w (weeks) or y (years of 365 days), e.g. 30d, 12w, 1y; "0" or
// "off" is no period.
func ParsePeriod(s string) (Period, error) {
	p, err := parsePeriod(s)
	if err == nil && p != 0 && p < MinPeriod {
		return 0, fmt.Errorf("%w %q: at least 7d", ErrPeriod, s)
	}
	return p, err
}

// parsePeriod is ParsePeriod without the lower bound (Policy.Check says
// what is wrong with a policy's).
func parsePeriod(s string) (Period, error) {
	if s == "0" || s == "off" {
		return 0, nil
	}
	if len(s) < 2 || len(s) > 16 {
		return 0, fmt.Errorf("%w %q: write a number and a unit (h, d, w, y), e.g. 90d or 1y", ErrPeriod, s)
	}
	unit := map[byte]time.Duration{'h': time.Hour, 'd': day, 'w': 7 * day, 'y': year}[s[len(s)-1]]
	n, err := strconv.ParseUint(s[:len(s)-1], 10, 32)
	if unit == 0 || err != nil || strings.HasPrefix(s, "+") {
		return 0, fmt.Errorf("%w %q: write a number and a unit (h, d, w, y), e.g. 90d or 1y", ErrPeriod, s)
	}
	if n > uint64(MaxPeriod)/uint64(unit) {
		return 0, fmt.Errorf("%w %q: at most 70y", ErrPeriod, s)
	}
	return Period(time.Duration(n) * unit), nil
}

// String is the period as ParsePeriod reads it, in the largest unit that
// divides it ("off" for 0).
func (p Period) String() string {
	d := time.Duration(p)
	switch {
	case d == 0:
		return "off"
	case d%year == 0:
		return strconv.FormatInt(int64(d/year), 10) + "y"
	case d%day == 0:
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
}

// MarshalJSON writes the period as its String.
func (p Period) MarshalJSON() ([]byte, error) { return json.Marshal(p.String()) }

// UnmarshalJSON reads what MarshalJSON wrote.
func (p *Period) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("%w: not a string", ErrPeriod)
	}
	v, err := parsePeriod(s)
	if err != nil {
		return err
	}
	*p = v
	return nil
}
