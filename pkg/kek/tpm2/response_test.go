package tpm2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/encblk/encblk/pkg/kek/tpm2/tpm2test"
)

// scriptedTPM answers the commands it is sent with a transcript of
// responses, in order: a TPM that answers whatever it likes.
type scriptedTPM struct{ rsps [][]byte }

func (s *scriptedTPM) Send([]byte) ([]byte, error) {
	if len(s.rsps) == 0 {
		return nil, errors.New("scriptedTPM: no response left")
	}
	r := s.rsps[0]
	s.rsps = s.rsps[1:]
	return r, nil
}

// recordingTPM passes commands to a TPM and keeps its responses.
type recordingTPM struct {
	transport.TPM
	rsps [][]byte
}

func (r *recordingTPM) Send(cmd []byte) ([]byte, error) {
	rsp, err := r.TPM.Send(cmd)
	r.rsps = append(r.rsps, bytes.Clone(rsp))
	return rsp, err
}

// transcript packs responses (each with a 2-byte length) into one fuzz
// input; splitTranscript undoes it.
func transcript(rsps [][]byte) []byte {
	var b []byte
	for _, r := range rsps {
		b = binary.BigEndian.AppendUint16(b, uint16(len(r)))
		b = append(b, r...)
	}
	return b
}

func splitTranscript(b []byte) [][]byte {
	var out [][]byte
	for len(b) >= 2 {
		n := min(int(binary.BigEndian.Uint16(b)), len(b)-2)
		out = append(out, b[2:2+n])
		b = b[2+n:]
	}
	return out
}

// FuzzTPMResponses: whatever a TPM answers (a software TPM's socket is any
// process's), sealing and unsealing end with an error or a result, never
// a panic. The seeds are swtpm's answers to a real seal and unseal.
func FuzzTPMResponses(f *testing.F) {
	tok, err := ParseToken([]byte(systemdToken))
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte{}, false)
	f.Add(transcript([][]byte{{0x80, 0x01, 0, 0, 0, 10, 0, 0, 0, 0}}), true)
	dev := tpm2test.Start(f)
	for _, sealing := range []bool{true, false} {
		t, err := open(f.Context(), dev)
		if err != nil {
			f.Fatal(err)
		}
		rec := &recordingTPM{TPM: t}
		if sealing {
			_, err = seal(rec, []int{7}, []byte("pin"), make([]byte, secretLen))
		} else {
			_, err = unseal(rec, tok, nil) // another TPM's object: refused
		}
		t.Close()
		if sealing && err != nil {
			f.Fatal(err)
		}
		f.Add(transcript(rec.rsps), sealing)
	}
	f.Fuzz(func(t *testing.T, rsps []byte, sealing bool) {
		tpm := &scriptedTPM{splitTranscript(rsps)}
		if sealing {
			seal(tpm, []int{7}, []byte("pin"), make([]byte, secretLen))
		} else {
			unseal(tpm, tok, nil)
		}
	})
}
