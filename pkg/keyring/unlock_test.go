package keyring

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// scriptedIdentity answers per keyslot as told: a secret, not mine,
// unavailable, or a fatal error; it records which keyslots it was asked.
type scriptedIdentity struct {
	secrets map[int]*Secret
	answer  map[int]error
	asked   []int
}

func (s *scriptedIdentity) Unwrap(ctx context.Context, ks *Keyslot) (*Secret, error) {
	if ks == nil {
		return nil, errors.New("no keyslot")
	}
	s.asked = append(s.asked, ks.ID)
	if err, ok := s.answer[ks.ID]; ok {
		return nil, err
	}
	if p, ok := s.secrets[ks.ID]; ok {
		return p.Clone()
	}
	return nil, fmt.Errorf("%w: not mine", ErrNoMatchingKeyslot)
}

// TestUnlockLoopOutcomes: the one unlock loop sorts an Identity's answers
// into not mine (silent), unavailable (next keyslot, reported at the end)
// and fatal (stop).
func TestUnlockLoopOutcomes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := newBacking(t, 17<<20)
	a, b := passphrase(t, "first"), passphrase(t, "second")
	k, dek := formatPath(t, path, a, &FormatOptions{KDF: fastKDF})
	buf, err := secmemFrom(dek)
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Destroy()
	if _, err := k.AddKeyslot(ctx, buf, b, &KeyslotOptions{KDF: fastKDF}); err != nil {
		t.Fatal(err)
	}
	down := &UnavailableError{Source: "test", Keyslot: 0, Token: 3, Err: errors.New("server down")}

	t.Run("unavailable then opens", func(t *testing.T) {
		id := &scriptedIdentity{secrets: map[int]*Secret{1: b}, answer: map[int]error{0: down}}
		slot, got, err := k.Match(ctx, id)
		if err != nil || slot != 1 {
			t.Fatalf("Match = %d, %v", slot, err)
		}
		got.Destroy()
	})
	t.Run("unavailable and nothing opens", func(t *testing.T) {
		id := &scriptedIdentity{answer: map[int]error{0: down, 1: fmt.Errorf("tpm: %w", ErrUnavailable)}}
		_, _, err := k.Match(ctx, id)
		var le *LockedError
		if !errors.As(err, &le) || !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNoMatchingKeyslot) || len(le.Reasons) != 2 {
			t.Fatalf("err = %v", err)
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "volume stays locked: keyslot 0 (token 3): server down; keyslot 1: tpm: ") {
			t.Fatalf("message %q", msg)
		}
		if fmt.Sprint(id.asked) != "[0 1]" {
			t.Fatalf("asked keyslots %v", id.asked)
		}
	})
	t.Run("one source names itself", func(t *testing.T) {
		id := &scriptedIdentity{answer: map[int]error{0: down}}
		_, _, err := k.Match(ctx, id)
		if err == nil || !strings.HasPrefix(err.Error(), "test: volume stays locked: keyslot 0 (token 3): server down") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("fatal stops", func(t *testing.T) {
		boom := errors.New("boom")
		id := &scriptedIdentity{secrets: map[int]*Secret{1: b}, answer: map[int]error{0: boom}}
		if _, _, err := k.Match(ctx, id); !errors.Is(err, boom) {
			t.Fatalf("err = %v", err)
		}
		if fmt.Sprint(id.asked) != "[0]" {
			t.Fatalf("asked keyslots %v after a fatal error", id.asked)
		}
	})
	t.Run("not mine and wrong", func(t *testing.T) {
		wrong := passphrase(t, "wrong")
		if _, _, err := k.Match(ctx, &scriptedIdentity{}, wrong); err != ErrNoMatchingKeyslot {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("several identities", func(t *testing.T) {
		wrong := passphrase(t, "wrong")
		slot, got, err := k.Match(ctx, wrong, b)
		if err != nil || slot != 1 {
			t.Fatalf("Match = %d, %v", slot, err)
		}
		got.Destroy()
	})
	t.Run("SecretFor", func(t *testing.T) {
		id := &scriptedIdentity{secrets: map[int]*Secret{1: b}, answer: map[int]error{0: down}}
		slot, s, err := SecretFor(ctx, k, id)
		if err != nil || slot != 1 || !s.Equal(b) {
			t.Fatalf("SecretFor = %d, %v", slot, err)
		}
		s.Destroy()
		slot, s, err = SecretFor(ctx, nil, a)
		if err != nil || slot != -1 || !s.Equal(a) {
			t.Fatalf("SecretFor without a header = %d, %v", slot, err)
		}
		s.Destroy()
		if _, _, err := SecretFor(ctx, nil, id); err == nil {
			t.Fatal("a token identity gave a secret without a keyslot")
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, _, err := k.Match(cctx, a); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
	})
}
