package daemon

import (
	"io"
	"math"
	"os"
	"time"

	"github.com/encblk/encblk/pkg/keyring"
	"github.com/encblk/encblk/pkg/rotation"
	"github.com/encblk/encblk/pkg/ublk"
)

// Status is the answer of GET /v1/status.
type Status struct {
	PID         int            `json:"pid"`
	Connections int64          `json:"connections"` // open NBD connections, all exports
	Volumes     []VolumeStatus `json:"volumes"`
}

// VolumeStatus describes one volume. Served-only fields are zero offline.
type VolumeStatus struct {
	ID      string `json:"id"`
	Backing string `json:"backing"`
	Export  string `json:"export"`
	// State: "unlocked", "locked", "locking", "closed", "plain" (served
	// unencrypted) or "not served".
	State    string `json:"state"`
	ReadOnly bool   `json:"read_only"`
	LockMode string `json:"lock_mode,omitempty"`
	// Ublk is the volume's ublk block device (/dev/ublkbN) when served so.
	Ublk string `json:"ublk,omitempty"`
	// UblkStats counts the requests the ublk device served and what they
	// cost its queues (benchmarks read it).
	UblkStats *ublk.Stats `json:"ublk_stats,omitempty"`
	// UblkOrphans are the volume's ublk devices whose server was killed
	// (offline status only; root).
	UblkOrphans []UblkOrphan `json:"ublk_orphans,omitempty"`

	LUKSVersion int             `json:"luks_version,omitempty"`
	UUID        string          `json:"uuid,omitempty"`
	Cipher      string          `json:"cipher,omitempty"`
	KeyBits     int             `json:"key_bits,omitempty"`
	SectorSize  int             `json:"sector_size,omitempty"`
	Size        int64           `json:"size"`
	DataOffset  int64           `json:"data_offset"`
	Keyslots    []KeyslotStatus `json:"keyslots,omitempty"`
	// Discards: "passed to the backing" (allow-discards: reveals which
	// sectors are unused) or "ignored".
	Discards     string     `json:"discards"`
	LastRotation *time.Time `json:"last_kek_rotation,omitempty"`
	// Rotation is the volume's rotation policy and schedule (nil: it has
	// no encblk-rotation token).
	Rotation *RotationStatus `json:"rotation,omitempty"`

	BytesRead      uint64 `json:"bytes_read"`
	BytesWritten   uint64 `json:"bytes_written"`
	BytesDiscarded uint64 `json:"bytes_discarded"`

	// Opal is the drive's locking range for a hw-opal(-crypt) volume.
	Opal *OpalStatus `json:"opal,omitempty"`

	// Reencryption is the LUKS2 reencryption recorded in the header
	// (encblk's or cryptsetup's), nil when there is none.
	Reencryption *ReencryptionStatus `json:"reencryption,omitempty"`

	// KMIP lists the volume's KMIP keyslots and their keys' state on the
	// key servers. The server never fills it in (it does not talk to key
	// servers); encblk status --json does.
	KMIP []KMIPKeyslotStatus `json:"kmip,omitempty"`
}

// KMIPKeyslotStatus is one KMIP keyslot in VolumeStatus.
type KMIPKeyslotStatus struct {
	Keyslot int      `json:"keyslot"`
	KeyUID  string   `json:"key_uid"`
	Servers []string `json:"servers"`
	// State is the key's KMIP state ("Active", "Deactivated", ...), or
	// "unknown" with Error saying why it could not be read.
	State string `json:"state"`
	Error string `json:"error,omitempty"`
}

// ReencryptionStatus describes a reencryption recorded in the header.
type ReencryptionStatus struct {
	Mode       string  `json:"mode"`      // reencrypt, encrypt or decrypt
	Direction  string  `json:"direction"` // forward or backward
	Resilience string  `json:"resilience"`
	State      string  `json:"state"` // "stopped" (between zones) or "interrupted" (a hot zone to recover)
	Done       uint64  `json:"done_bytes"`
	Total      uint64  `json:"total_bytes"`
	Percent    float64 `json:"percent"`
	// Rate (bytes/s) and ETA (seconds) while the server runs it.
	Rate  float64 `json:"rate_bytes_per_second,omitempty"`
	ETA   float64 `json:"eta_seconds,omitempty"`
	Error string  `json:"error,omitempty"` // why encblk cannot continue it
}

// KeyslotStatus is one keyslot, without anything secret.
type KeyslotStatus struct {
	ID       int    `json:"id"`
	Priority int    `json:"priority"`
	KDF      string `json:"kdf"`
	Tokens   []int  `json:"tokens,omitempty"`
	// TokenDetails name each of Tokens' KEK kind and parameters (a Tang
	// URL, an sss threshold, a KMIP key, TPM2 PCRs); the CLI fills them
	// in from the header, which knows the KEK sources.
	TokenDetails []TokenStatus `json:"token_details,omitempty"`
}

// TokenStatus is one token bound to a keyslot, without anything secret.
type TokenStatus struct {
	ID     int            `json:"id"`
	Type   string         `json:"type"`
	Kind   string         `json:"kind"`
	Params map[string]any `json:"params,omitempty"`
}

// Status describes the served volume.
func (v *Volume) Status() VolumeStatus {
	s := VolumeStatus{ID: v.id, Backing: v.spec.Backing, Export: v.spec.Export, ReadOnly: v.spec.ReadOnly,
		Size: v.dev.Size(), Discards: "passed to the backing"}
	if v.vol == nil {
		s.State = "plain"
		return s
	}
	v.keyMu.Lock()
	describeKeyring(&s, v.kr)
	// Whether the background reencryption runs is asked before the
	// header is read: asked after, a run that finished in between (its
	// last commit not yet seen by the read) would show as stopped short
	// of the end, and encblk reencrypt, polling, would report it failed.
	running := false
	if v.reenc != nil {
		select {
		case <-v.reenc.done:
		default:
			running = true
		}
	}
	s.Reencryption = reencryptionStatus(v.kr, v.spec.Backing)
	if r := s.Reencryption; r != nil && running {
		r.State = "running"
		rate, eta := v.reenc.rate(r.Done, r.Total)
		r.Rate, r.ETA = math.Round(rate), math.Round(eta.Seconds())
	}
	if !v.rotatedAt.IsZero() {
		t := v.rotatedAt
		s.LastRotation = &t
	}
	_, s.Rotation = loadRotationStatus(v.kr, v.clock().Now(), v.blocked, v.lastKEK)
	v.keyMu.Unlock()
	cfg := v.vol.Config()
	s.State = v.vol.State().String()
	s.LockMode = cfg.LockMode.String()
	if cfg.LockMode == 0 && cfg.LockTimeout > 0 {
		s.LockMode += " " + cfg.LockTimeout.String()
	}
	st := v.vol.Stats()
	s.BytesRead, s.BytesWritten, s.BytesDiscarded = st.BytesRead, st.BytesWritten, st.BytesDiscarded
	return s
}

// OfflineStatus describes a volume that no process serves, from its header.
func OfflineStatus(path string) (VolumeStatus, error) {
	kr, err := keyring.Open(path, &keyring.Options{ReadOnly: true})
	if err != nil {
		return VolumeStatus{}, err
	}
	defer kr.Close()
	return HeaderStatus(path, kr)
}

// HeaderStatus is OfflineStatus from kr, the header of the backing at path
// that the caller has opened.
func HeaderStatus(path string, kr *keyring.Keyring) (VolumeStatus, error) {
	id, err := VolumeID(path)
	if err != nil {
		return VolumeStatus{}, err
	}
	s := VolumeStatus{ID: id, Backing: path, State: "not served"}
	describeKeyring(&s, kr)
	s.UblkOrphans = ublkOrphans(kr.UUID())
	s.Reencryption = reencryptionStatus(kr, path)
	var rec rotation.Record
	if rec, s.Rotation = loadRotationStatus(kr, time.Now(), [2]string{}, nil); !rec.LastKEK.IsZero() {
		s.LastRotation = &rec.LastKEK
	}
	return s, nil
}

// describeKeyring fills in what the header says.
func describeKeyring(s *VolumeStatus, kr *keyring.Keyring) {
	s.LUKSVersion = kr.Version()
	s.UUID = kr.UUID()
	s.KeyBits = kr.KeyBits()
	if seg, err := kr.DataSegment(); err == nil || seg.Encryption != "" {
		s.Cipher = seg.Encryption
		s.SectorSize = seg.SectorSize
		s.DataOffset = int64(seg.Offset)
		if !seg.Dynamic {
			s.Size = int64(seg.Size)
		}
	}
	s.Discards = "ignored"
	if kr.AllowDiscards() {
		s.Discards = "passed to the backing"
	}
	s.Keyslots = nil
	for _, ks := range kr.Keyslots() {
		k := KeyslotStatus{ID: ks.ID, Priority: ks.Priority, KDF: ks.KDF.String()}
		if ks.Type != "luks2" {
			k.KDF = ks.Type + " (opens nothing)"
		}
		for _, t := range ks.Tokens {
			k.Tokens = append(k.Tokens, t.ID)
		}
		s.Keyslots = append(s.Keyslots, k)
	}
}

// state is Status().State without the rest of the status (no keyring walk).
func (v *Volume) state() string {
	if v.vol == nil {
		return "plain"
	}
	return v.vol.State().String()
}

// reencryptionStatus reads the reencryption recorded in kr, whose data
// device is the backing at path.
func reencryptionStatus(kr *keyring.Keyring, path string) *ReencryptionStatus {
	r, err := kr.Reencryption()
	if r == nil && err == nil {
		return nil
	}
	if r == nil {
		return &ReencryptionStatus{Error: err.Error()}
	}
	st := &ReencryptionStatus{Mode: r.Mode, Direction: r.Direction, Resilience: r.Resilience, State: "stopped"}
	if r.Crashed() {
		st.State = "interrupted"
	}
	if f, err := os.Open(path); err == nil {
		if end, err := f.Seek(0, io.SeekEnd); err == nil {
			st.Done, st.Total = kr.ReencryptProgress(r, uint64(end))
		}
		f.Close()
	}
	if st.Total > 0 {
		st.Percent = math.Round(1000*float64(st.Done)/float64(st.Total)) / 10
	}
	return st
}
