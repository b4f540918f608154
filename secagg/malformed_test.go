package secagg

import (
	"encoding/binary"
	"errors"
	mrand "math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// mutations returns damaged copies of a valid encoding: everything a decoder must refuse.
func mutations(valid []byte) map[string][]byte {
	clone := func() []byte { return append([]byte(nil), valid...) }
	out := map[string][]byte{
		"nil":            nil,
		"header only":    clone()[:headerSize],
		"truncated":      clone()[:len(valid)-1],
		"one byte extra": append(clone(), 0),
		"half":           clone()[:len(valid)/2],
		"all ones": func() []byte {
			b := clone()
			for i := range b {
				b[i] = 0xff
			}
			return b
		}(),
		"bad magic":      func() []byte { b := clone(); b[0] = 'X'; return b }(),
		"future version": func() []byte { b := clone(); b[4] = 2; return b }(),
		"reserved set":   func() []byte { b := clone(); b[7] = 1; return b }(),
		"other params":   func() []byte { b := clone(); b[8] ^= 1; return b }(),
		"unreduced":      func() []byte { b := clone(); binary.LittleEndian.PutUint64(b[len(b)-8:], ^uint64(0)); return b }(),
		"length changed": func() []byte { b := clone(); binary.LittleEndian.PutUint32(b[24:28], 1<<20); return b }(),
	}
	for k := kind(0); k < 8; k++ {
		if k != kind(valid[5]) {
			b := clone()
			b[5] = byte(k)
			out["as "+k.String()] = b
		}
	}
	return out
}

func isPackageError(err error) bool {
	for _, sentinel := range []error{ErrMalformed, ErrParamsMismatch, ErrKeyMismatch, ErrLengthMismatch, ErrShareMismatch, ErrOpen, ErrDuplicate} {
		if errors.Is(err, sentinel) {
			return true
		}
	}
	return false
}

func TestDecodersRefuseMalformedInput(t *testing.T) {
	p := testParams(t)
	c := setupCommittee(t, p, 3, 2, 110)
	aggregate := encryptAndSum(t, p, c.publicKey, randomVectors(mrand.New(mrand.NewPCG(16, 16)), 2, 100, 1))
	enc, err := NewEncryptor(p, c.publicKey, nil)
	require.NoError(t, err)
	update, err := enc.Encrypt(make([]float64, 100))
	require.NoError(t, err)
	active := []int{1, 3}
	share1, err := c.member(1).DecryptionShare(aggregate, active)
	require.NoError(t, err)
	share3, err := c.member(3).DecryptionShare(aggregate, active)
	require.NoError(t, err)
	memberBytes, err := c.member(2).MarshalBinary()
	require.NoError(t, err)
	var boxFrom1 SealedShare
	for _, b := range c.boxes {
		if b.From == 1 && b.To == 2 {
			boxFrom1 = b
		}
	}

	decoders := []struct {
		name   string
		valid  []byte
		decode func([]byte) error
	}{
		{"Sum.Add", update, func(b []byte) error {
			s, err := NewSum(p, c.publicKey, 100)
			require.NoError(t, err)
			return s.Add(b)
		}},
		{"Sum.Merge", aggregate, func(b []byte) error {
			s, err := NewSum(p, c.publicKey, 100)
			require.NoError(t, err)
			return s.Merge(b)
		}},
		{"UnmarshalSum", aggregate, func(b []byte) error { _, err := UnmarshalSum(p, b); return err }},
		{"InspectAggregate", aggregate, func(b []byte) error { _, err := InspectAggregate(p, b); return err }},
		{"NewEncryptor", c.publicKey, func(b []byte) error { _, err := NewEncryptor(p, b, nil); return err }},
		{"PublicKeyAggregator.Add", c.pkShares[0], func(b []byte) error {
			agg, err := NewPublicKeyAggregator(p, c.crsSeed)
			require.NoError(t, err)
			_, err = agg.Add(b)
			return err
		}},
		{"Member.DecryptionShare", aggregate, func(b []byte) error {
			_, err := c.member(1).DecryptionShare(b, active)
			return err
		}},
		{"Decryptor.Decrypt share", share1, func(b []byte) error {
			_, err := CombineDecryption(p, aggregate, active, map[int][]byte{1: b, 3: share3})
			return err
		}},
		{"Decryptor.Decrypt aggregate", aggregate, func(b []byte) error {
			_, err := CombineDecryption(p, b, active, map[int][]byte{1: share1, 3: share3})
			return err
		}},
		{"UnmarshalMember", memberBytes, func(b []byte) error { _, err := UnmarshalMember(p, b); return err }},
		{"CombineThresholdShares box", boxFrom1.Box, func(b []byte) error {
			boxes := []SealedShare{{From: 1, To: 2, Box: b}}
			for _, x := range c.boxes {
				if x.To == 2 && x.From != 1 {
					boxes = append(boxes, x)
				}
			}
			return c.member(2).CombineThresholdShares("setup-1", 2, c.roster, boxes)
		}},
	}
	for _, d := range decoders {
		t.Run(d.name, func(t *testing.T) {
			require.NoError(t, d.decode(append([]byte(nil), d.valid...)), "the valid input decodes")
			for name, b := range mutations(d.valid) {
				if name == "unreduced" && d.name == "InspectAggregate" {
					continue // it reads the header only; DecryptionShare checks the coefficients
				}
				err := d.decode(b)
				require.Error(t, err, name)
				require.True(t, isPackageError(err), "%s: %v", name, err)
			}
		})
	}
}
