package sed

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// Identify is the part of ATA IDENTIFY DEVICE data (ACS-3 7.12.7) that
// matters for self-encrypting drives.
type Identify struct {
	Serial   string `json:"serial"`
	Firmware string `json:"firmware"`
	Model    string `json:"model"`
	// TrustedComputing: word 48 bit 0, the drive takes TRUSTED SEND/RECEIVE.
	TrustedComputing bool        `json:"trusted_computing"`
	Security         ATASecurity `json:"security"`
}

// ATASecurity is word 128 (security status) plus the erase times.
type ATASecurity struct {
	Supported        bool   `json:"supported"`
	Enabled          bool   `json:"enabled"`
	Locked           bool   `json:"locked"`
	Frozen           bool   `json:"frozen"`
	CountExpired     bool   `json:"count_expired"`
	EnhancedErase    bool   `json:"enhanced_erase_supported"`
	MasterMaximum    bool   `json:"master_password_maximum"`
	MasterIdentifier uint16 `json:"master_password_identifier"`
	EraseMinutes     uint   `json:"erase_minutes"`          // 0: not reported
	EnhancedMinutes  uint   `json:"enhanced_erase_minutes"` // 0: not reported
}

// ParseIdentify decodes 512 bytes of IDENTIFY DEVICE data. When word 255
// carries the A5h signature its checksum must be right.
func ParseIdentify(b []byte) (*Identify, error) {
	if len(b) != 512 {
		return nil, fmt.Errorf("%w: IDENTIFY data of %d bytes, want 512", ErrMalformed, len(b))
	}
	w := func(n int) uint16 { return binary.LittleEndian.Uint16(b[2*n:]) }
	if w(255)&0xFF == 0xA5 {
		var sum byte
		for _, c := range b {
			sum += c
		}
		if sum != 0 {
			return nil, fmt.Errorf("%w: IDENTIFY checksum mismatch", ErrMalformed)
		}
	}
	id := &Identify{
		Serial:   ataString(b[20:40]),
		Firmware: ataString(b[46:54]),
		Model:    ataString(b[54:94]),
	}
	// A word is valid when bit 14 is set and bit 15 clear.
	valid := func(v uint16) bool { return v&0xC000 == 0x4000 }
	id.TrustedComputing = valid(w(48)) && w(48)&1 != 0
	s := w(128)
	id.Security = ATASecurity{
		Supported: s&(1<<0) != 0, Enabled: s&(1<<1) != 0, Locked: s&(1<<2) != 0, Frozen: s&(1<<3) != 0,
		CountExpired: s&(1<<4) != 0, EnhancedErase: s&(1<<5) != 0, MasterMaximum: s&(1<<8) != 0,
		MasterIdentifier: w(92),
		EraseMinutes:     eraseTime(w(89)),
		EnhancedMinutes:  eraseTime(w(90)),
	}
	return id, nil
}

// eraseTime decodes words 89/90: 2-minute units, in bits 14:0 when bit
// 15 is set (ACS-3) or bits 7:0 otherwise; the maximum value means "more
// than" and is returned as such.
func eraseTime(v uint16) uint {
	if v&0x8000 != 0 {
		return uint(v&0x7FFF) * 2
	}
	return uint(v&0xFF) * 2
}

// ataString decodes an ATA string: two characters per word, first in the
// high byte.
func ataString(b []byte) string {
	out := make([]byte, len(b))
	for i := 0; i+1 < len(b); i += 2 {
		out[i], out[i+1] = b[i+1], b[i]
	}
	return strings.TrimSpace(strings.ToValidUTF8(strings.TrimRight(string(out), "\x00"), "?"))
}
