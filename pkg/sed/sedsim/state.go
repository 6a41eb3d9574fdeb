package sedsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/encblk/encblk/pkg/sed"
	"github.com/encblk/encblk/pkg/xts"
)

// With Options.StatePath set, the drive's firmware state (PINs, try
// counts, ranges, media keys, MBR flags) is kept in a JSON file next to the
// medium, so that separate processes (CLI invocations in tests and demos)
// talk to the same drive. The file holds the simulated drive's secrets in
// clear: it is for testing only, written 0600, replaced atomically, and
// only when a command changed the state.

type stateFile struct {
	MSID, PSID    []byte
	LockingActive bool
	CPINs         map[string]cpinState
	Enabled       map[string]bool
	Ranges        []rangeState
	MBREnable     bool
	MBRDone       bool
	NextTSN       uint32
}

type cpinState struct {
	PIN      []byte
	TryLimit uint64
	Tries    uint64
	Readable bool
}

type rangeState struct {
	Start, Length    uint64
	RLE, WLE, RL, WL bool
	LockOnReset      bool
	Key              []byte
	RdACE, WrACE     []string
	GetACE           []string `json:",omitempty"`
}

func uidKey(u sed.UID) string { return fmt.Sprintf("%016x", u.Uint64()) }

func parseUIDKey(s string) (sed.UID, error) {
	var v uint64
	if _, err := fmt.Sscanf(s, "%016x", &v); err != nil {
		return sed.UID{}, fmt.Errorf("sedsim: state: bad UID %q", s)
	}
	var u sed.UID
	for i := 7; i >= 0; i-- {
		u[i] = byte(v)
		v >>= 8
	}
	return u, nil
}

func aceList(m map[sed.UID]bool) []string {
	var out []string
	for u, ok := range m {
		if ok {
			out = append(out, uidKey(u))
		}
	}
	sort.Strings(out)
	return out
}

// save writes the state file; the caller holds d.mu.
func (d *Drive) save() error {
	if d.opt.StatePath == "" {
		return nil
	}
	st := stateFile{MSID: d.opt.MSID, PSID: d.opt.PSID, LockingActive: d.lockingActive,
		CPINs: map[string]cpinState{}, Enabled: map[string]bool{}, MBREnable: d.mbrEnable, MBRDone: d.mbrDone, NextTSN: d.nextTSN}
	for u, c := range d.cpins {
		st.CPINs[uidKey(u)] = cpinState{PIN: c.pin, TryLimit: c.tryLimit, Tries: c.tries, Readable: c.readable}
	}
	for u, e := range d.enabled {
		st.Enabled[uidKey(u)] = e
	}
	for _, r := range d.ranges {
		st.Ranges = append(st.Ranges, rangeState{Start: r.start, Length: r.length, RLE: r.rle, WLE: r.wle, RL: r.rl, WL: r.wl,
			LockOnReset: r.lockOnReset, Key: r.key, RdACE: aceList(r.rdACE), WrACE: aceList(r.wrACE), GetACE: aceList(r.getACE)})
	}
	return d.state.write(st)
}

// savedState is a state file and its content as this process last wrote
// or read it. A command that leaves the state as it was (a read, Level 0
// Discovery, IDENTIFY) writes nothing: no rename, no fsync, and no stale
// copy over what another process saved meanwhile.
type savedState struct {
	path string
	last []byte
}

// write replaces the state file with v in JSON, atomically, unless that
// is what it holds already.
func (s *savedState) write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("sedsim: state: %w", err)
	}
	if bytes.Equal(b, s.last) {
		return nil
	}
	if err := writeFileAtomic(s.path, b); err != nil {
		return err
	}
	s.last = b
	return nil
}

// writeFileAtomic replaces the file at path with b: a temporary file,
// fsynced, renamed over it.
func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".sedsim-*")
	if err != nil {
		return fmt.Errorf("sedsim: state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("sedsim: state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sedsim: state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("sedsim: state: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("sedsim: state: %w", err)
	}
	return nil
}

// load reads the state file if it exists; ok is false when there is none.
func (d *Drive) load() (ok bool, err error) {
	b, err := os.ReadFile(d.opt.StatePath)
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("sedsim: state: %w", err)
	}
	var st stateFile
	if err := json.Unmarshal(b, &st); err != nil {
		return false, fmt.Errorf("sedsim: state %s: %w", d.opt.StatePath, err)
	}
	d.state.last = b
	if len(st.Ranges) == 0 || len(st.Ranges) > 256 || len(st.MSID) == 0 {
		return false, fmt.Errorf("sedsim: state %s: incomplete", d.opt.StatePath)
	}
	d.opt.MSID, d.opt.PSID, d.opt.MaxRanges = st.MSID, st.PSID, len(st.Ranges)-1
	d.lockingActive, d.mbrEnable, d.mbrDone, d.nextTSN = st.LockingActive, st.MBREnable, st.MBRDone, st.NextTSN
	d.cpins, d.enabled = map[sed.UID]*cpin{}, map[sed.UID]bool{}
	for k, c := range st.CPINs {
		u, err := parseUIDKey(k)
		if err != nil {
			return false, err
		}
		d.cpins[u] = &cpin{pin: c.PIN, tryLimit: c.TryLimit, tries: c.Tries, readable: c.Readable}
	}
	for k, e := range st.Enabled {
		u, err := parseUIDKey(k)
		if err != nil {
			return false, err
		}
		d.enabled[u] = e
	}
	d.ranges = nil
	for _, rs := range st.Ranges {
		c, err := xts.New(rs.Key)
		if err != nil {
			return false, fmt.Errorf("sedsim: state: %w", err)
		}
		r := &lockingRange{start: rs.Start, length: rs.Length, rle: rs.RLE, wle: rs.WLE, rl: rs.RL, wl: rs.WL,
			lockOnReset: rs.LockOnReset, key: rs.Key, cipher: c, rdACE: map[sed.UID]bool{}, wrACE: map[sed.UID]bool{}, getACE: map[sed.UID]bool{}}
		for _, k := range rs.RdACE {
			u, err := parseUIDKey(k)
			if err != nil {
				return false, err
			}
			r.rdACE[u] = true
		}
		for _, k := range rs.GetACE {
			u, err := parseUIDKey(k)
			if err != nil {
				return false, err
			}
			r.getACE[u] = true
		}
		for _, k := range rs.WrACE {
			u, err := parseUIDKey(k)
			if err != nil {
				return false, err
			}
			r.wrACE[u] = true
		}
		d.ranges = append(d.ranges, r)
	}
	return true, nil
}
