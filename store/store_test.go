package store_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/store"
)

// TestChecksumsAreThoseStoresHoldAlready pins what a checksum binds: values computed by
// fedprop before this package existed (coordinator.RecordChecksum and SealRecord at commit
// fba12c4), which every store on disk or on a server holds.
func TestChecksumsAreThoseStoresHoldAlready(t *testing.T) {
	assert.Equal(t, "1d5e8fd12917156de060ae577bdfa016e1ca8785737e31b459541fa6ce5022c2",
		store.RecordChecksum(store.RecordVersion, "17", []byte(`{"version":17}`)))
	assert.Equal(t, "829175248039cbeeee9c7ce20e90060101df35926f2479535a11805e59f128c7",
		store.RecordChecksum(store.RecordHead, "", []byte("0:"+store.Genesis)))
	sealed := store.SealRecord(store.RecordRun, "q3", []byte(`{"id":"q3"}`))
	assert.Equal(t, "fedprop.record/v1 7a38c1220f804d96c55f65f377f5c2d3f16f2fe6827b004eb2190b09a317ea25\n{\"id\":\"q3\"}", string(sealed))

	body, sum, err := store.UnsealRecord(store.RecordRun, "q3", sealed)
	require.NoError(t, err)
	assert.Equal(t, `{"id":"q3"}`, string(body))
	assert.Equal(t, "7a38c1220f804d96c55f65f377f5c2d3f16f2fe6827b004eb2190b09a317ea25", sum)
	_, _, err = store.UnsealRecord(store.RecordRun, "q4", sealed)
	require.ErrorIs(t, err, store.ErrCorrupt, "a record moved to another key does not verify")
	assert.Contains(t, err.Error(), `run "q4": store damaged: checksum mismatch`)
	_, _, err = store.UnsealRecord(store.RecordRun, "q3", []byte(`{"id":"q3"}`))
	require.ErrorIs(t, err, store.ErrCorrupt)
	assert.Contains(t, err.Error(), "no checksum header")
}

func TestParseChecksTheKeyTheRecordHolds(t *testing.T) {
	r, err := store.ParseRun("q3", []byte(`{"id":"q3","status":"training","last_round":2,"latest_version":7}`))
	require.NoError(t, err)
	assert.Equal(t, store.Run{ID: "q3", LastRound: 2, LatestVersion: 7, Body: r.Body}, r)
	_, err = store.ParseRun("q4", r.Body)
	var ce *store.CorruptError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, `run "q4"`, ce.Record)
	assert.Equal(t, `holds run "q3"`, ce.Reason)

	v, err := store.ParseVersion(3, []byte(`{"version":3,"run_id":"q3","round":2,"created":"2026-03-04T05:06:07.123456789Z","weights":[1]}`))
	require.NoError(t, err)
	assert.Equal(t, "q3", v.RunID)
	assert.Equal(t, 2, v.Round)
	assert.Equal(t, 123456789, v.Created.Nanosecond())
	_, err = store.ParseVersion(4, v.Body)
	require.ErrorIs(t, err, store.ErrCorrupt)
	_, err = store.ParseVersion(3, []byte(`not json`))
	require.ErrorIs(t, err, store.ErrCorrupt)
	assert.Contains(t, err.Error(), "version 3: store damaged: does not decode")

	e, err := store.ParseEntry(5, []byte(`{"seq":5,"prev_hash":"a","hash":"b","actor":"x"}`))
	require.NoError(t, err)
	assert.Equal(t, "a", e.PrevHash)
	assert.Equal(t, "b", e.Hash)
	_, err = store.ParseEntry(6, e.Body)
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "audit entry 6", ce.Record)
}

func TestHeads(t *testing.T) {
	h := store.Head{Seq: 12, Hash: "ab" + store.Genesis[2:]}
	got, err := store.ParseHead(h.String())
	require.NoError(t, err)
	assert.Equal(t, h, got)
	for _, bad := range []string{"", "12", "x:" + store.Genesis, "12:" + store.Genesis[1:], "12:AB" + store.Genesis[2:]} {
		_, err := store.ParseHead(bad)
		require.Error(t, err, bad)
	}
	assert.Equal(t, store.Head{Hash: store.Genesis}, store.HeadOf(nil))
}

func TestFollows(t *testing.T) {
	a := store.Entry{Seq: 1, PrevHash: store.Genesis, Hash: "a"}
	b := store.Entry{Seq: 2, PrevHash: "a", Hash: "b"}
	require.NoError(t, store.Follows(store.Head{}, []store.Entry{a, b}))
	require.NoError(t, store.Follows(store.Head{Seq: 1, Hash: "a"}, []store.Entry{b}))
	for name, c := range map[string]struct {
		head    store.Head
		entries []store.Entry
	}{
		"a gap":                   {store.Head{}, []store.Entry{b}},
		"another head":            {store.Head{Seq: 1, Hash: "z"}, []store.Entry{b}},
		"a broken link":           {store.Head{}, []store.Entry{a, {Seq: 2, PrevHash: "z", Hash: "b"}}},
		"a sequence number again": {store.Head{Seq: 2, Hash: "b"}, []store.Entry{b}},
	} {
		require.ErrorIs(t, store.Follows(c.head, c.entries), store.ErrFork, name)
	}
}

func TestCheckCommit(t *testing.T) {
	v := store.Version{Version: 4, RunID: "r", Round: 2}
	r := store.Run{ID: "r", LastRound: 2, LatestVersion: 4}
	require.NoError(t, store.CheckCommit(3, 1, v, r))
	for name, err := range map[string]error{
		"the same version again":      store.CheckCommit(4, 1, v, r),
		"a skipped version":           store.CheckCommit(2, 1, v, r),
		"a skipped round":             store.CheckCommit(3, 0, v, r),
		"a run record of another run": store.CheckCommit(3, 1, v, store.Run{ID: "s", LastRound: 2, LatestVersion: 4}),
		"a run record behind":         store.CheckCommit(3, 1, v, store.Run{ID: "r", LastRound: 1, LatestVersion: 3}),
	} {
		require.ErrorIs(t, err, store.ErrConflict, name)
	}
}
