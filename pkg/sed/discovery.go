package sed

import (
	"encoding/binary"
	"fmt"
)

// Level 0 Discovery (Core 2.01 section 3.3.6; Opal SSC 2.01 section 3.1.1)
// is an IF-RECV on security protocol 1, ComID 0x0001. The response is a
// 48-byte header followed by feature descriptors:
//
//	header  0 Length of parameter data (4, excludes this field)
//	        4 Data structure revision (4)
//	        8 Reserved (8)
//	        16 Vendor specific (32)
//	feature 0 Feature code (2)
//	        2 Version (high nibble)
//	        3 Length of the data that follows (1)
//	        4 Feature-specific data

// Feature codes.
const (
	FeatureTPer           = 0x0001
	FeatureLocking        = 0x0002
	FeatureGeometry       = 0x0003
	FeatureSecureMsg      = 0x0004
	FeatureEnterprise     = 0x0100
	FeatureOpalV1         = 0x0200
	FeatureSingleUser     = 0x0201
	FeatureDataStore      = 0x0202
	FeatureOpalV2         = 0x0203
	FeatureOpalite        = 0x0301
	FeaturePyriteV1       = 0x0302
	FeaturePyriteV2       = 0x0303
	FeatureRuby           = 0x0304
	FeatureKeyPerIO       = 0x0305
	FeatureBlockSID       = 0x0402
	FeatureNamespaceLock  = 0x0403
	FeatureDataRemoval    = 0x0404
	FeatureNamespaceGeom  = 0x0405
	discoveryHeaderLen    = 48
	featureHeaderLen      = 4
	maxDiscoveryLen       = 1 << 16
	maxDiscoveryFeatures  = 256
	discoveryComID        = 0x0001
	defaultDiscoveryBytes = 2048
)

// Discovery is a parsed Level 0 Discovery response. Each known feature
// is a pointer, nil when the device did not report it; every descriptor,
// known or not, is also kept raw in Features in the order received.
type Discovery struct {
	Revision     uint32 `json:"revision"`
	VendorUnique []byte `json:"vendor_unique,omitempty"`

	TPer        *TPerFeature        `json:"tper,omitempty"`
	Locking     *LockingFeature     `json:"locking,omitempty"`
	Geometry    *GeometryFeature    `json:"geometry,omitempty"`
	Enterprise  *EnterpriseFeature  `json:"enterprise,omitempty"`
	OpalV1      *OpalV1Feature      `json:"opal_v1,omitempty"`
	SingleUser  *SingleUserFeature  `json:"single_user,omitempty"`
	DataStore   *DataStoreFeature   `json:"datastore,omitempty"`
	OpalV2      *SSCV2Feature       `json:"opal_v2,omitempty"`
	Opalite     *PyriteFeature      `json:"opalite,omitempty"`
	PyriteV1    *PyriteFeature      `json:"pyrite_v1,omitempty"`
	PyriteV2    *PyriteFeature      `json:"pyrite_v2,omitempty"`
	Ruby        *SSCV2Feature       `json:"ruby,omitempty"`
	BlockSID    *BlockSIDFeature    `json:"block_sid,omitempty"`
	DataRemoval *DataRemovalFeature `json:"data_removal,omitempty"`

	Features []RawFeature `json:"features"`
}

// RawFeature is one feature descriptor as received.
type RawFeature struct {
	Code    uint16 `json:"code"`
	Version uint8  `json:"version"`
	Data    []byte `json:"data"`
}

// TPerFeature (0x0001) says how the TPer communicates.
type TPerFeature struct {
	Version          uint8 `json:"version"`
	Sync             bool  `json:"sync"`
	Async            bool  `json:"async"`
	AckNak           bool  `json:"ack_nak"`
	BufferManagement bool  `json:"buffer_management"`
	Streaming        bool  `json:"streaming"`
	ComIDManagement  bool  `json:"comid_management"`
}

// LockingFeature (0x0002) reports the locking state of the device.
type LockingFeature struct {
	Version                  uint8 `json:"version"`
	LockingSupported         bool  `json:"locking_supported"`
	LockingEnabled           bool  `json:"locking_enabled"`
	Locked                   bool  `json:"locked"`
	MediaEncryption          bool  `json:"media_encryption"`
	MBREnabled               bool  `json:"mbr_enabled"`
	MBRDone                  bool  `json:"mbr_done"`
	MBRShadowingNotSupported bool  `json:"mbr_shadowing_not_supported"`
	HWResetLORDOR            bool  `json:"hw_reset_lor_dor_supported"`
}

// GeometryFeature (0x0003) gives the alignment locking ranges must follow.
type GeometryFeature struct {
	Version              uint8  `json:"version"`
	Align                bool   `json:"align"`
	LogicalBlockSize     uint32 `json:"logical_block_size"`
	AlignmentGranularity uint64 `json:"alignment_granularity"`
	LowestAlignedLBA     uint64 `json:"lowest_aligned_lba"`
}

// EnterpriseFeature (0x0100) marks an Enterprise SSC device.
type EnterpriseFeature struct {
	Version       uint8  `json:"version"`
	BaseComID     uint16 `json:"base_comid"`
	NumComIDs     uint16 `json:"num_comids"`
	RangeCrossing bool   `json:"range_crossing"`
}

// OpalV1Feature (0x0200) marks an Opal SSC 1.0 device.
type OpalV1Feature struct {
	Version   uint8  `json:"version"`
	BaseComID uint16 `json:"base_comid"`
	NumComIDs uint16 `json:"num_comids"`
}

// SingleUserFeature (0x0201) describes Single User Mode.
type SingleUserFeature struct {
	Version        uint8  `json:"version"`
	LockingObjects uint32 `json:"locking_objects"`
	Any            bool   `json:"any"`
	All            bool   `json:"all"`
	Policy         bool   `json:"policy"`
}

// DataStoreFeature (0x0202) describes the additional DataStore tables.
type DataStoreFeature struct {
	Version       uint8  `json:"version"`
	MaxTables     uint16 `json:"max_tables"`
	MaxTotalSize  uint32 `json:"max_total_size"`
	SizeAlignment uint32 `json:"size_alignment"`
}

// SSCV2Feature is the descriptor of Opal SSC 2 (0x0203) and Ruby (0x0304).
type SSCV2Feature struct {
	Version       uint8  `json:"version"`
	BaseComID     uint16 `json:"base_comid"`
	NumComIDs     uint16 `json:"num_comids"`
	RangeCrossing bool   `json:"range_crossing"`
	NumAdmins     uint16 `json:"num_locking_admins"`
	NumUsers      uint16 `json:"num_locking_users"`
	InitialPIN    uint8  `json:"initial_pin_indicator"`
	RevertedPIN   uint8  `json:"reverted_pin_indicator"`
}

// PyriteFeature is the descriptor of Opalite (0x0301) and Pyrite 1 and 2
// (0x0302, 0x0303): SSCs without media encryption, or only its locking.
type PyriteFeature struct {
	Version     uint8  `json:"version"`
	BaseComID   uint16 `json:"base_comid"`
	NumComIDs   uint16 `json:"num_comids"`
	InitialPIN  uint8  `json:"initial_pin_indicator"`
	RevertedPIN uint8  `json:"reverted_pin_indicator"`
}

// BlockSIDFeature (0x0402) reports the Block SID Authentication state.
type BlockSIDFeature struct {
	Version       uint8 `json:"version"`
	SIDValueState bool  `json:"sid_value_state"`
	SIDBlocked    bool  `json:"sid_blocked"`
	HardwareReset bool  `json:"hardware_reset"`
}

// DataRemovalFeature (0x0404) lists the supported data removal mechanisms
// (bit 0 overwrite, 1 block erase, 2 crypto erase, 5 vendor specific) and
// how long each takes (in units of 2 seconds or 2 minutes per the format
// bit).
type DataRemovalFeature struct {
	Version     uint8     `json:"version"`
	Processing  bool      `json:"processing"`
	Interrupted bool      `json:"interrupted"`
	Mechanisms  uint8     `json:"mechanisms"`
	TimeFormat  uint8     `json:"time_format"`
	Times       [6]uint16 `json:"times"`
}

// SSC names the security subsystem class a device implements.
type SSC string

// The SSCs this package recognises, in the order it prefers them.
const (
	SSCOpalV2     SSC = "Opal 2"
	SSCRuby       SSC = "Ruby"
	SSCOpalV1     SSC = "Opal 1"
	SSCPyriteV2   SSC = "Pyrite 2"
	SSCPyriteV1   SSC = "Pyrite 1"
	SSCOpalite    SSC = "Opalite"
	SSCEnterprise SSC = "Enterprise"
)

// SSC returns the preferred SSC the device reported and the base ComID to
// use for it; ok is false when the device reported no SSC at all.
func (d *Discovery) SSC() (ssc SSC, comID uint16, ok bool) {
	switch {
	case d.OpalV2 != nil:
		return SSCOpalV2, d.OpalV2.BaseComID, true
	case d.Ruby != nil:
		return SSCRuby, d.Ruby.BaseComID, true
	case d.OpalV1 != nil:
		return SSCOpalV1, d.OpalV1.BaseComID, true
	case d.PyriteV2 != nil:
		return SSCPyriteV2, d.PyriteV2.BaseComID, true
	case d.PyriteV1 != nil:
		return SSCPyriteV1, d.PyriteV1.BaseComID, true
	case d.Opalite != nil:
		return SSCOpalite, d.Opalite.BaseComID, true
	case d.Enterprise != nil:
		return SSCEnterprise, d.Enterprise.BaseComID, true
	}
	return "", 0, false
}

// ParseDiscovery decodes a Level 0 Discovery response. Bytes beyond the
// header's length (the rest of the transfer buffer) are ignored; a
// response shorter than its length, or a descriptor that runs past it or
// is too short for its known fields, is an error.
func ParseDiscovery(b []byte) (*Discovery, error) {
	if len(b) < discoveryHeaderLen {
		return nil, fmt.Errorf("%w: discovery response of %d bytes is shorter than its 48-byte header", ErrMalformed, len(b))
	}
	be := binary.BigEndian
	length := uint64(be.Uint32(b[0:]))
	if length+4 < discoveryHeaderLen {
		return nil, fmt.Errorf("%w: discovery length %d is shorter than its header", ErrMalformed, length)
	}
	if length+4 > uint64(len(b)) {
		return nil, fmt.Errorf("%w: discovery length %d exceeds the %d bytes received", ErrMalformed, length, len(b)-4)
	}
	d := &Discovery{Revision: be.Uint32(b[4:]), Features: []RawFeature{}}
	if vu := b[16:48]; !allZero(vu) {
		d.VendorUnique = append([]byte{}, vu...)
	}
	rest := b[discoveryHeaderLen : length+4]
	for len(rest) > 0 {
		if len(d.Features) == maxDiscoveryFeatures {
			return nil, fmt.Errorf("%w: more than %d discovery features", ErrMalformed, maxDiscoveryFeatures)
		}
		if len(rest) < featureHeaderLen {
			return nil, fmt.Errorf("%w: %d trailing discovery bytes are too short for a feature header", ErrMalformed, len(rest))
		}
		f := RawFeature{Code: be.Uint16(rest[0:]), Version: rest[2] >> 4}
		n := int(rest[3])
		if featureHeaderLen+n > len(rest) {
			return nil, fmt.Errorf("%w: feature 0x%04x of %d bytes runs past the discovery data", ErrMalformed, f.Code, n)
		}
		f.Data = append([]byte{}, rest[featureHeaderLen:featureHeaderLen+n]...)
		rest = rest[featureHeaderLen+n:]
		if err := d.decodeFeature(f); err != nil {
			return nil, err
		}
		d.Features = append(d.Features, f)
	}
	return d, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// featureMinLen is the data length (after the 4-byte header) a known
// feature needs for the fields this package reads.
var featureMinLen = map[uint16]int{
	FeatureTPer: 1, FeatureLocking: 1, FeatureGeometry: 28, FeatureEnterprise: 5,
	FeatureOpalV1: 4, FeatureSingleUser: 5, FeatureDataStore: 12, FeatureOpalV2: 11,
	FeatureOpalite: 11, FeaturePyriteV1: 11, FeaturePyriteV2: 11, FeatureRuby: 11,
	FeatureBlockSID: 2, FeatureDataRemoval: 16,
}

func (d *Discovery) decodeFeature(f RawFeature) error {
	min, known := featureMinLen[f.Code]
	if !known {
		return nil
	}
	p := f.Data
	if len(p) < min {
		return fmt.Errorf("%w: feature 0x%04x has %d bytes of data, want at least %d", ErrMalformed, f.Code, len(p), min)
	}
	be := binary.BigEndian
	bit := func(b byte, n uint) bool { return b&(1<<n) != 0 }
	// Offsets below are into the feature data, i.e. the descriptor byte
	// offset minus 4.
	dup := func(set bool) error {
		if set {
			return fmt.Errorf("%w: feature 0x%04x reported twice", ErrMalformed, f.Code)
		}
		return nil
	}
	switch f.Code {
	case FeatureTPer:
		if err := dup(d.TPer != nil); err != nil {
			return err
		}
		d.TPer = &TPerFeature{Version: f.Version, Sync: bit(p[0], 0), Async: bit(p[0], 1), AckNak: bit(p[0], 2),
			BufferManagement: bit(p[0], 3), Streaming: bit(p[0], 4), ComIDManagement: bit(p[0], 6)}
	case FeatureLocking:
		if err := dup(d.Locking != nil); err != nil {
			return err
		}
		d.Locking = &LockingFeature{Version: f.Version, LockingSupported: bit(p[0], 0), LockingEnabled: bit(p[0], 1),
			Locked: bit(p[0], 2), MediaEncryption: bit(p[0], 3), MBREnabled: bit(p[0], 4), MBRDone: bit(p[0], 5),
			MBRShadowingNotSupported: bit(p[0], 6), HWResetLORDOR: bit(p[0], 7)}
	case FeatureGeometry:
		if err := dup(d.Geometry != nil); err != nil {
			return err
		}
		d.Geometry = &GeometryFeature{Version: f.Version, Align: bit(p[0], 0), LogicalBlockSize: be.Uint32(p[8:]),
			AlignmentGranularity: be.Uint64(p[12:]), LowestAlignedLBA: be.Uint64(p[20:])}
	case FeatureEnterprise:
		if err := dup(d.Enterprise != nil); err != nil {
			return err
		}
		d.Enterprise = &EnterpriseFeature{Version: f.Version, BaseComID: be.Uint16(p[0:]), NumComIDs: be.Uint16(p[2:]),
			RangeCrossing: bit(p[4], 0)}
	case FeatureOpalV1:
		if err := dup(d.OpalV1 != nil); err != nil {
			return err
		}
		d.OpalV1 = &OpalV1Feature{Version: f.Version, BaseComID: be.Uint16(p[0:]), NumComIDs: be.Uint16(p[2:])}
	case FeatureSingleUser:
		if err := dup(d.SingleUser != nil); err != nil {
			return err
		}
		d.SingleUser = &SingleUserFeature{Version: f.Version, LockingObjects: be.Uint32(p[0:]),
			Any: bit(p[4], 0), All: bit(p[4], 1), Policy: bit(p[4], 2)}
	case FeatureDataStore:
		if err := dup(d.DataStore != nil); err != nil {
			return err
		}
		d.DataStore = &DataStoreFeature{Version: f.Version, MaxTables: be.Uint16(p[2:]), MaxTotalSize: be.Uint32(p[4:]),
			SizeAlignment: be.Uint32(p[8:])}
	case FeatureOpalV2, FeatureRuby:
		v := &SSCV2Feature{Version: f.Version, BaseComID: be.Uint16(p[0:]), NumComIDs: be.Uint16(p[2:]),
			RangeCrossing: bit(p[4], 0), NumAdmins: be.Uint16(p[5:]), NumUsers: be.Uint16(p[7:]),
			InitialPIN: p[9], RevertedPIN: p[10]}
		target := &d.OpalV2
		if f.Code == FeatureRuby {
			target = &d.Ruby
		}
		if err := dup(*target != nil); err != nil {
			return err
		}
		*target = v
	case FeatureOpalite, FeaturePyriteV1, FeaturePyriteV2:
		v := &PyriteFeature{Version: f.Version, BaseComID: be.Uint16(p[0:]), NumComIDs: be.Uint16(p[2:]),
			InitialPIN: p[9], RevertedPIN: p[10]}
		target := map[uint16]**PyriteFeature{FeatureOpalite: &d.Opalite, FeaturePyriteV1: &d.PyriteV1, FeaturePyriteV2: &d.PyriteV2}[f.Code]
		if err := dup(*target != nil); err != nil {
			return err
		}
		*target = v
	case FeatureBlockSID:
		if err := dup(d.BlockSID != nil); err != nil {
			return err
		}
		d.BlockSID = &BlockSIDFeature{Version: f.Version, SIDValueState: bit(p[0], 0), SIDBlocked: bit(p[0], 1),
			HardwareReset: bit(p[1], 0)}
	case FeatureDataRemoval:
		if err := dup(d.DataRemoval != nil); err != nil {
			return err
		}
		v := &DataRemovalFeature{Version: f.Version, Processing: bit(p[1], 0), Interrupted: bit(p[1], 1),
			Mechanisms: p[2], TimeFormat: p[3]}
		for i := range v.Times {
			v.Times[i] = be.Uint16(p[4+2*i:])
		}
		d.DataRemoval = v
	}
	return nil
}
