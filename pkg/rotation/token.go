package rotation

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"time"

	"github.com/encblk/encblk/pkg/keyring"
)

// TokenType is the LUKS2 token type of a rotation record.
const TokenType = "encblk-rotation"

// ErrPolicy is wrapped by the errors of an invalid policy.
var ErrPolicy = errors.New("invalid rotation policy")

// Policy says how often a volume's KEK and DEK are rotated, and where a
// new KEK comes from.
type Policy struct {
	// KEKEvery is the KEK rotation period (0: off). A KEK rotation needs
	// a KEK source: KeyDir or KMIPConfig.
	KEKEvery Period `json:"kek_every,omitzero"`
	// ReencryptEvery is the DEK rotation (reencryption) period (0: off).
	ReencryptEvery Period `json:"reencrypt_every,omitzero"`
	// KeyDir is a directory (absolute path) of key files: the keyslot
	// that one of the volume's key files there opens is the one a KEK
	// rotation replaces, by a new key file written beside it (see KeyDir).
	KeyDir string `json:"kek_key_dir,omitempty"`
	// KMIPConfig is a KMIP client configuration (absolute path): a KEK
	// rotation moves the volume's KMIP keyslot to a new key on the server.
	KMIPConfig string `json:"kek_kmip,omitempty"`
}

// Check reports what is wrong with p, in one line wrapping ErrPolicy.
func (p Policy) Check() error {
	for _, per := range []Period{p.KEKEvery, p.ReencryptEvery} {
		if per != 0 && (per < MinPeriod || per > MaxPeriod) {
			return fmt.Errorf("%w: period %s is outside 7d..70y", ErrPolicy, per)
		}
	}
	switch {
	case p.KeyDir != "" && p.KMIPConfig != "":
		return fmt.Errorf("%w: name one KEK source, a key directory or a KMIP configuration", ErrPolicy)
	case p.KEKEvery != 0 && p.KeyDir == "" && p.KMIPConfig == "":
		return fmt.Errorf("%w: a KEK rotation period needs a KEK source (a key directory or a KMIP configuration)", ErrPolicy)
	case p.KeyDir != "" && !filepath.IsAbs(p.KeyDir), p.KMIPConfig != "" && !filepath.IsAbs(p.KMIPConfig):
		return fmt.Errorf("%w: the KEK source must be an absolute path (the server reads it)", ErrPolicy)
	}
	return nil
}

// Record is what the volume's rotation token holds: the policy and when
// each rotation was last done and the policy set.
type Record struct {
	Policy
	// LastKEK is the last KEK rotation (encblk rotate, encblk kmip rotate,
	// or the policy's). Its JSON name is the one earlier encblk versions
	// wrote.
	LastKEK time.Time `json:"time,omitzero"`
	// LastReencrypt is when the last reencryption finished.
	LastReencrypt time.Time `json:"reencrypt_time,omitzero"`
	// KEKSince and ReencryptSince are when the periods were set: a period
	// counts from the later of this and the last rotation.
	KEKSince       time.Time `json:"kek_since,omitzero"`
	ReencryptSince time.Time `json:"reencrypt_since,omitzero"`
	// VolumeKey is the volume key's ID (keyring.VolumeKeyID) when the
	// record was last written: a different ID in the header means that
	// another tool (cryptsetup reencrypt) replaced the volume key since.
	VolumeKey string `json:"volume_key_id,omitempty"`
	// ReencryptObserved says that LastReencrypt is when encblk noticed
	// such a reencryption, not when it finished (encblk did not do it).
	ReencryptObserved bool `json:"reencrypt_observed,omitempty"`
	// RevokePending are KMIP keys that a KEK rotation replaced and whose
	// revocation on the key server failed: the server retries it.
	RevokePending []RetiredKey `json:"kmip_revoke_pending,omitempty"`
}

// RetiredKey is a KMIP key a KEK rotation replaced: its UID and the
// servers the keyslot's token named.
type RetiredKey struct {
	UID     string   `json:"uid"`
	Servers []string `json:"servers,omitempty"`
}

// IsZero reports whether r is the zero record (no token).
func (r Record) IsZero() bool {
	c := r
	c.RevokePending = nil
	return len(r.RevokePending) == 0 && reflect.DeepEqual(c, Record{})
}

type token struct {
	Type     string   `json:"type"`
	Keyslots []string `json:"keyslots"`
	Record
}

// ParseToken reads a rotation token's JSON.
func ParseToken(raw []byte) (Record, error) {
	var t token
	if err := json.Unmarshal(raw, &t); err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrPolicy, err)
	}
	if t.Type != TokenType {
		return Record{}, fmt.Errorf("%w: token type %q", ErrPolicy, t.Type)
	}
	if err := t.Policy.Check(); err != nil {
		return Record{}, err
	}
	return t.Record, nil
}

// Token is r as a token's JSON.
func (r Record) Token() json.RawMessage {
	b, _ := json.Marshal(token{Type: TokenType, Keyslots: []string{}, Record: r})
	return b
}

// Load reads the volume's rotation record (zero if it has none). Of
// several tokens (another tool's copy) the one with the latest KEK
// rotation wins; a token that does not parse is reported.
func Load(kr *keyring.Keyring) (Record, error) {
	var (
		best  Record
		found bool
		bad   error
	)
	for _, t := range kr.Tokens() {
		if t.Type != TokenType || len(t.Keyslots) != 0 {
			continue
		}
		r, err := ParseToken(t.Raw)
		if err != nil {
			bad = fmt.Errorf("token %d: %w", t.ID, err)
			continue
		}
		if !found || r.LastKEK.After(best.LastKEK) {
			best, found = r, true
		}
	}
	if !found && bad != nil {
		return Record{}, bad
	}
	return best, nil
}

// Save makes r the volume's rotation record (one header commit); a zero
// record removes it.
func Save(kr *keyring.Keyring, r Record) error {
	if r.IsZero() {
		return kr.SetUnboundToken(TokenType, nil)
	}
	if err := r.Policy.Check(); err != nil {
		return err
	}
	return kr.SetUnboundToken(TokenType, r.Token())
}

// Observe brings r, a record of kr's volume, up to date at now with a
// reencryption that another tool did: if the header's volume key is not
// the one r recorded, the volume was reencrypted since (encblk records
// its own reencryptions as they finish), so r's last reencryption becomes
// now, marked as observed, and the next one counts from it. A record that
// names no volume key yet gets the current one. It reports whether r
// changed; a zero record, and a volume whose reencryption is still
// recorded (not finished), are left alone.
func (r Record) Observe(kr *keyring.Keyring, now time.Time) (Record, bool) {
	id := kr.VolumeKeyID()
	if r.IsZero() || id == "" || id == r.VolumeKey {
		return r, false
	}
	if rr, _ := kr.Reencryption(); rr != nil {
		return r, false
	}
	if r.VolumeKey != "" {
		r.LastReencrypt, r.ReencryptObserved = now.UTC().Truncate(time.Second), true
	}
	r.VolumeKey = id
	return r, true
}

// LoadAt is Load, then Observe at now: the record as it should be; changed
// says that it differs from the header's (Save it to record that).
func LoadAt(kr *keyring.Keyring, now time.Time) (r Record, changed bool, err error) {
	r, err = Load(kr)
	if err != nil {
		return r, false, err
	}
	r, changed = r.Observe(kr, now)
	return r, changed, nil
}

// Update loads the record, observes at now a reencryption another tool
// did (Observe), lets edit change it and saves it.
func Update(kr *keyring.Keyring, now time.Time, edit func(*Record)) (Record, error) {
	r, err := Load(kr)
	if err != nil && !errors.Is(err, ErrPolicy) {
		return Record{}, err
	}
	r, _ = r.Observe(kr, now)
	edit(&r)
	if !r.IsZero() && r.VolumeKey == "" {
		r.VolumeKey = kr.VolumeKeyID()
	}
	return r, Save(kr, r)
}

// SetPolicy sets the parts of the policy that p names, as of now: a
// period given (non-zero, or off when set names it) replaces the current
// one and starts counting now. clear drops the whole policy (the last
// rotation times stay).
func SetPolicy(kr *keyring.Keyring, p Policy, set Fields, now time.Time) (Record, error) {
	now = now.UTC().Truncate(time.Second)
	return Update(kr, now, func(r *Record) {
		if set.KEKEvery {
			r.KEKEvery, r.KEKSince = p.KEKEvery, now
		}
		if set.ReencryptEvery {
			r.ReencryptEvery, r.ReencryptSince = p.ReencryptEvery, now
		}
		if set.Source {
			r.KeyDir, r.KMIPConfig = p.KeyDir, p.KMIPConfig
		}
		if r.KEKEvery == 0 {
			r.KEKSince = time.Time{}
		}
		if r.ReencryptEvery == 0 {
			r.ReencryptSince = time.Time{}
		}
	})
}

// Fields says which parts of a Policy SetPolicy changes.
type Fields struct {
	KEKEvery, ReencryptEvery, Source bool
}

// All is every field: the policy replaces the current one.
var All = Fields{true, true, true}

// NextKEK is when the next KEK rotation is due (zero: no period).
func (r Record) NextKEK() time.Time { return next(r.KEKEvery, r.LastKEK, r.KEKSince) }

// NextReencrypt is when the next reencryption is due (zero: no period).
func (r Record) NextReencrypt() time.Time {
	return next(r.ReencryptEvery, r.LastReencrypt, r.ReencryptSince)
}

func next(every Period, last, since time.Time) time.Time {
	if every == 0 {
		return time.Time{}
	}
	if since.After(last) {
		last = since
	}
	return last.Add(time.Duration(every))
}

// Due reports whether t (a NextKEK or NextReencrypt) has come at now.
func Due(t, now time.Time) bool { return !t.IsZero() && !now.Before(t) }

// RecordKEK records a KEK rotation at now (to the second) and returns
// the time recorded.
func RecordKEK(kr *keyring.Keyring, now time.Time) (time.Time, error) {
	now = now.UTC().Truncate(time.Second)
	_, err := Update(kr, now, func(r *Record) { r.LastKEK = now })
	return now, err
}

// RecordReencrypt records that a reencryption (encblk's) finished at now,
// with the volume key it left.
func RecordReencrypt(kr *keyring.Keyring, now time.Time) error {
	_, err := Update(kr, now, func(r *Record) {
		r.LastReencrypt, r.ReencryptObserved = now.UTC().Truncate(time.Second), false
		r.VolumeKey = kr.VolumeKeyID()
	})
	return err
}
