package secagg

import (
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMemberSurvivesARestart(t *testing.T) {
	p := testParams(t)
	c := setupCommittee(t, p, 5, 3, 60)
	dir := t.TempDir()
	active := []int{2, 4, 5}
	for _, a := range active {
		path := filepath.Join(dir, fmt.Sprintf("member-%d.key", a))
		require.NoError(t, c.member(a).SaveFile(path))
		info, err := os.Stat(path)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), info.Mode().Perm())

		reloaded, err := LoadMemberFile(p, path)
		require.NoError(t, err)
		want, err := c.member(a).MarshalBinary()
		require.NoError(t, err)
		got, err := reloaded.MarshalBinary()
		require.NoError(t, err)
		assert.Equal(t, want, got)
		assert.Equal(t, c.member(a).Committee(), reloaded.Committee())
		assert.Equal(t, 3, reloaded.Threshold())
		assert.Equal(t, "setup-1", reloaded.SetupID())
		c.members[a-1] = reloaded
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, len(active), "no temporary files left behind")

	vectors := randomVectors(mrand.New(mrand.NewPCG(7, 7)), 10, 300, 1e3)
	got := c.decrypt(t, encryptAndSum(t, p, c.publicKey, vectors), active)
	diff, _ := maxAbsDiff(got, plainSum(vectors))
	assert.Less(t, diff, 1e-8)
}

func TestMemberFiles(t *testing.T) {
	p := testParams(t)
	fresh, err := NewMember(p, 7, seededReader(1))
	require.NoError(t, err)
	dir := t.TempDir()

	t.Run("before setup", func(t *testing.T) {
		path := filepath.Join(dir, "fresh.key")
		require.NoError(t, fresh.SaveFile(path))
		m, err := LoadMemberFile(p, path)
		require.NoError(t, err)
		assert.False(t, m.Ready())
		assert.Equal(t, 7, m.Index())
		assert.Equal(t, fresh.IdentityPublicKey(), m.IdentityPublicKey())
	})
	t.Run("readable by others is refused", func(t *testing.T) {
		path := filepath.Join(dir, "open.key")
		require.NoError(t, fresh.SaveFile(path))
		require.NoError(t, os.Chmod(path, 0o644))
		_, err := LoadMemberFile(p, path)
		assert.ErrorIs(t, err, ErrInsecureFile)
	})
	t.Run("overwritten atomically", func(t *testing.T) {
		path := filepath.Join(dir, "twice.key")
		require.NoError(t, os.WriteFile(path, []byte("old"), 0o600))
		require.NoError(t, fresh.SaveFile(path))
		_, err := LoadMemberFile(p, path)
		assert.NoError(t, err)
	})
	t.Run("missing", func(t *testing.T) {
		_, err := LoadMemberFile(p, filepath.Join(dir, "absent.key"))
		assert.ErrorIs(t, err, os.ErrNotExist)
	})
	t.Run("other parameters", func(t *testing.T) {
		lit := DefaultParamsLiteral()
		lit.LogN, lit.LogQ, lit.LogDecodePrecision = 13, []int{55, 54, 54}, 29
		other, err := NewParams(lit)
		require.NoError(t, err)
		b, err := fresh.MarshalBinary()
		require.NoError(t, err)
		_, err = UnmarshalMember(other, b)
		assert.ErrorIs(t, err, ErrParamsMismatch)
	})
}

func TestKeyMaterialIsReproducibleFromASeed(t *testing.T) {
	p := testParams(t)
	a, err := NewMember(p, 3, seededReader(99))
	require.NoError(t, err)
	b, err := NewMember(p, 3, seededReader(99))
	require.NoError(t, err)
	c, err := NewMember(p, 3, seededReader(100))
	require.NoError(t, err)
	ab, _ := a.MarshalBinary()
	bb, _ := b.MarshalBinary()
	cb, _ := c.MarshalBinary()
	assert.Equal(t, ab, bb)
	assert.NotEqual(t, ab, cb)

	other, err := NewMember(p, 4, seededReader(5))
	require.NoError(t, err)
	roster := []Recipient{{3, a.IdentityPublicKey()}, {4, other.IdentityPublicKey()}}
	first, err := a.SealedThresholdShares("s", 2, roster)
	require.NoError(t, err)
	again, err := a.SealedThresholdShares("s", 2, roster)
	require.NoError(t, err)
	assert.Equal(t, first, again, "a retried keygen task resends the same boxes")
	elsewhere, err := a.SealedThresholdShares("s2", 2, roster)
	require.NoError(t, err)
	assert.NotEqual(t, first[0].Box, elsewhere[0].Box)

	seed := make([]byte, 32)
	pk := func() []byte {
		agg, err := NewPublicKeyAggregator(p, seed)
		require.NoError(t, err)
		for _, m := range []*Member{a, other} {
			s, err := m.PublicKeyShare(seed)
			require.NoError(t, err)
			_, err = agg.Add(s)
			require.NoError(t, err)
		}
		out, err := agg.PublicKey()
		require.NoError(t, err)
		return out
	}()
	encrypt := func(seed uint64) []byte {
		enc, err := NewEncryptor(p, pk, seededReader(seed))
		require.NoError(t, err)
		ct, err := enc.Encrypt([]float64{1, 2, 3})
		require.NoError(t, err)
		return ct
	}
	assert.Equal(t, encrypt(1), encrypt(1))
	assert.NotEqual(t, encrypt(1), encrypt(2))
}

func TestMemberWithRegisteredIdentity(t *testing.T) {
	p := testParams(t)
	identity, err := NewIdentity(seededReader(7))
	require.NoError(t, err)
	again, err := NewIdentity(seededReader(7))
	require.NoError(t, err)
	assert.Equal(t, identity.Bytes(), again.Bytes(), "a seeded identity repeats")

	m, err := NewMemberWithIdentity(p, 2, identity, seededReader(8))
	require.NoError(t, err)
	assert.Equal(t, identity.PublicKey().Bytes(), m.IdentityPublicKey())
	b, err := m.MarshalBinary()
	require.NoError(t, err)
	reloaded, err := UnmarshalMember(p, b)
	require.NoError(t, err)
	assert.Equal(t, identity.PublicKey().Bytes(), reloaded.IdentityPublicKey())

	_, err = NewMemberWithIdentity(p, 2, nil, nil)
	assert.ErrorIs(t, err, ErrMalformed)
}
