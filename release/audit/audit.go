// Package audit is fedprop's append-only audit log: every approval, rejection, override, run
// start and run stop is an Entry, and entries are hash-chained, so that editing, reordering or
// deleting any of them is detected by Verify, which names the first bad entry.
//
// Each entry carries its sequence number (1, 2, 3, ...), the hash of the previous entry (Genesis
// for the first) and its own hash: SHA-256 over a canonical encoding of every other field
// (CanonicalBytes). Editing an entry changes its hash; fixing that hash breaks the next entry's
// link; deleting or reordering entries breaks the sequence and the links. Deleting the newest
// entries leaves a shorter log that is still a valid chain, so the log alone cannot reveal it:
// the head (sequence number and hash of the newest entry) must also be recorded elsewhere, and
// Verify given that expected head. fedprop's coordinator keeps the log and its head in its
// store, written in the same transaction as the state change each entry describes
// (store.AuditedStore), and each committed version records the head too.
//
// A chain proves order, not authorship: whoever can write the store can append a well-formed
// entry and recompute the head. So a decision (an approval, a rejection or an override) is also
// signed by the approver's own certificate key over the action, the version, the version's
// content hash and the reason (SignDecision), and VerifyDecision checks that signature against
// the CA on every read: a decision no approver signed is refused, naming its entry.
//
// Storage is behind Store; MemStore is for tests and stores without a log of their own. The
// JSON lines encoding (EncodeLine, ReadEntries) is the export format (`fedprop audit export`).
package audit

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/fedprop/fedprop/pki"
)

// Action is what an entry records.
type Action string

// The actions fedprop records.
const (
	// ActionRunStart: a training run started (Subject: the run id).
	ActionRunStart Action = "run.start"
	// ActionRunStop: a training run stopped, completed or failed (Subject: the run id; Reason:
	// how it ended).
	ActionRunStop Action = "run.stop"
	// ActionApprove: a model version was approved for release (Subject: the version).
	ActionApprove Action = "model.approve"
	// ActionReject: a model version was rejected.
	ActionReject Action = "model.reject"
	// ActionOverride: a version flagged by the fairness policy was approved anyway; Reason says
	// why.
	ActionOverride Action = "model.override"
	// ActionCommit: a model version was committed as a candidate.
	ActionCommit Action = "model.commit"
)

// Genesis is the PrevHash of the first entry: 64 zeros.
const Genesis = "0000000000000000000000000000000000000000000000000000000000000000"

// Sentinel errors, checked with errors.Is.
var (
	// ErrTampered marks a log whose chain is broken: an entry edited, reordered, inserted or
	// deleted. The error is a *ChainError naming the first bad entry.
	ErrTampered = errors.New("audit log tampered")
	// ErrInvalid marks an entry that cannot be appended (an empty actor or action, a field that
	// is not valid UTF-8).
	ErrInvalid = errors.New("invalid audit entry")
	// ErrBadSignature marks a decision that is not signed by an approver: no signature, a
	// signature that does not match the entry, a certificate the CA did not issue, or a signer
	// who is not an approver or not the entry's actor. The error is a *DecisionError naming the
	// entry.
	ErrBadSignature = errors.New("decision not signed by its approver")
	// ErrFork marks entries that do not continue the head they are appended to: a second
	// writer, or a writer that lost track of the head. Stores refuse them, writing nothing.
	ErrFork = errors.New("audit entries do not follow the log's head")
)

// Entry is one record of the log. Fields are exported for storage and display; only Log.Append
// makes entries that verify.
type Entry struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Actor   string    `json:"actor"`
	Role    string    `json:"role,omitempty"`
	Action  Action    `json:"action"`
	Subject string    `json:"subject,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	// Digest is, in a decision, the content hash of the version decided on, which Signature
	// covers: the decision holds for exactly those bytes.
	Digest string `json:"digest,omitempty"`
	// Signature is a decision's signature by the approver's own certificate key over
	// DecisionStatement.
	Signature *pki.Signed `json:"signature,omitempty"`
	// Delegation, in a decision made in the oversight console, is the approver's delegation
	// of signing to the console session's key, signed by the approver's certificate key;
	// Signature.Signature is then the session key's (see VerifyDecision).
	Delegation *pki.Delegation `json:"delegation,omitempty"`
	// PrevHash is the Hash of the previous entry, Genesis for the first.
	PrevHash string `json:"prev_hash"`
	// Hash is the hex SHA-256 of CanonicalBytes.
	Hash string `json:"hash"`
}

// canonicalTag starts every canonical encoding of an unsigned entry, and signedTag that of an
// entry with a digest or a signature, so a hash of another structure cannot be taken for an
// entry's, and removing a decision's signature changes its hash.
const (
	canonicalTag = "fedprop.audit/v1"
	signedTag    = "fedprop.audit/v2"
	// delegatedTag starts the encoding of a decision signed by a delegated session key: the
	// delegation's fields follow the signature's, so that swapping them changes the hash.
	delegatedTag = "fedprop.audit/v3"
)

// CanonicalBytes is the encoding an entry's hash covers: a tag, then the sequence number, the
// time (UTC, RFC 3339 with nanoseconds), the actor, role, action, subject and reason, for an entry
// with a digest or a signature then the digest, the signer's certificate and the signature, and
// last the previous hash, each as an 8-byte big-endian length followed by its bytes. It is
// unambiguous: no two different entries share it.
func (e Entry) CanonicalBytes() []byte {
	fields := [][]byte{
		[]byte(canonicalTag),
		[]byte(strconv.FormatUint(e.Seq, 10)),
		[]byte(e.Time.UTC().Format(time.RFC3339Nano)),
		[]byte(e.Actor), []byte(e.Role), []byte(e.Action), []byte(e.Subject), []byte(e.Reason),
	}
	if e.Digest != "" || e.Signature != nil {
		fields[0] = []byte(signedTag)
		var cert, sig []byte
		if e.Signature != nil {
			cert, sig = e.Signature.Certificate, e.Signature.Signature
		}
		fields = append(fields, []byte(e.Digest), cert, sig)
	}
	if d := e.Delegation; d != nil {
		fields[0] = []byte(delegatedTag)
		fields = append(fields, d.SessionKey, []byte(strconv.FormatInt(d.NotAfter.Unix(), 10)), d.Nonce, d.Signature)
	}
	fields = append(fields, []byte(e.PrevHash))
	n := 0
	for _, f := range fields {
		n += 8 + len(f)
	}
	b := make([]byte, 0, n)
	for _, f := range fields {
		b = binary.BigEndian.AppendUint64(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

// ComputeHash returns the hex SHA-256 of the entry's canonical encoding.
func (e Entry) ComputeHash() string {
	sum := sha256.Sum256(e.CanonicalBytes())
	return hex.EncodeToString(sum[:])
}

// Head identifies the newest entry of a log: record it outside the log to detect a deleted tail.
type Head struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// String is "SEQ:HASH", the form ParseHead reads.
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

// IsHash reports whether s is a hash as entries and heads write it: 64 lower-case hex digits.
func IsHash(s string) bool { return isHash(s) }

func isHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// ChainError says which entry breaks the chain: the first one that does.
type ChainError struct {
	// Seq is the sequence number the bad entry should have (its position in the log, from 1).
	Seq uint64
	// Line is the entry's line in a FileStore file (0 when not read from a file).
	Line int
	// Reason says what is wrong.
	Reason string
}

func (e *ChainError) Error() string {
	where := fmt.Sprintf("entry %d", e.Seq)
	if e.Line > 0 {
		where += fmt.Sprintf(" (line %d)", e.Line)
	}
	return fmt.Sprintf("%v: %s: %s", ErrTampered, where, e.Reason)
}

// Unwrap returns ErrTampered.
func (e *ChainError) Unwrap() error { return ErrTampered }

// Verify checks a whole log, oldest entry first: sequence numbers 1, 2, 3, ... without gaps,
// each entry's PrevHash equal to the previous entry's Hash (Genesis for the first), and each
// Hash equal to the hash of the entry's content. When want is not nil, the newest entry must also
// be want (a log with fewer entries has lost its tail; one with more, or with another hash, was
// rewritten). The error is a *ChainError naming the first bad entry.
func Verify(entries []Entry, want *Head) error {
	prev := Genesis
	for i, e := range entries {
		seq := uint64(i) + 1
		switch {
		case e.Seq != seq:
			return &ChainError{Seq: seq, Reason: fmt.Sprintf("has sequence number %d where %d belongs: entries were deleted, inserted or reordered", e.Seq, seq)}
		case e.PrevHash != prev:
			return &ChainError{Seq: seq, Reason: "its previous-entry hash does not match the entry before it: an earlier entry was changed, or entries were deleted or reordered"}
		case e.ComputeHash() != e.Hash:
			return &ChainError{Seq: seq, Reason: "its content does not match its hash: the entry was edited"}
		}
		prev = e.Hash
	}
	if want == nil {
		return nil
	}
	n := uint64(len(entries))
	switch {
	case n < want.Seq:
		return &ChainError{Seq: n + 1, Reason: fmt.Sprintf("is missing: the log ends at entry %d but its recorded head is entry %d: entries %d to %d were deleted", n, want.Seq, n+1, want.Seq)}
	case n > want.Seq:
		return &ChainError{Seq: want.Seq + 1, Reason: fmt.Sprintf("is beyond the recorded head (entry %d)", want.Seq)}
	case n > 0 && entries[n-1].Hash != want.Hash:
		return &ChainError{Seq: n, Reason: "is not the recorded head: the log was rewritten"}
	case n == 0 && want.Hash != "" && want.Hash != Genesis:
		return &ChainError{Seq: 1, Reason: "is missing: the log is empty but its recorded head is not"}
	}
	return nil
}

// Follows checks that entries continue a log whose newest entry is head (the zero Head, or
// sequence number 0, for an empty log): consecutive sequence numbers from head.Seq+1, the first
// linked to head.Hash and each later one to the entry before it, and every hash its entry's
// content's. Stores call it inside their write transaction, so that a writer that does not hold
// the log's head writes nothing. The error wraps ErrFork, or ErrTampered for an entry whose
// hash does not match its content.
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
		case e.ComputeHash() != e.Hash:
			return &ChainError{Seq: seq, Reason: "its content does not match its hash"}
		}
		prev = e.Hash
	}
	return nil
}

// HeadOf returns the head of a log whose entries are given, oldest first: the newest entry's
// sequence number and hash, or 0 and Genesis for none.
func HeadOf(entries []Entry) Head {
	if n := len(entries); n > 0 {
		return Head{Seq: entries[n-1].Seq, Hash: entries[n-1].Hash}
	}
	return Head{Hash: Genesis}
}

// Store keeps the entries of one log. Implementations need not check the chain; Log does.
type Store interface {
	// Append stores e after every stored entry, durably, before returning.
	Append(ctx context.Context, e Entry) error
	// Entries returns every stored entry, oldest first. An entry that cannot be read is a
	// *ChainError.
	Entries(ctx context.Context) ([]Entry, error)
}

// Record is what a caller logs; Log.Append makes it an entry.
type Record struct {
	// Time is when it happened; zero means the Log's clock.
	Time    time.Time
	Actor   string
	Role    string
	Action  Action
	Subject string
	Reason  string
	// Digest and Signature are a decision's (see Entry).
	Digest    string
	Signature *pki.Signed
	// Delegation is a console decision's (see Entry).
	Delegation *pki.Delegation
}

// Log appends hash-chained entries to a Store. It is safe for concurrent use; only one Log may
// write to a Store at a time.
type Log struct {
	mu    sync.Mutex
	store Store
	now   func() time.Time
	head  Head
}

// Options adjust a Log.
type Options struct {
	// Now is the clock for records without a time; nil means time.Now.
	Now func() time.Time
}

// Open reads and verifies the stored entries and returns a Log that appends after them. A
// broken chain is refused (wrapping ErrTampered): a log that has been tampered with must be
// examined, not extended.
func Open(ctx context.Context, store Store, opts Options) (*Log, error) {
	entries, err := store.Entries(ctx)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	if err := Verify(entries, nil); err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	return NewLog(store, HeadOf(entries), opts), nil
}

// NewLog returns a Log that appends to store after head, for a caller that has read the stored
// entries and verified them against head itself (Open does both for a store that records no
// head of its own).
func NewLog(store Store, head Head, opts Options) *Log {
	if head.Seq == 0 {
		head.Hash = Genesis
	}
	l := &Log{store: store, now: opts.Now, head: head}
	if l.now == nil {
		l.now = time.Now
	}
	return l
}

// Head returns the newest entry's sequence number and hash (0 and Genesis for an empty log).
func (l *Log) Head() Head {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.head
}

// Append chains r after the newest entry, stores it and returns the entry.
func (l *Log) Append(ctx context.Context, r Record) (Entry, error) {
	es, err := l.AppendWith(ctx, []Record{r}, func(es []Entry) error {
		if err := l.store.Append(ctx, es[0]); err != nil {
			return fmt.Errorf("append audit entry %d: %w", es[0].Seq, err)
		}
		return nil
	})
	if err != nil {
		return Entry{}, err
	}
	return es[0], nil
}

// AppendWith chains recs after the newest entry and hands the entries to write, which stores
// them, together with the state they record, in one transaction. The head moves only when
// write succeeds. The log stays locked while write runs, so that entries reach the store in
// the order of their sequence numbers.
func (l *Log) AppendWith(ctx context.Context, recs []Record, write func([]Entry) error) ([]Entry, error) {
	for _, r := range recs {
		if err := r.validate(); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	entries := make([]Entry, 0, len(recs))
	head := l.head
	for _, r := range recs {
		t := r.Time
		if t.IsZero() {
			t = l.now()
		}
		e := Entry{
			Seq: head.Seq + 1, Time: t.UTC().Round(0), Actor: r.Actor, Role: r.Role, Action: r.Action,
			Subject: r.Subject, Reason: r.Reason, Digest: r.Digest, Signature: r.Signature, Delegation: r.Delegation, PrevHash: head.Hash,
		}
		e.Hash = e.ComputeHash()
		entries = append(entries, e)
		head = Head{Seq: e.Seq, Hash: e.Hash}
	}
	if err := write(entries); err != nil {
		return nil, err
	}
	l.head = head
	return entries, nil
}

func (r Record) validate() error {
	if strings.TrimSpace(r.Actor) == "" {
		return fmt.Errorf("%w: no actor", ErrInvalid)
	}
	if strings.TrimSpace(string(r.Action)) == "" {
		return fmt.Errorf("%w: no action", ErrInvalid)
	}
	for _, f := range []string{r.Actor, r.Role, string(r.Action), r.Subject, r.Reason} {
		if !utf8.ValidString(f) {
			return fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalid, f)
		}
	}
	if r.Digest != "" && !isHash(r.Digest) {
		return fmt.Errorf("%w: digest %q is not 64 lower-case hex digits", ErrInvalid, r.Digest)
	}
	return nil
}

// MemStore is a Store in memory, for tests and simulations.
type MemStore struct {
	mu      sync.Mutex
	entries []Entry
}

// Append stores e.
func (m *MemStore) Append(_ context.Context, e Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.entries = append(m.entries, e)
	return nil
}

// Entries returns a copy of the stored entries.
func (m *MemStore) Entries(context.Context) ([]Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Entry(nil), m.entries...), nil
}
