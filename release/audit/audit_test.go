package audit_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/release/audit"
)

// clock returns a deterministic clock that advances one minute per call.
func clock() func() time.Time {
	t := time.Date(2025, 3, 4, 9, 0, 0, 123456789, time.UTC)
	var mu sync.Mutex
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Minute)
		return t
	}
}

var records = []audit.Record{
	{Actor: "coordinator", Action: audit.ActionRunStart, Subject: "run bank-2025-03"},
	{Actor: "coordinator", Action: audit.ActionCommit, Subject: "version 20"},
	{Actor: "alice@bank.example", Role: "approver", Action: audit.ActionOverride, Subject: "version 20",
		Reason: "age gap 0.16 > 0.10: the >=60 band is 4% of customers; reviewed by model-risk, ticket MR-114 <ok> & \"quoted\""},
	{Actor: "coordinator", Action: audit.ActionRunStop, Subject: "run bank-2025-03", Reason: "completed"},
}

func writeLog(t *testing.T, store audit.Store, recs []audit.Record) *audit.Log {
	t.Helper()
	l, err := audit.Open(context.Background(), store, audit.Options{Now: clock()})
	require.NoError(t, err)
	for _, r := range recs {
		_, err := l.Append(context.Background(), r)
		require.NoError(t, err)
	}
	return l
}

func TestAppendChainsEntries(t *testing.T) {
	store := &audit.MemStore{}
	l := writeLog(t, store, records)
	entries, err := store.Entries(context.Background())
	require.NoError(t, err)
	require.Len(t, entries, len(records))
	prev := audit.Genesis
	for i, e := range entries {
		assert.Equal(t, uint64(i+1), e.Seq)
		assert.Equal(t, prev, e.PrevHash)
		assert.Equal(t, e.ComputeHash(), e.Hash)
		assert.Equal(t, records[i].Actor, e.Actor)
		assert.Equal(t, records[i].Action, e.Action)
		assert.Equal(t, time.UTC, e.Time.Location())
		prev = e.Hash
	}
	assert.Equal(t, audit.Head{Seq: 4, Hash: entries[3].Hash}, l.Head())
	require.NoError(t, audit.Verify(entries, &audit.Head{Seq: 4, Hash: entries[3].Hash}))

	// A record's own time is kept.
	at := time.Date(2024, 12, 31, 23, 59, 59, 0, time.FixedZone("CET", 3600))
	e, err := l.Append(context.Background(), audit.Record{Actor: "bob", Action: audit.ActionReject, Time: at})
	require.NoError(t, err)
	assert.True(t, at.Equal(e.Time))
}

func TestAppendRejectsIncompleteRecords(t *testing.T) {
	l := writeLog(t, &audit.MemStore{}, nil)
	cases := []struct {
		name string
		rec  audit.Record
	}{
		{"no actor", audit.Record{Action: audit.ActionApprove}},
		{"blank actor", audit.Record{Actor: " ", Action: audit.ActionApprove}},
		{"no action", audit.Record{Actor: "alice"}},
		{"invalid UTF-8", audit.Record{Actor: "alice", Action: audit.ActionApprove, Reason: "\xff"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := l.Append(context.Background(), tc.rec)
			require.ErrorIs(t, err, audit.ErrInvalid)
			assert.Equal(t, uint64(0), l.Head().Seq)
		})
	}
}

func TestVerifyNamesTheFirstBadEntry(t *testing.T) {
	store := &audit.MemStore{}
	writeLog(t, store, records)
	good, err := store.Entries(context.Background())
	require.NoError(t, err)
	head := audit.Head{Seq: 4, Hash: good[3].Hash}
	clone := func() []audit.Entry { return append([]audit.Entry(nil), good...) }
	rehash := func(es []audit.Entry, from int) []audit.Entry {
		for i := from; i < len(es); i++ {
			if i > 0 {
				es[i].PrevHash = es[i-1].Hash
			}
			es[i].Hash = es[i].ComputeHash()
		}
		return es
	}
	cases := []struct {
		name    string
		entries func() []audit.Entry
		head    *audit.Head
		bad     uint64 // 0: verifies
	}{
		{"untouched", clone, &head, 0},
		{"reason edited", func() []audit.Entry { es := clone(); es[2].Reason = "fine"; return es }, nil, 3},
		{"reason edited and its hash recomputed", func() []audit.Entry {
			es := clone()
			es[2].Reason = "fine"
			es[2].Hash = es[2].ComputeHash()
			return es
		}, nil, 4},
		{"time edited", func() []audit.Entry { es := clone(); es[0].Time = es[0].Time.Add(time.Nanosecond); return es }, nil, 1},
		{"two entries swapped", func() []audit.Entry { es := clone(); es[1], es[2] = es[2], es[1]; return es }, nil, 2},
		{"middle entry deleted", func() []audit.Entry { es := clone(); return append(es[:1], es[2:]...) }, nil, 2},
		{"entry duplicated", func() []audit.Entry { es := clone(); return append(es[:2], es[1:]...) }, nil, 3},
		{"first entry's link changed", func() []audit.Entry { es := clone(); es[0].PrevHash = es[3].Hash; return es }, nil, 1},
		{"last entry deleted: invisible without the head", func() []audit.Entry { return clone()[:3] }, nil, 0},
		{"last entry deleted: detected with the head", func() []audit.Entry { return clone()[:3] }, &head, 4},
		{"every entry deleted, with the head", func() []audit.Entry { return nil }, &head, 1},
		{"entry appended beyond the head", func() []audit.Entry {
			es := append(clone(), audit.Entry{Seq: 5, Actor: "mallory", Action: audit.ActionApprove, PrevHash: good[3].Hash})
			return rehash(es, 4)
		}, &head, 5},
		{"whole log rewritten from entry 3: invisible without the head", func() []audit.Entry {
			es := clone()
			es[2].Reason = "no reason"
			return rehash(es, 2)
		}, nil, 0},
		{"whole log rewritten from entry 3: detected with the head", func() []audit.Entry {
			es := clone()
			es[2].Reason = "no reason"
			return rehash(es, 2)
		}, &head, 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := audit.Verify(tc.entries(), tc.head)
			if tc.bad == 0 {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, audit.ErrTampered)
			var ce *audit.ChainError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tc.bad, ce.Seq, "%v", err)
			assert.Contains(t, err.Error(), fmt.Sprintf("entry %d", tc.bad))
		})
	}
}

// logFile returns the log file (the export format) of recs.
func logFile(t *testing.T, recs []audit.Record) []byte {
	t.Helper()
	store := &audit.MemStore{}
	writeLog(t, store, recs)
	entries, err := store.Entries(context.Background())
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, audit.WriteEntries(&buf, entries))
	return buf.Bytes()
}

func TestLogFileRoundTrips(t *testing.T) {
	store := &audit.MemStore{}
	l := writeLog(t, store, records)
	entries, err := store.Entries(context.Background())
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	var buf bytes.Buffer
	require.NoError(t, audit.WriteEntries(&buf, entries))
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o600))
	assert.Equal(t, len(records), bytes.Count(buf.Bytes(), []byte("\n")), "one line per entry")

	back, err := audit.ReadFile(context.Background(), path)
	require.NoError(t, err)
	assert.Equal(t, entries, back)
	require.NoError(t, audit.Verify(back, ptr(l.Head())))
	assert.Equal(t, records[2].Reason, back[2].Reason)

	// An edited file does not verify.
	require.NoError(t, os.WriteFile(path, bytes.Replace(buf.Bytes(), []byte("completed"), []byte("abandoned"), 1), 0o600))
	back, err = audit.ReadFile(context.Background(), path)
	require.NoError(t, err)
	require.ErrorIs(t, audit.Verify(back, nil), audit.ErrTampered)
	_, err = audit.ReadFile(context.Background(), path+".none")
	require.ErrorIs(t, err, os.ErrNotExist)
}

// TestOpenRefusesATamperedLog: a log that does not verify is examined, not extended.
func TestOpenRefusesATamperedLog(t *testing.T) {
	store := &audit.MemStore{}
	writeLog(t, store, records)
	entries, err := store.Entries(context.Background())
	require.NoError(t, err)
	entries[1].Reason = "edited"
	tampered := &audit.MemStore{}
	for _, e := range entries {
		require.NoError(t, tampered.Append(context.Background(), e))
	}
	_, err = audit.Open(context.Background(), tampered, audit.Options{})
	require.ErrorIs(t, err, audit.ErrTampered)
}

// TestEveryOneByteEditIsDetected changes each byte of a log file in turn, in three ways, and
// requires verification to fail naming the entry on whose line the byte is.
func TestEveryOneByteEditIsDetected(t *testing.T) {
	raw := logFile(t, records)
	lineOf := make([]uint64, len(raw))
	line := uint64(1)
	for i, b := range raw {
		lineOf[i] = line
		if b == '\n' {
			line++
		}
	}
	edited := make([]byte, len(raw))
	checked := 0
	for i := range raw {
		for _, replace := range []byte{raw[i] ^ 0x01, raw[i] ^ 0x20, '\n'} {
			if replace == raw[i] {
				continue
			}
			copy(edited, raw)
			edited[i] = replace
			entries, err := audit.ReadEntries(context.Background(), bytes.NewReader(edited))
			if err == nil {
				err = audit.Verify(entries, nil)
			}
			var ce *audit.ChainError
			require.ErrorAs(t, err, &ce, "byte %d (%q -> %q) went unnoticed", i, raw[i], replace)
			require.Equal(t, lineOf[i], ce.Seq, "byte %d (%q -> %q): %v", i, raw[i], replace, err)
			checked++
		}
	}
	t.Logf("%d one-byte edits of a %d-byte log, each detected and located", checked, len(raw))
}

func TestReadEntriesRejectsDamagedFiles(t *testing.T) {
	raw := logFile(t, records[:2])
	cases := []struct {
		name string
		data []byte
		seq  uint64
		line int
	}{
		{"last newline removed", raw[:len(raw)-1], 2, 2},
		{"blank line", append(append([]byte("\n"), raw...), '\n'), 1, 1},
		{"unknown key", bytes.Replace(raw, []byte(`"actor"`), []byte(`"actress"`), 1), 1, 1},
		{"key in another case", bytes.Replace(raw, []byte(`"actor"`), []byte(`"Actor"`), 1), 1, 1},
		{"extra space", bytes.Replace(raw, []byte(`"seq":2,`), []byte(`"seq": 2,`), 1), 2, 2},
		{"overlong line", append(raw, bytes.Repeat([]byte("x"), audit.MaxLineBytes+10)...), 3, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := audit.ReadEntries(context.Background(), bytes.NewReader(tc.data))
			var ce *audit.ChainError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tc.seq, ce.Seq)
			assert.Equal(t, tc.line, ce.Line)
			require.ErrorIs(t, err, audit.ErrTampered)
		})
	}
}

func TestConcurrentAppendsKeepOneChain(t *testing.T) {
	store := &audit.MemStore{}
	l := writeLog(t, store, nil)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 10 {
				_, err := l.Append(context.Background(), audit.Record{Actor: fmt.Sprintf("w%d", w), Action: audit.ActionCommit, Subject: fmt.Sprint(i)})
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	entries, err := store.Entries(context.Background())
	require.NoError(t, err)
	assert.Len(t, entries, 40)
	require.NoError(t, audit.Verify(entries, ptr(l.Head())))
}

func TestParseHead(t *testing.T) {
	h := audit.Head{Seq: 12, Hash: audit.Genesis[:60] + "abcd"}
	back, err := audit.ParseHead(h.String())
	require.NoError(t, err)
	assert.Equal(t, h, back)
	for _, bad := range []string{"", "12", "x:" + audit.Genesis, "12:" + audit.Genesis[:63], "12:" + audit.Genesis[:63] + "G", "12:" + audit.Genesis[:63] + "A"} {
		_, err := audit.ParseHead(bad)
		require.Error(t, err, bad)
	}
}

type failingStore struct{ audit.MemStore }

func (f *failingStore) Append(context.Context, audit.Entry) error { return errors.New("disk full") }

func TestFailedAppendLeavesTheHead(t *testing.T) {
	l, err := audit.Open(context.Background(), &failingStore{}, audit.Options{})
	require.NoError(t, err)
	_, err = l.Append(context.Background(), audit.Record{Actor: "a", Action: audit.ActionApprove})
	require.ErrorContains(t, err, "disk full")
	assert.Equal(t, audit.Head{Hash: audit.Genesis}, l.Head())
}

func FuzzReadEntries(f *testing.F) {
	var buf bytes.Buffer
	store := &audit.MemStore{}
	l, err := audit.Open(context.Background(), store, audit.Options{Now: clock()})
	require.NoError(f, err)
	for _, r := range []audit.Record{{Actor: "a", Action: audit.ActionApprove, Subject: "v1"}, {Actor: "b", Action: audit.ActionReject}} {
		e, err := l.Append(context.Background(), r)
		require.NoError(f, err)
		line, err := audit.EncodeLine(e)
		require.NoError(f, err)
		buf.Write(line)
	}
	f.Add(buf.Bytes())
	f.Add([]byte("{}\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := audit.ReadEntries(context.Background(), bytes.NewReader(data))
		if err != nil {
			return
		}
		// What is accepted is exactly the canonical encoding of what was read.
		var again bytes.Buffer
		for _, e := range entries {
			line, err := audit.EncodeLine(e)
			require.NoError(t, err)
			again.Write(line)
		}
		require.Equal(t, string(data), again.String())
		_ = audit.Verify(entries, nil) // must not panic
	})
}

func BenchmarkAppend(b *testing.B) {
	l, err := audit.Open(context.Background(), &audit.MemStore{}, audit.Options{})
	require.NoError(b, err)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Append(context.Background(), records[2]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	store := &audit.MemStore{}
	l, err := audit.Open(context.Background(), store, audit.Options{Now: clock()})
	require.NoError(b, err)
	for range 1000 {
		_, err := l.Append(context.Background(), records[2])
		require.NoError(b, err)
	}
	entries, err := store.Entries(context.Background())
	require.NoError(b, err)
	b.ReportAllocs()
	for b.Loop() {
		if err := audit.Verify(entries, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(1000, "entries/op")
}

func ptr[T any](v T) *T { return &v }
