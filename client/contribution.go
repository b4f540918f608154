package client

import (
	"bytes"
	"context"
	cryptorand "crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"

	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/secagg"
	"github.com/fedprop/fedprop/task"
)

// ContributionSource fetches the ciphertexts of an aggregate a member was asked to help
// decrypt, so that it can re-add them (transport/grpc's Client streams them from the
// coordinator). It calls each once per contribution, in the decrypt task's order, with the
// whole ciphertext, which it checks is exactly size bytes; an error from each stops the
// fetch and is returned.
type ContributionSource interface {
	FetchContributions(ctx context.Context, q task.ContributionQuery, size int, each func(index int, ciphertext []byte) error) error
}

// contribution is the latest encrypted result this client sent for a run and kind. A repeat
// of the same values in the same round (a retried phase, a coordinator that restarted) is
// answered with the very same ciphertext and signature: committee members sum a contribution
// in one set of contributors only (task.CheckDifference), so a coordinator cannot collect
// fresh encryptions of one answer and decrypt them in overlapping sets. In memory it keeps the
// encryption's 32-byte seed, not the ciphertext (131 to 393 KB), and encrypts again from it:
// a simulator holds tens of thousands of clients. Statistics, sent once per run, persist
// their ciphertext (vector).
type contribution struct {
	run         string
	key         [sha256.Size]byte
	seed        [32]byte
	digest      [sha256.Size]byte
	vector      task.Vector
	endorsement *task.Endorsement
}

// contributionKey identifies what an encrypted result says: run, round, kind, for a tree
// step which step of which tree, the public key (by its SHA-256, keyDigest) and the values.
// The step matters: two levels of a tree may ask a client for the same values (zeros, when
// none of its rows reach the nodes asked), and the second must not reuse the first's
// ciphertext, which an aggregate of the level before already summed.
func contributionKey(t task.Task, keyDigest [sha256.Size]byte, values []float64) [sha256.Size]byte {
	h := sha256.New()
	fmt.Fprintf(h, "%q|%d|%d|", t.RunID, t.Round, t.Kind)
	if g := t.GBDT; g != nil {
		fmt.Fprintf(h, "tree|%d|%d|%d|", g.Step, g.Tree, len(g.Levels))
	}
	h.Write(keyDigest[:])
	return sumFloats(h, values)
}

// sumFloats writes the exact bits of values into h and returns its SHA-256 sum.
func sumFloats(h hash.Hash, values []float64) [sha256.Size]byte {
	var b [8]byte
	for _, v := range values {
		binary.LittleEndian.PutUint64(b[:], math.Float64bits(v))
		h.Write(b[:])
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// encryptResult encrypts values under the task's collective key and, with a Signer, signs
// the ciphertext's SHA-256 bound to the task's run, round and kind (task.ContributionStatement),
// which committee members check before they help decrypt an aggregate. A repeat of the
// latest contribution of the same run, round and kind, when its values need no clipping,
// gets the same ciphertext and signature again. It returns how many values it clipped.
func (s *Session) encryptResult(t task.Task, values []float64) (task.Vector, int, *task.Endorsement, error) {
	if s.enc == nil {
		s.enc = newEncryptor(s.parameters)
	}
	if err := s.enc.forKey(t.PublicKey); err != nil {
		return task.Vector{}, 0, nil, err
	}
	key := contributionKey(t, s.enc.keyDigest, values)
	slot := t.Kind
	bound := s.enc.params.MaxAbsPerContribution(t.CohortSize)
	if c := s.contribs[slot]; c != nil && c.run == t.RunID && c.key == key && within(values, bound) {
		vec, _, err := s.enc.encryptSeeded(t.PublicKey, values, t.CohortSize, c.seed)
		if err != nil {
			return task.Vector{}, 0, nil, err
		}
		if sha256.Sum256(vec.Ciphertext) != c.digest {
			return task.Vector{}, 0, nil, errors.New("repeat of a contribution: encrypting from its seed gave another ciphertext")
		}
		return vec, 0, c.endorsement, nil
	}
	var seed [32]byte
	random := s.encRandom
	if random == nil {
		random = cryptorand.Reader
	}
	if _, err := io.ReadFull(random, seed[:]); err != nil {
		return task.Vector{}, 0, nil, fmt.Errorf("encryption randomness: %w", err)
	}
	vec, clipped, err := s.enc.encryptSeeded(t.PublicKey, values, t.CohortSize, seed)
	if err != nil {
		return task.Vector{}, clipped, nil, err
	}
	digest := sha256.Sum256(vec.Ciphertext)
	var e *task.Endorsement
	if s.signer != nil {
		signed, err := s.signer.Sign(task.ContributionDomain, task.ContributionStatement(t.RunID, t.Round, t.Kind, digest[:])...)
		if err != nil {
			return task.Vector{}, clipped, nil, fmt.Errorf("sign the ciphertext: %w", err)
		}
		e = &task.Endorsement{Certificate: signed.Certificate, Signature: signed.Signature}
	}
	if clipped == 0 {
		if s.contribs == nil {
			s.contribs = map[task.Kind]*contribution{}
		}
		s.contribs[slot] = &contribution{run: t.RunID, key: key, seed: seed, digest: digest, endorsement: e}
	}
	return vec, clipped, e, nil
}

// statsOnce answers an encrypted statistics task once per run: statistics are exact sums of
// the client's records, so a second encryption of them could be summed into another aggregate
// and the two compared. The first answer is persisted before it leaves; a repeat of the same
// question (a retried phase, a restarted coordinator or client) gets that very ciphertext and
// signature again, and a different question (another key, scale or encoding) is declined.
func (s *Session) statsOnce(t task.Task, values []float64) (task.Vector, int, *task.Endorsement, error) {
	if s.enc == nil {
		s.enc = newEncryptor(s.parameters)
	}
	if err := s.enc.forKey(t.PublicKey); err != nil {
		return task.Vector{}, 0, nil, err
	}
	key := contributionKey(t, s.enc.keyDigest, values)
	if prev := s.statsSent[t.RunID]; prev != nil {
		if prev.key == key && within(values, s.enc.params.MaxAbsPerContribution(t.CohortSize)) {
			return prev.vector, 0, prev.endorsement, nil
		}
		return task.Vector{}, 0, nil, fmt.Errorf("%w: this client sent its statistics of run %s already and answers them once: a repeat gets the same answer, another question none",
			ErrDeclined, t.RunID)
	}
	vec, clipped, e, err := s.encryptResult(t, values)
	if err != nil {
		return vec, clipped, e, err
	}
	s.statsSent[t.RunID] = &contribution{run: t.RunID, key: key, vector: vec, endorsement: e}
	if err := s.save(s.ledger, s.released); err != nil {
		delete(s.statsSent, t.RunID)
		return task.Vector{}, clipped, nil, err
	}
	return vec, clipped, e, nil
}

// within reports whether every value is inside [-bound, bound]: encrypting them clips none.
func within(values []float64, bound float64) bool {
	for _, v := range values {
		if !(math.Abs(v) <= bound) {
			return false
		}
	}
	return true
}

// checkContributions checks a decrypt task's list of contributions and returns them as the
// differencing rules see them: one for each contribution the aggregate claims, from distinct
// clients, each naming a SHA-256 and, with a Verifier, signed by that client's own
// certificate (role client) for this run, round and purpose.
func (m *Member) checkContributions(run string, spec *task.DecryptSpec) (task.ContributorSet, error) {
	list := spec.Contributions
	if len(list) != spec.Contributors {
		return task.ContributorSet{}, fmt.Errorf("the task lists %d contributions for an aggregate of %d", len(list), spec.Contributors)
	}
	set := task.ContributorSet{IDs: make([]string, len(list)), Digests: make([]string, len(list))}
	seen := make(map[string]bool, len(list))
	for i, c := range list {
		switch {
		case c.ClientID == "":
			return task.ContributorSet{}, fmt.Errorf("contribution %d names no client", i)
		case seen[c.ClientID]:
			return task.ContributorSet{}, fmt.Errorf("client %s contributes twice", c.ClientID)
		case len(c.Digest) != sha256.Size:
			return task.ContributorSet{}, fmt.Errorf("contribution %d (client %s): a digest of %d bytes, want %d", i, c.ClientID, len(c.Digest), sha256.Size)
		}
		seen[c.ClientID] = true
		if v := m.cfg.Verifier; v != nil {
			if c.Endorsement == nil {
				return task.ContributorSet{}, fmt.Errorf("contribution %d (client %s) is not signed", i, c.ClientID)
			}
			signed := pki.Signed{Certificate: c.Endorsement.Certificate, Signature: c.Endorsement.Signature}
			want := pki.Identity{Name: c.ClientID, Role: pki.RoleClient}
			if _, err := v.Verify(signed, want, task.ContributionDomain, task.ContributionStatement(run, spec.AggregateRound, spec.Purpose, c.Digest)...); err != nil {
				return task.ContributorSet{}, fmt.Errorf("contribution %d (client %s): %w", i, c.ClientID, err)
			}
		}
		set.IDs[i], set.Digests[i] = c.ClientID, hex.EncodeToString(c.Digest)
	}
	return set, nil
}

// errNoSource is why a member with a Verifier refuses when it cannot fetch contributions.
var errNoSource = errors.New("this member has no way to fetch the aggregate's contributions (MemberConfig.Contributions), so it cannot check that the aggregate is their sum")

// reAdd fetches the aggregate's contributions, checks each against the SHA-256 its client
// signed and adds it, and checks that the aggregate is their sum (secagg.SumCheck): exact,
// so a coordinator that changed one coefficient of c1, or left out, repeated or swapped a
// contribution, is caught.
func (m *Member) reAdd(ctx context.Context, t task.Task, clientID, digest string) error {
	spec := t.Decrypt
	if m.cfg.Contributions == nil {
		return errNoSource
	}
	check, err := secagg.NewSumCheck(m.params, spec.Aggregate)
	if err != nil {
		return err
	}
	next := 0
	q := task.ContributionQuery{ClientID: clientID, RunID: t.RunID, Round: spec.AggregateRound, Purpose: spec.Purpose, AggregateDigest: digest}
	err = m.cfg.Contributions.FetchContributions(ctx, q, check.Size(), func(i int, ciphertext []byte) error {
		if i != next || i >= len(spec.Contributions) {
			return fmt.Errorf("%w: contribution %d arrived, expected %d of %d", secagg.ErrNotTheSum, i, next, len(spec.Contributions))
		}
		c := spec.Contributions[i]
		if d := sha256.Sum256(ciphertext); !bytes.Equal(d[:], c.Digest) {
			return fmt.Errorf("%w: the ciphertext of contribution %d (client %s) is not the one the task lists", secagg.ErrNotTheSum, i, c.ClientID)
		}
		if err := check.Add(ciphertext); err != nil {
			return fmt.Errorf("contribution %d (client %s): %w", i, c.ClientID, err)
		}
		next++
		return nil
	})
	if err != nil {
		return fmt.Errorf("fetch contributions: %w", err)
	}
	if next != len(spec.Contributions) {
		return fmt.Errorf("%w: %d of the %d contributions arrived", secagg.ErrNotTheSum, next, len(spec.Contributions))
	}
	return check.Verify()
}
