package store

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// CheckCommit is the rule every Store applies inside its commit transaction, on what it holds:
// the version must follow the latest stored one (latestVersion, 0 for none), the round must
// follow the run's last stored round (lastRound, 0 for a run not stored), and the run record
// must be the one the version makes.
func CheckCommit(latestVersion uint64, lastRound int, v Version, r Run) error {
	if v.Version != latestVersion+1 {
		return fmt.Errorf("commit version %d: the latest stored version is %d: %w", v.Version, latestVersion, ErrConflict)
	}
	if v.Round != lastRound+1 {
		return fmt.Errorf("commit version %d of run %s: round %d does not follow stored round %d: %w", v.Version, r.ID, v.Round, lastRound, ErrConflict)
	}
	if v.RunID != r.ID || r.LastRound != v.Round || r.LatestVersion != v.Version {
		return fmt.Errorf("commit version %d: run record (run %s, round %d, version %d) does not match it: %w",
			v.Version, r.ID, r.LastRound, r.LatestVersion, ErrConflict)
	}
	return nil
}

// Genesis is the previous hash of the first audit entry, and the hash of an empty log's head:
// 64 zeros (audit.Genesis).
const Genesis = "0000000000000000000000000000000000000000000000000000000000000000"

// Head identifies the newest entry of the audit log (audit.Head): its sequence number and
// hash; 0 and Genesis for an empty log.
type Head struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// String is "SEQ:HASH", the form ParseHead reads and the store keeps.
func (h Head) String() string { return strconv.FormatUint(h.Seq, 10) + ":" + h.Hash }

// ParseHead reads a head written by Head.String.
func ParseHead(s string) (Head, error) {
	seq, hash, ok := strings.Cut(s, ":")
	n, err := strconv.ParseUint(seq, 10, 64)
	if !ok || err != nil || !isHash(hash) {
		return Head{}, fmt.Errorf("audit head %q is not SEQ:HASH (a sequence number and 64 hex digits)", s)
	}
	return Head{Seq: n, Hash: hash}, nil
}

func isHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// HeadOf returns the head of a log whose entries are given, oldest first: the newest entry's
// sequence number and hash, or 0 and Genesis for none.
func HeadOf(entries []Entry) Head {
	if n := len(entries); n > 0 {
		return Head{Seq: entries[n-1].Seq, Hash: entries[n-1].Hash}
	}
	return Head{Hash: Genesis}
}

// Follows checks that entries continue a log whose newest entry is head: consecutive
// sequence numbers from head.Seq+1, the first linked to head.Hash (Genesis when head.Seq is
// 0) and each later one to the entry before it. Stores call it inside their write
// transaction, so that a writer that does not hold the log's head writes nothing. The error
// wraps ErrFork; stores wrap it in ErrConflict too.
func Follows(head Head, entries []Entry) error {
	prev := head.Hash
	if head.Seq == 0 {
		prev = Genesis
	}
	for i, e := range entries {
		seq := head.Seq + uint64(i) + 1
		switch {
		case e.Seq != seq:
			return fmt.Errorf("%w: entry %d where entry %d is next (head %s)", ErrFork, e.Seq, seq, head)
		case e.PrevHash != prev:
			return fmt.Errorf("%w: entry %d links to %.12s (abbreviated), but the entry before it is %.12s", ErrFork, e.Seq, e.PrevHash, prev)
		}
		prev = e.Hash
	}
	return nil
}
