package secagg_test

import (
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/secagg"
)

// verifyKey is a collective public key of a one-member committee, enough to encrypt.
func verifyKey(t testing.TB, p secagg.Params) []byte {
	t.Helper()
	m, err := secagg.NewMember(p, 1, nil)
	require.NoError(t, err)
	crs := sha256.Sum256([]byte("verify"))
	share, err := m.PublicKeyShare(crs[:])
	require.NoError(t, err)
	agg, err := secagg.NewPublicKeyAggregator(p, crs[:])
	require.NoError(t, err)
	_, err = agg.Add(share)
	require.NoError(t, err)
	pk, err := agg.PublicKey()
	require.NoError(t, err)
	return pk
}

// TestSumCheckCatchesEveryChange: an aggregate passes only when it is, coefficient for
// coefficient, the sum of exactly the contributions re-added.
func TestSumCheckCatchesEveryChange(t *testing.T) {
	p, err := secagg.NewParams(secagg.DefaultParamsLiteral())
	require.NoError(t, err)
	pk := verifyKey(t, p)
	enc, err := secagg.NewEncryptor(p, pk, nil)
	require.NoError(t, err)
	var cts [][]byte
	for i := range 3 {
		ct, err := enc.Encrypt([]float64{float64(i), 2, 3})
		require.NoError(t, err)
		cts = append(cts, ct)
	}
	sum, err := secagg.NewSum(p, pk, 3)
	require.NoError(t, err)
	for _, ct := range cts {
		require.NoError(t, sum.Add(ct))
	}
	agg, err := sum.MarshalBinary()
	require.NoError(t, err)
	n := 2 * p.Slots()
	c1 := 32 + 8*(len(p.Literal().LogQ)*n+7)
	other, err := enc.Encrypt([]float64{9, 9, 9})
	require.NoError(t, err)
	long, err := enc.Encrypt(make([]float64, p.Slots()+1))
	require.NoError(t, err)

	cases := []struct {
		name string
		edit func(agg []byte)
		add  [][]byte
		want error
	}{
		{"the sum", nil, cts, nil},
		{"one coefficient of c1 off by one", func(agg []byte) {
			binary.LittleEndian.PutUint64(agg[c1:], binary.LittleEndian.Uint64(agg[c1:])^1)
		}, cts, secagg.ErrNotTheSum},
		{"a contribution left out", nil, cts[:2], secagg.ErrNotTheSum},
		{"a contribution repeated", nil, [][]byte{cts[0], cts[1], cts[1]}, secagg.ErrNotTheSum},
		{"a contribution swapped", nil, [][]byte{cts[0], cts[1], other}, secagg.ErrNotTheSum},
		{"a contribution of another length", nil, [][]byte{cts[0], cts[1], long}, secagg.ErrNotTheSum},
		{"a contribution that does not parse", nil, [][]byte{cts[0], []byte("FPSA")}, secagg.ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := append([]byte(nil), agg...)
			if tc.edit != nil {
				tc.edit(a)
			}
			check, err := secagg.NewSumCheck(p, a)
			require.NoError(t, err)
			assert.Equal(t, len(agg), check.Size())
			for _, ct := range tc.add {
				if err = check.Add(ct); err != nil {
					break
				}
			}
			if err == nil {
				err = check.Verify()
			}
			if tc.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tc.want)
		})
	}
	_, err = secagg.NewSumCheck(p, []byte("not an aggregate"))
	require.ErrorIs(t, err, secagg.ErrMalformed)
}

// FuzzSumCheck: whatever bytes a coordinator calls an aggregate and a contribution, the
// member's check neither panics nor passes them unless they are a sum.
func FuzzSumCheck(f *testing.F) {
	p, err := secagg.NewParams(secagg.DefaultParamsLiteral())
	if err != nil {
		f.Fatal(err)
	}
	pk := verifyKey(f, p)
	enc, err := secagg.NewEncryptor(p, pk, nil)
	if err != nil {
		f.Fatal(err)
	}
	ct, err := enc.Encrypt([]float64{1})
	if err != nil {
		f.Fatal(err)
	}
	sum, _ := secagg.NewSum(p, pk, 1)
	_ = sum.Add(ct)
	agg, _ := sum.MarshalBinary()
	f.Add(agg[:64], ct[:64], uint16(0))
	f.Fuzz(func(t *testing.T, aggHead, ctHead []byte, at uint16) {
		// The fuzzer edits the headers and one word; the bodies keep their real sizes.
		a := append(append([]byte(nil), aggHead...), agg[min(len(aggHead), len(agg)):]...)
		c := append(append([]byte(nil), ctHead...), ct[min(len(ctHead), len(ct)):]...)
		check, err := secagg.NewSumCheck(p, a)
		if err != nil {
			return
		}
		if i := 32 + int(at)*8; i+8 <= len(c) {
			c[i] ^= 1
		}
		if check.Add(c) == nil && check.Verify() == nil && string(a) != string(agg) {
			t.Fatalf("a changed aggregate passed")
		}
	})
}
