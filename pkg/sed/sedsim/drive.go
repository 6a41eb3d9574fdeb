// Package sedsim simulates the device side of one TCG Opal 2 self-encrypting
// drive over a backing file, so every Opal operation of package sed can be
// tested end to end without hardware.
//
// It follows the specifications (TCG Storage Architecture Core 2.01, Opal
// SSC 2.01), not the client's assumptions: Level 0 Discovery, Properties,
// one session at a time with HostChallenge authentication, try limits and
// lockout, a session timeout, the Admin SP (SID, MSID, PSID, Activate,
// Revert) and the Locking SP (Admin1-4, User1-8, C_PIN, Locking ranges with
// lock enforcement on the simulated media, ACEs for users, GenKey,
// RevertSP, MBRControl). Media is encrypted with AES-XTS under a per-range
// key (pkg/xts), so GenKey and Revert make old data unreadable, as on a
// real drive. Packets for sessions that do not exist are discarded, as the
// Core Specification requires.
//
// State other than the media lives in memory: a Drive is one power-on of a
// drive whose firmware state is lost when the process exits.
package sedsim

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/encblk/encblk/pkg/sed"
	"github.com/encblk/encblk/pkg/xts"
)

// Options configure a simulated drive. Zero values take the defaults.
type Options struct {
	ComID          uint16        // base ComID (default 0x07FE)
	MSID           []byte        // factory PIN readable by anyone (default random, printable)
	PSID           []byte        // PIN printed on the label (default random, printable)
	TryLimit       uint64        // failed authentications before lockout (default 5)
	SessionTimeout time.Duration // idle time after which a session is closed (default 60s)
	MaxRanges      int           // non-global locking ranges (default 8)
	NoOpal         bool          // report Pyrite 2 instead of Opal 2 and refuse sessions
	StatePath      string        // keep firmware state in this file across processes (testing only)
	Now            func() time.Time
}

// Errors of the simulated media.
var (
	ErrLocked    = errors.New("sedsim: data protection error: locking range is locked")
	ErrRange     = errors.New("sedsim: access beyond the end of the medium")
	ErrAlignment = errors.New("sedsim: access not aligned to 512-byte sectors")
	ErrProtocol  = errors.New("sedsim: invalid field in CDB (security protocol or ComID)")
)

const (
	sectorSize   = 512
	numAdmins    = 4
	numUsers     = 8
	mbrSectors   = 128 // the shadow MBR covers the first 64 KiB
	maxResponse  = 1 << 16
	tperMaxComPk = 2048
)

type cpin struct {
	pin      []byte
	tryLimit uint64
	tries    uint64
	readable bool // PIN column readable by Anybody (C_PIN_MSID only)
}

type lockingRange struct {
	start, length    uint64
	rle, wle, rl, wl bool
	lockOnReset      bool
	key              []byte
	cipher           *xts.Cipher
	rdACE, wrACE     map[sed.UID]bool // users allowed to set ReadLocked / WriteLocked
	getACE           map[sed.UID]bool // users allowed to read RangeStart..ActiveKey
}

type session struct {
	tsn, hsn  uint32
	sp        sed.UID
	authority sed.UID // zero for Anybody
	write     bool
	last      time.Time
	timeout   time.Duration
}

// Drive is one simulated drive. It implements sed.Transport and offers
// sector Read/Write on the simulated media. It is safe for concurrent use.
type Drive struct {
	mu      sync.Mutex
	opt     Options
	f       *os.File
	sectors uint64

	lockingActive bool
	cpins         map[sed.UID]*cpin
	enabled       map[sed.UID]bool // authority Enabled column
	ranges        []*lockingRange  // [0] is the global range
	mbrEnable     bool
	mbrDone       bool

	sess    *session
	nextTSN uint32
	pending []byte // next IF-RECV answer on the ComID

	state savedState // with Options.StatePath
}

// New simulates a factory-fresh drive over the backing file at path, whose
// size (a multiple of 512) is the drive's capacity.
func New(path string, opt Options) (*Drive, error) {
	f, size, err := openBacking(path)
	if err != nil {
		return nil, err
	}
	if opt.ComID == 0 {
		opt.ComID = 0x07FE
	}
	if opt.MSID == nil {
		opt.MSID = randomPrintable(32)
	}
	if opt.PSID == nil {
		opt.PSID = randomPrintable(32)
	}
	if opt.TryLimit == 0 {
		opt.TryLimit = 5
	}
	if opt.SessionTimeout == 0 {
		opt.SessionTimeout = 60 * time.Second
	}
	if opt.MaxRanges == 0 {
		opt.MaxRanges = 8
	}
	if opt.MaxRanges > 255 {
		f.Close()
		return nil, fmt.Errorf("sedsim: at most 255 locking ranges")
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	d := &Drive{opt: opt, f: f, sectors: uint64(size) / sectorSize, nextTSN: 4096, state: savedState{path: opt.StatePath}}
	loaded := false
	if opt.StatePath != "" {
		if loaded, err = d.load(); err != nil {
			f.Close()
			return nil, err
		}
	}
	if !loaded {
		if err := d.factoryReset(); err != nil {
			f.Close()
			return nil, err
		}
		if err := d.save(); err != nil {
			f.Close()
			return nil, err
		}
	}
	return d, nil
}

// Close releases the backing file.
func (d *Drive) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range d.ranges {
		r.cipher.Close()
	}
	return d.f.Close()
}

// MSID returns the drive's MSID, as printed nowhere but readable over the
// protocol; tests use it to check what the host read.
func (d *Drive) MSID() []byte { return append([]byte{}, d.opt.MSID...) }

// PSID returns the PSID printed on the simulated drive's label.
func (d *Drive) PSID() []byte { return append([]byte{}, d.opt.PSID...) }

func randomPrintable(n int) []byte {
	const alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return b
}

// factoryReset puts every table in its Original Factory State (Opal SSC
// 2.01 section 4): SID PIN = MSID, Locking SP Manufactured-Inactive, new
// media keys for every range (the old data is gone).
func (d *Drive) factoryReset() error {
	d.lockingActive = false
	d.cpins = map[sed.UID]*cpin{
		sed.CPINSID:                   {pin: d.opt.MSID, tryLimit: d.opt.TryLimit},
		sed.CPINMSID:                  {pin: d.opt.MSID, readable: true},
		sed.CPINOf(sed.AuthorityPSID): {pin: d.opt.PSID, tryLimit: d.opt.TryLimit},
	}
	d.enabled = map[sed.UID]bool{sed.AuthoritySID: true, sed.AuthorityPSID: true}
	d.mbrEnable, d.mbrDone = false, false
	return d.resetLockingSP(false)
}

// resetLockingSP returns the Locking SP to its factory state (RevertSP).
func (d *Drive) resetLockingSP(keepGlobalKey bool) error {
	for i := 1; i <= numAdmins; i++ {
		d.cpins[sed.CPINOf(sed.Admin(uint8(i)))] = &cpin{tryLimit: d.opt.TryLimit}
		d.enabled[sed.Admin(uint8(i))] = false
	}
	for i := 1; i <= numUsers; i++ {
		d.cpins[sed.CPINOf(sed.User(uint8(i)))] = &cpin{tryLimit: d.opt.TryLimit}
		d.enabled[sed.User(uint8(i))] = false
	}
	old := d.ranges
	d.ranges = make([]*lockingRange, d.opt.MaxRanges+1)
	for i := range d.ranges {
		r := &lockingRange{lockOnReset: true, rdACE: map[sed.UID]bool{}, wrACE: map[sed.UID]bool{}, getACE: map[sed.UID]bool{}}
		if i == 0 && keepGlobalKey && len(old) > 0 {
			r.key, r.cipher = old[0].key, old[0].cipher
			old[0].cipher = nil
		} else if err := r.genKey(); err != nil {
			return err
		}
		d.ranges[i] = r
	}
	for _, r := range old {
		if r.cipher != nil {
			r.cipher.Close()
		}
	}
	d.mbrEnable, d.mbrDone = false, false
	return nil
}

func (r *lockingRange) genKey() error {
	key := make([]byte, 64)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("sedsim: %w", err)
	}
	c, err := xts.New(key)
	if err != nil {
		return fmt.Errorf("sedsim: %w", err)
	}
	if r.cipher != nil {
		r.cipher.Close()
	}
	r.key, r.cipher = key, c
	return nil
}

// PowerCycle simulates a power loss and power-on: sessions end, failed
// authentication counts reset, ranges with LockOnReset lock again and the
// shadow MBR is shown again.
func (d *Drive) PowerCycle() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sess, d.pending = nil, nil
	for _, c := range d.cpins {
		c.tries = 0
	}
	for _, r := range d.ranges {
		if r.lockOnReset {
			r.rl, r.wl = true, true
		}
	}
	d.mbrDone = false
	d.save()
}

// IFRecv implements sed.Transport.
func (d *Drive) IFRecv(ctx context.Context, proto sed.SecurityProtocol, comID uint16, buf []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	clear(buf)
	switch {
	case proto == sed.ProtocolInfo && comID == 0:
		// SPC-4 7.7.1: supported security protocol list.
		list := []byte{0, 0, 0, 0, 0, 0, 0, 3, 0x00, 0x01, 0x02}
		copy(buf, list)
		return nil
	case proto == sed.ProtocolTCG && comID == 0x0001:
		copy(buf, d.discovery())
		return nil
	case proto == sed.ProtocolTCG && comID == d.opt.ComID && !d.opt.NoOpal:
		resp := d.pending
		if resp == nil {
			// Nothing to say: an empty ComPacket.
			binary.BigEndian.PutUint16(buf[4:], d.opt.ComID)
			return nil
		}
		if len(resp) > len(buf) {
			// Core 3.3.10.2: tell the host how big a buffer it needs.
			binary.BigEndian.PutUint16(buf[4:], d.opt.ComID)
			binary.BigEndian.PutUint32(buf[8:], uint32(len(resp)))
			binary.BigEndian.PutUint32(buf[12:], uint32(len(resp)))
			return nil
		}
		copy(buf, resp)
		d.pending = nil
		return nil
	}
	return fmt.Errorf("%w: IF-RECV protocol 0x%02x ComID 0x%04x", ErrProtocol, uint8(proto), comID)
}

// IFSend implements sed.Transport.
func (d *Drive) IFSend(ctx context.Context, proto sed.SecurityProtocol, comID uint16, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if proto != sed.ProtocolTCG || comID != d.opt.ComID || d.opt.NoOpal {
		return fmt.Errorf("%w: IF-SEND protocol 0x%02x ComID 0x%04x", ErrProtocol, uint8(proto), comID)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pending = nil
	cp, err := sed.ParseComPacket(data)
	if err != nil {
		return nil // a TPer discards what it cannot parse
	}
	p, tokens, err := cp.Payload()
	if err != nil {
		return nil
	}
	var reply []byte
	if p.TSN == 0 && p.HSN == 0 {
		reply = d.sessionManager(tokens)
	} else {
		reply = d.inSession(p.TSN, p.HSN, tokens)
	}
	if reply == nil {
		return nil
	}
	out, err := sed.NewComPacket(d.opt.ComID, p.TSN, p.HSN, reply).MarshalBinary()
	if err != nil || len(out) > maxResponse {
		return nil
	}
	d.pending = out
	return d.save()
}

// discovery builds the Level 0 Discovery response from the current state.
func (d *Drive) discovery() []byte {
	feat := func(code uint16, version byte, data []byte) []byte {
		h := []byte{byte(code >> 8), byte(code), version << 4, byte(len(data))}
		return append(h, data...)
	}
	var body []byte
	body = append(body, feat(sed.FeatureTPer, 1, []byte{0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})...)
	var lk byte = 0x01 // locking supported
	if !d.opt.NoOpal {
		lk |= 0x08 // media encryption
	}
	if d.lockingActive {
		lk |= 0x02
		for _, r := range d.ranges {
			if (r.rle && r.rl) || (r.wle && r.wl) {
				lk |= 0x04
			}
		}
	}
	if d.mbrEnable {
		lk |= 0x10
	}
	if d.mbrDone {
		lk |= 0x20
	}
	body = append(body, feat(sed.FeatureLocking, 1, []byte{lk, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})...)
	geo := make([]byte, 28)
	binary.BigEndian.PutUint32(geo[8:], sectorSize)
	binary.BigEndian.PutUint64(geo[12:], 1)
	body = append(body, feat(sed.FeatureGeometry, 1, geo)...)
	ssc := make([]byte, 16)
	binary.BigEndian.PutUint16(ssc[0:], d.opt.ComID)
	binary.BigEndian.PutUint16(ssc[2:], 1)
	if d.opt.NoOpal {
		body = append(body, feat(sed.FeaturePyriteV2, 1, ssc)...)
	} else {
		binary.BigEndian.PutUint16(ssc[5:], numAdmins)
		binary.BigEndian.PutUint16(ssc[7:], numUsers)
		body = append(body, feat(sed.FeatureOpalV2, 1, ssc)...)
	}
	drm := make([]byte, 32)
	drm[2] = 0x04 // cryptographic erase
	body = append(body, feat(sed.FeatureDataRemoval, 1, drm)...)
	hdr := make([]byte, 48)
	binary.BigEndian.PutUint32(hdr[0:], uint32(44+len(body)))
	binary.BigEndian.PutUint32(hdr[4:], 1)
	return append(hdr, body...)
}

// openBacking opens a simulated drive's backing file, whose size (a
// positive multiple of 512) is the drive's capacity.
func openBacking(path string) (*os.File, int64, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("sedsim: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("sedsim: %w", err)
	}
	if st.Size() == 0 || st.Size()%sectorSize != 0 {
		f.Close()
		return nil, 0, fmt.Errorf("sedsim: backing file size %d is not a positive multiple of 512", st.Size())
	}
	return f, st.Size(), nil
}
