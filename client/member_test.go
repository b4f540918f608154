package client_test

import (
	"context"
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/privacy"
	"github.com/fedprop/fedprop/secagg"
	"github.com/fedprop/fedprop/strategy"
	"github.com/fedprop/fedprop/synth"
	"github.com/fedprop/fedprop/task"
)

// committeeAtDecrypt drives a coordinator core and three member sessions through committee
// setup and the stats phase until the stats aggregate's decrypt tasks are out, and returns
// the sessions and one decrypt task per member.
// memberSession is a committee member's session over branch b, sending only encrypted sums:
// a fresh identity key from a temporary state directory, cfg's other settings, and
// min_contributors 2 unless cfg sets it.
func memberSession(t *testing.T, schema *dataset.Schema, b synth.Branch, cfg client.MemberConfig) *client.Session {
	t.Helper()
	id, err := client.StateDir(t.TempDir()).Identity()
	require.NoError(t, err)
	cfg.Identity = id
	if cfg.MinContributors == 0 {
		cfg.MinContributors = 2
	}
	m, err := client.NewMember(cfg)
	require.NoError(t, err)
	// A member with a certificate signs its own results with it, as every client with a kit.
	s, err := client.NewSession(b.Name, schema, b.Train, b.Test, client.SessionOptions{Member: m, RequireEncryption: true, Signer: cfg.Signer,
		Parameters: cfg.Parameters})
	require.NoError(t, err)
	return s
}

// coreSource serves members' contribution fetches from a coordinator core in the same process,
// as the coordinator's FetchContributions does over gRPC.
type coreSource struct{ core *coordinator.Core }

func (s coreSource) FetchContributions(_ context.Context, q task.ContributionQuery, size int, each func(int, []byte) error) error {
	cts, err := s.core.Contributions(q)
	if err != nil {
		return err
	}
	for i, ct := range cts {
		if len(ct) != size {
			return fmt.Errorf("contribution %d of %d bytes, want %d", i, len(ct), size)
		}
		if err := each(i, ct); err != nil {
			return err
		}
	}
	return nil
}

func committeeAtDecrypt(t *testing.T, minContributors int, floor ...privacy.Floor) (map[string]*client.Session, map[string]task.Task) {
	t.Helper()
	cfg := synth.Config{Branches: 3, CustomersPerBranch: 150, Seed: 8}.WithDefaults()
	branches, err := synth.Generate(cfg)
	require.NoError(t, err)
	schema := synth.Schema(cfg)
	var names []string
	for _, b := range branches {
		names = append(names, b.Name)
	}
	rc := coordinator.RunConfig{ID: "r", Rounds: 1, MinClients: 3, MinCohort: 3, Quorum: 2, Strategy: strategy.Config{Name: "fedavg"},
		SecureAggregation: coordinator.SecureAggregationConfig{Mode: "he", Committee: names, Threshold: 2, MinContributors: 2}}.WithDefaults()
	require.NoError(t, rc.Validate())
	core, err := coordinator.NewCore(rc, schema, nil, nil, nil)
	require.NoError(t, err)
	core.SetDeadlineTicks(1000)
	sessions := map[string]*client.Session{}
	for _, b := range branches {
		mc := client.MemberConfig{MinContributors: minContributors}
		if len(floor) > 0 {
			mc.Floor = floor[0]
		}
		s := memberSession(t, schema, b, mc)
		sessions[b.Name] = s
		require.NoError(t, core.Register(task.Registration{ClientID: b.Name, IdentityKey: s.IdentityKey()}))
	}
	for range 10 {
		decrypts := map[string]task.Task{}
		var results []task.Result
		for _, name := range names {
			tk, ok, err := core.Poll(name)
			require.NoError(t, err)
			if !ok {
				continue
			}
			if tk.Kind == task.KindDecrypt {
				decrypts[name] = tk
				continue
			}
			res, _, err := sessions[name].Handle(context.Background(), tk)
			require.NoError(t, err)
			results = append(results, res)
		}
		if len(decrypts) > 0 {
			return sessions, decrypts
		}
		for _, r := range results {
			_, err := core.Submit(r)
			require.NoError(t, err)
		}
		core.Advance()
	}
	t.Fatal("no decrypt task reached the committee")
	return nil, nil
}

func TestMemberChecksEveryDecryptTaskBeforeItHelps(t *testing.T) {
	sessions, decrypts := committeeAtDecrypt(t, 3)
	var name string
	var good task.Task
	for name, good = range decrypts {
		break
	}
	require.Equal(t, 3, good.Decrypt.Contributors)

	cases := []struct {
		name string
		edit func(tk *task.Task)
		want string
	}{
		{"another run", func(tk *task.Task) { tk.RunID = "other" }, "run"},
		{"a stated count that is not the aggregate's", func(tk *task.Task) { tk.Decrypt.Contributors = 7 }, "contributions"},
		{"a round that is not the task's", func(tk *task.Task) { tk.Decrypt.AggregateRound = 5 }, "round"},
		{"no aggregate", func(tk *task.Task) { tk.Decrypt.Aggregate = []byte{1, 2, 3} }, "aggregate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tk := good
			spec := *good.Decrypt
			tk.Decrypt = &spec
			tc.edit(&tk)
			_, rep, err := sessions[name].Handle(context.Background(), tk)
			require.ErrorIs(t, err, client.ErrRefused)
			assert.Contains(t, err.Error(), tc.want)
			require.NotNil(t, rep.Share, "a refusal is reported for the log too")
		})
	}

	res, rep, err := sessions[name].Handle(context.Background(), good)
	require.NoError(t, err)
	assert.NotEmpty(t, res.DecryptionShare)
	require.NotNil(t, rep.Share)
	assert.Equal(t, task.KindStats, rep.Share.Purpose)
	assert.Equal(t, 3, rep.Share.Contributors)
	assert.Len(t, rep.Share.Digest, 64, "the share log names the aggregate by its SHA-256")
}

func TestMemberRefusesAggregatesBelowItsMinContributors(t *testing.T) {
	// The members require 4 contributions; the stats aggregate sums 3.
	sessions, decrypts := committeeAtDecrypt(t, 4)
	for name, tk := range decrypts {
		_, _, err := sessions[name].Handle(context.Background(), tk)
		require.ErrorIs(t, err, client.ErrRefused)
		assert.Contains(t, err.Error(), "below min_contributors 4")
	}
}

// TestMemberChecksTheNoiseAnAggregateCarries: under its floor a member helps decrypt only
// aggregates whose contributors were asked for noise, enough of them to carry at least
// min_noise_multiplier: K contributions of 1/sqrt(m) shares carry z*sqrt(K/m).
func TestMemberChecksTheNoiseAnAggregateCarries(t *testing.T) {
	floor := privacy.Floor{Require: privacy.RequireRecord, MinNoiseMultiplier: 1}
	sessions, decrypts := committeeAtDecrypt(t, 2, floor)
	var name string
	var good task.Task
	for name, good = range decrypts {
		break
	}
	require.Equal(t, 3, good.Decrypt.Contributors)
	clientLevel := func(z float64, m int) *task.DPSpec {
		return &task.DPSpec{Mechanism: task.DPClient, ClipNorm: 1, NoiseMultiplier: z, ExpectedContributors: m}
	}
	cases := []struct {
		name    string
		purpose task.Kind
		dp      *task.DPSpec
		noise   *task.ReleaseNoise
		want    string
	}{
		{"an un-noised statistics aggregate", task.KindStats, nil, nil, "un-noised"},
		{"an un-noised train aggregate", task.KindTrain, nil, nil, "un-noised"},
		{"3 of 10 expected shares of z = 1", task.KindTrain, clientLevel(1, 10), nil, "below min_noise_multiplier 1"},
		{"z below the floor", task.KindTrain, clientLevel(0.5, 3), nil, "below min_noise_multiplier 1"},
		{"a clipping norm of 1e300 is no bound", task.KindTrain, &task.DPSpec{Mechanism: task.DPClient, ClipNorm: math.Inf(1), NoiseMultiplier: 2, ExpectedContributors: 3}, nil, "clipping norm"},
		{"release noise divided by more contributors than arrived", task.KindEvaluate, nil, &task.ReleaseNoise{NoiseMultiplier: 2, ExpectedContributors: 100}, "below min_noise_multiplier 1"},
		{"3 of 3 expected shares of z = 1", task.KindTrain, clientLevel(1, 3), nil, ""},
		{"record level: every contribution noised itself", task.KindTrain, &task.DPSpec{Mechanism: task.DPRecord, ClipNorm: 1, NoiseMultiplier: 1.5, SamplingRate: 0.1, Steps: 5}, nil, ""},
		{"tree histograms: 3 of 10 expected shares of z = 1.5", task.KindTrain, &task.DPSpec{Mechanism: task.DPRecord, ClipNorm: 1, NoiseMultiplier: 1.5, SamplingRate: 1, Steps: 1, ExpectedContributors: 10}, nil, "below min_noise_multiplier 1"},
		{"tree histograms: 3 of 3 expected shares of z = 1.5", task.KindTrain, &task.DPSpec{Mechanism: task.DPRecord, ClipNorm: 1, NoiseMultiplier: 1.5, SamplingRate: 1, Steps: 1, ExpectedContributors: 3}, nil, ""},
		{"an evaluation with enough noise", task.KindEvaluate, nil, &task.ReleaseNoise{NoiseMultiplier: 2, ExpectedContributors: 3}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tk := good
			spec := *good.Decrypt
			spec.Purpose, spec.DP, spec.Noise = tc.purpose, tc.dp, tc.noise
			tk.Decrypt = &spec
			res, _, err := sessions[name].Handle(context.Background(), tk)
			if tc.want == "" {
				require.NoError(t, err)
				assert.NotEmpty(t, res.DecryptionShare)
				return
			}
			require.ErrorIs(t, err, client.ErrRefused)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestStateDirKeepsKeysPrivateAndAcrossRestarts(t *testing.T) {
	dir := client.StateDir(t.TempDir())
	first, err := dir.Identity()
	require.NoError(t, err)
	again, err := dir.Identity()
	require.NoError(t, err)
	assert.Equal(t, first.Bytes(), again.Bytes(), "a restarted client keeps its identity")
	info, err := os.Stat(filepath.Join(string(dir), "identity.key"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm())

	require.NoError(t, dir.SaveMember([]byte("material")))
	info, err = os.Stat(filepath.Join(string(dir), "committee.key"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm())

	require.NoError(t, os.Chmod(filepath.Join(string(dir), "committee.key"), 0o644))
	_, err = dir.Member()
	require.Error(t, err, "a key file others can read is refused")
	assert.Contains(t, err.Error(), "chmod 600")
}

// keygenTask is a keygen task of run r for the member at point index.
func keygenTask(setup string, step, index, threshold int, roster []task.CommitteeMember) task.Task {
	crs := sha256.Sum256([]byte(setup))
	return task.Task{ID: fmt.Sprintf("%s/%d/%d", setup, step, index), RunID: "r", Kind: task.KindKeygen,
		Keygen: &task.KeygenSpec{SetupID: setup, Step: step, Index: index, Threshold: threshold, CRSSeed: crs[:], Members: roster}}
}

// TestKeygenIsOneWayAndMembersHoldTheirOwnCommitteePolicy plays a coordinator that replays
// keygen step 2 to collect a second set of points of one member's secret polynomial: with
// T = 2 and a roster naming its colluder twice, with a smaller threshold, with another
// committee for the same setup, or for a setup never started. The member refuses each, and a
// retry of the step it answered gets the same boxes.
func TestKeygenIsOneWayAndMembersHoldTheirOwnCommitteePolicy(t *testing.T) {
	identities := make([]*ecdh.PrivateKey, 6)
	for i := range identities {
		id, err := client.StateDir(t.TempDir()).Identity()
		require.NoError(t, err)
		identities[i] = id
	}
	schema, train, eval := branchFile(t, false, 200)
	m, err := client.NewMember(client.MemberConfig{MinContributors: 2, Identity: identities[0]})
	require.NoError(t, err)
	s, err := client.NewSession("m1", schema, train, eval, client.SessionOptions{Member: m, RequireEncryption: true})
	require.NoError(t, err)
	roster := func(n int) []task.CommitteeMember {
		var out []task.CommitteeMember
		for i := range n {
			out = append(out, task.CommitteeMember{ClientID: fmt.Sprintf("m%d", i+1), Index: i + 1, IdentityKey: identities[i].PublicKey().Bytes()})
		}
		return out
	}
	handle := func(tk task.Task) (task.Result, error) {
		tk.Encoding.SchemaHash = task.SchemaHash(schema)
		res, _, err := s.Handle(context.Background(), tk)
		return res, err
	}
	_, err = handle(keygenTask("s1", task.KeygenPublicKey, 1, 0, nil))
	require.NoError(t, err)

	colluderTwice := roster(3)
	colluderTwice[2].IdentityKey = colluderTwice[1].IdentityKey
	sameClientTwice := roster(3)
	sameClientTwice[2].ClientID = "m2"
	refused := []struct {
		name string
		task task.Task
		want string
	}{
		{"one identity key for two members", keygenTask("s1", task.KeygenShares, 1, 2, colluderTwice), "one identity key for two members"},
		{"one client at two points", keygenTask("s1", task.KeygenShares, 1, 2, sameClientTwice), "repeated"},
		{"T = 2 of 6", keygenTask("s1", task.KeygenShares, 1, 2, roster(6)), "below this member's minimum 3"},
		{"T above N", keygenTask("s1", task.KeygenShares, 1, 4, roster(3)), "threshold 4"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			_, err := handle(tc.task)
			require.ErrorIs(t, err, client.ErrRefused)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	first, err := handle(keygenTask("s1", task.KeygenShares, 1, 2, roster(3)))
	require.NoError(t, err)
	require.Len(t, first.Boxes, 2)
	again, err := handle(keygenTask("s1", task.KeygenShares, 1, 2, roster(3)))
	require.NoError(t, err)
	assert.Equal(t, first.Boxes, again.Boxes, "a retry gets the very same boxes")

	_, err = handle(keygenTask("s1", task.KeygenShares, 1, 3, roster(3)))
	require.ErrorIs(t, err, client.ErrRefused, "another committee for the same secret")
	assert.Contains(t, err.Error(), "already shared this member's secret with another committee")
	_, err = handle(keygenTask("s2", task.KeygenShares, 1, 2, roster(3)))
	require.ErrorIs(t, err, task.ErrStale, "a setup that step 1 never started")
	_, err = handle(keygenTask("s1", task.KeygenCombine, 1, 3, roster(3)))
	require.ErrorIs(t, err, client.ErrRefused, "combining for another committee than the one shared with")
}

// TestANewSetupDoesNotWipeTheFinishedKey: a step 1 after a completed setup starts a new
// secret but the finished key keeps serving until a new setup completes.
func TestANewSetupDoesNotWipeTheFinishedKey(t *testing.T) {
	sessions, decrypts := committeeAtDecrypt(t, 2)
	for name, tk := range decrypts {
		fresh := keygenTask("r/setup-9", task.KeygenPublicKey, 1, 0, nil)
		fresh.Encoding = tk.Encoding
		_, _, err := sessions[name].Handle(context.Background(), fresh)
		require.NoError(t, err)
		res, _, err := sessions[name].Handle(context.Background(), tk)
		require.NoError(t, err, "the finished key still decrypts")
		assert.NotEmpty(t, res.DecryptionShare)
	}
}

// TestMembersCheckEveryIdentityKeyAgainstItsOwnersCertificate: members endorse their identity
// key and public-key share with their certificate's key at step 1. A coordinator that swaps a
// member's identity key in the roster for one it holds, or vouches for a key with another
// certificate, gets nothing sealed; the honest setup completes and decrypts.
func TestMembersCheckEveryIdentityKeyAgainstItsOwnersCertificate(t *testing.T) {
	ca, err := pki.NewCA(pki.InitOptions{})
	require.NoError(t, err)
	cfg := synth.Config{Branches: 3, CustomersPerBranch: 150, Seed: 8}.WithDefaults()
	branches, err := synth.Generate(cfg)
	require.NoError(t, err)
	schema := synth.Schema(cfg)
	evil, err := client.StateDir(t.TempDir()).Identity()
	require.NoError(t, err)
	evilCred, err := ca.Issue(pki.IssueRequest{Role: pki.RoleClient, Name: "evil"})
	require.NoError(t, err)
	evilSigner, err := evilCred.Signer()
	require.NoError(t, err)

	var firstStats task.Task
	run := func(t *testing.T, tamper func(tk *task.Task)) (refusals []error, boxes int, decrypted bool) {
		var names []string
		for _, b := range branches {
			names = append(names, b.Name)
		}
		rc := coordinator.RunConfig{ID: "r", Rounds: 1, MinClients: 3, MinCohort: 3, Quorum: 3, MaxAttempts: 1, Strategy: strategy.Config{Name: "fedavg"},
			SecureAggregation: coordinator.SecureAggregationConfig{Mode: "he", Committee: names, Threshold: 2, MinContributors: 2}}.WithDefaults()
		core, err := coordinator.NewCore(rc, schema, nil, nil, nil)
		require.NoError(t, err)
		core.SetDeadlineTicks(1000)
		sessions := map[string]*client.Session{}
		for _, b := range branches {
			cred, err := ca.Issue(pki.IssueRequest{Role: pki.RoleClient, Name: b.Name})
			require.NoError(t, err)
			signer, err := cred.Signer()
			require.NoError(t, err)
			s := memberSession(t, schema, b, client.MemberConfig{Signer: signer, Verifier: pki.NewVerifier(ca.Certificate()), Contributions: coreSource{core}})
			sessions[b.Name] = s
			require.NoError(t, core.Register(task.Registration{ClientID: b.Name, IdentityKey: s.IdentityKey(), TrainRecords: s.TrainRows()}))
		}
		for range 12 {
			var results []task.Result
			for _, name := range names {
				tk, ok, err := core.Poll(name)
				require.NoError(t, err)
				if !ok {
					continue
				}
				if tk.Kind == task.KindDecrypt {
					decrypted = true
				}
				if tk.Kind == task.KindStats && firstStats.ID == "" {
					firstStats = tk
				}
				if tk.Kind == task.KindKeygen && name == names[0] && tamper != nil {
					tamper(&tk)
				}
				res, _, err := sessions[name].Handle(context.Background(), tk)
				if err != nil {
					refusals = append(refusals, err)
					continue
				}
				boxes += len(res.Boxes)
				results = append(results, res)
			}
			for _, r := range results {
				_, err := core.Submit(r)
				require.NoError(t, err)
			}
			core.Advance()
			if decrypted || core.Status().Status.Finished() {
				break
			}
		}
		return refusals, boxes, decrypted
	}

	t.Run("honest", func(t *testing.T) {
		refusals, boxes, decrypted := run(t, nil)
		assert.Empty(t, refusals)
		assert.Equal(t, 6, boxes, "each of 3 members seals a share for each of the 2 others")
		assert.True(t, decrypted, "the setup completes and an aggregate reaches the committee")
	})

	// An app client that pinned the committee checks every task's key against it.
	require.NotNil(t, firstStats.KeyInfo)
	var names []string
	for _, b := range branches {
		names = append(names, b.Name)
	}
	app := func(pin *client.CommitteePin) *client.Session {
		b := branches[0]
		s, err := client.NewSession("app-1", schema, b.Train, b.Test, client.SessionOptions{RequireEncryption: true, Committee: pin})
		require.NoError(t, err)
		return s
	}
	pin := &client.CommitteePin{Members: names, MinThreshold: 2, Verifier: pki.NewVerifier(ca.Certificate())}
	res, _, err := app(pin).Handle(context.Background(), firstStats)
	require.NoError(t, err, "the committee's endorsed key")
	assert.NotEmpty(t, res.Sum.Ciphertext)

	forged := map[string]func(tk *task.Task){
		"another key under the same endorsements": func(tk *task.Task) {
			tk.PublicKey = slices.Clone(tk.PublicKey)
			tk.PublicKey[len(tk.PublicKey)-1] ^= 1
		},
		"no endorsements": func(tk *task.Task) { tk.KeyInfo = nil },
		"a committee with an outsider": func(tk *task.Task) {
			k := *tk.KeyInfo
			k.Members = append(slices.Clone(k.Members), "evil")
			tk.KeyInfo = &k
		},
		"a threshold the endorsements do not state": func(tk *task.Task) {
			k := *tk.KeyInfo
			k.Threshold = 3
			tk.KeyInfo = &k
		},
		"endorsements by one member only": func(tk *task.Task) {
			k := *tk.KeyInfo
			k.Endorsements = []task.Endorsement{k.Endorsements[0], k.Endorsements[0]}
			tk.KeyInfo = &k
		},
	}
	for name, forge := range forged {
		t.Run("app client refuses "+name, func(t *testing.T) {
			tk := firstStats
			forge(&tk)
			_, _, err := app(pin).Handle(context.Background(), tk)
			require.ErrorIs(t, err, client.ErrDeclined)
			assert.Contains(t, err.Error(), "not endorsed by the pinned committee")
		})
	}
	t.Run("app client refuses a threshold below its own minimum", func(t *testing.T) {
		_, _, err := app(&client.CommitteePin{Members: names, MinThreshold: 3, Verifier: pin.Verifier}).Handle(context.Background(), firstStats)
		require.ErrorIs(t, err, client.ErrDeclined)
		assert.Contains(t, err.Error(), "below this client's minimum 3")
	})
	swaps := map[string]func(m *task.CommitteeMember){
		"the coordinator's own identity key for member 2": func(m *task.CommitteeMember) { m.IdentityKey = evil.PublicKey().Bytes() },
		"a key vouched for by another certificate": func(m *task.CommitteeMember) {
			m.IdentityKey = evil.PublicKey().Bytes()
			e, err := evilSigner.Sign("fedprop/committee-member/v1", []byte("r"), []byte("x"))
			require.NoError(t, err)
			m.Endorsement = &task.Endorsement{Certificate: e.Certificate, Signature: e.Signature}
		},
		"no endorsement at all":    func(m *task.CommitteeMember) { m.Endorsement = nil },
		"another public-key share": func(m *task.CommitteeMember) { m.PublicKeyShareDigest = make([]byte, 32) },
	}
	for name, swap := range swaps {
		t.Run(name, func(t *testing.T) {
			refusals, _, decrypted := run(t, func(tk *task.Task) {
				if tk.Keygen.Step != task.KeygenShares {
					return
				}
				members := slices.Clone(tk.Keygen.Members)
				swap(&members[1])
				tk.Keygen.Members = members
			})
			require.NotEmpty(t, refusals)
			require.ErrorIs(t, refusals[0], client.ErrRefused)
			assert.Contains(t, refusals[0].Error(), "member branch-001")
			assert.False(t, decrypted, "nothing reaches decryption")
		})
	}
}

// TestARandomCiphertextCostsOnlyTheRoundItPoisons: in he mode no single result can be read, so
// a client that sends random ciphertext words is caught by the decrypted aggregate's
// plausibility (counts above what its contributors announced): that round is discarded, never
// committed, and the next attempt without it commits what the honest clients sent.
func TestARandomCiphertextCostsOnlyTheRoundItPoisons(t *testing.T) {
	cfg := synth.Config{Branches: 4, CustomersPerBranch: 300, Seed: 12}.WithDefaults()
	branches, err := synth.Generate(cfg)
	require.NoError(t, err)
	schema := synth.Schema(cfg)
	var committee, names []string
	for i, b := range branches {
		names = append(names, b.Name)
		if i < 3 {
			committee = append(committee, b.Name)
		}
	}
	evil := names[3]
	rc := coordinator.RunConfig{ID: "r", Rounds: 1, MinClients: 4, MinCohort: 4, Quorum: 3, MaxAttempts: 3, Strategy: strategy.Config{Name: "fedavg"},
		SecureAggregation: coordinator.SecureAggregationConfig{Mode: "he", Committee: committee, Threshold: 2, MinContributors: 2}}.WithDefaults()
	core, err := coordinator.NewCore(rc, schema, nil, nil, nil)
	require.NoError(t, err)
	core.SetDeadlineTicks(1000)
	sessions := map[string]*client.Session{}
	honestRecords := 0.0
	for _, b := range branches {
		var s *client.Session
		if b.Name != evil {
			s = memberSession(t, schema, b, client.MemberConfig{})
			honestRecords += float64(b.Train.Len())
		} else {
			s, err = client.NewSession(b.Name, schema, b.Train, b.Test, client.SessionOptions{RequireEncryption: true})
			require.NoError(t, err)
		}
		sessions[b.Name] = s
		require.NoError(t, core.Register(task.Registration{ClientID: b.Name, IdentityKey: s.IdentityKey(), TrainRecords: s.TrainRows()}))
	}
	poisoned, discarded := 0, 0
	random := mrand.New(mrand.NewPCG(1, 2))
	for range 40 {
		var results []task.Result
		for _, name := range names {
			tk, ok, err := core.Poll(name)
			require.NoError(t, err)
			if !ok {
				continue
			}
			res, _, err := sessions[name].Handle(context.Background(), tk)
			require.NoError(t, err)
			if name == evil && tk.Kind == task.KindTrain && poisoned == 0 {
				// Random words below every modulus, behind a valid header.
				ct := slices.Clone(res.Sum.Ciphertext)
				for i := 32; i+8 <= len(ct); i += 8 {
					binary.LittleEndian.PutUint64(ct[i:], random.Uint64()>>11)
				}
				res.Sum.Ciphertext = ct
				poisoned++
			}
			results = append(results, res)
		}
		for _, r := range results {
			_, err := core.Submit(r)
			require.NoError(t, err, "the coordinator cannot tell a random ciphertext from another")
		}
		for _, n := range core.Ready().Notes {
			if n.Msg == "implausible aggregate discarded" {
				discarded++
			}
		}
		core.Advance()
		if core.Status().Status.Finished() {
			break
		}
	}
	require.Equal(t, 1, poisoned)
	assert.Equal(t, 1, discarded, "the poisoned round was discarded and logged")
	st := core.Status()
	require.Equal(t, coordinator.RunCompleted, st.Status, st.Message)
	last := core.LastModel()
	require.NotNil(t, last)
	assert.Equal(t, uint64(1), last.Version, "the poisoned round was discarded, not committed")
	assert.LessOrEqual(t, last.Examples, honestRecords+float64(branches[3].Train.Len())+1, "no garbage count was committed")
}

// verifyFixture is a committee of three members with certificates at their first decrypt
// task (the statistics aggregate of run r, from a coordinator core), a CA that also vouches
// for app clients, the run's collective public key, and a contribution source that serves
// the core's aggregate and any aggregate a test builds as a deviating coordinator would.
type verifyFixture struct {
	t        *testing.T
	ca       *pki.CA
	core     *coordinator.Core
	names    []string
	sessions map[string]*client.Session
	decrypts map[string]task.Task
	logged   map[string]int // share records each member persisted
	logs     map[string][]client.ShareRecord
	pk       []byte
	params   secagg.Params
	enc      *secagg.Encryptor
	signers  map[string]*pki.Signer
	source   *fakeSource
	saved    map[string][]byte // members' persisted key material
	schema   *dataset.Schema
	branches map[string]synth.Branch
}

// signedCT is one client's encrypted result with its signature, as a decrypt task lists it.
type signedCT struct {
	ct []byte
	c  task.Contribution
}

// fakeSource serves the ciphertexts of the aggregates a test built, by the aggregate's
// digest, and the core's otherwise.
type fakeSource struct {
	core   *coordinator.Core
	served map[string][][]byte
}

func (s *fakeSource) FetchContributions(ctx context.Context, q task.ContributionQuery, size int, each func(int, []byte) error) error {
	cts, ok := s.served[q.AggregateDigest]
	if !ok {
		return coreSource{s.core}.FetchContributions(ctx, q, size, each)
	}
	for i, ct := range cts {
		if err := each(i, ct); err != nil {
			return err
		}
	}
	return nil
}

func newVerifyFixture(t *testing.T) *verifyFixture {
	t.Helper()
	ca, err := pki.NewCA(pki.InitOptions{})
	require.NoError(t, err)
	cfg := synth.Config{Branches: 3, CustomersPerBranch: 150, Seed: 8}.WithDefaults()
	branches, err := synth.Generate(cfg)
	require.NoError(t, err)
	schema := synth.Schema(cfg)
	fx := &verifyFixture{t: t, ca: ca, sessions: map[string]*client.Session{}, decrypts: map[string]task.Task{}, logged: map[string]int{},
		logs: map[string][]client.ShareRecord{}, signers: map[string]*pki.Signer{}, saved: map[string][]byte{}, schema: schema, branches: map[string]synth.Branch{}}
	for _, b := range branches {
		fx.names = append(fx.names, b.Name)
		fx.branches[b.Name] = b
	}
	rc := coordinator.RunConfig{ID: "r", Rounds: 1, MinClients: 3, MinCohort: 3, Quorum: 2, Strategy: strategy.Config{Name: "fedavg"},
		SecureAggregation: coordinator.SecureAggregationConfig{Mode: "he", Committee: fx.names, Threshold: 2, MinContributors: 2}}.WithDefaults()
	require.NoError(t, rc.Validate())
	fx.core, err = coordinator.NewCore(rc, schema, nil, nil, nil)
	require.NoError(t, err)
	fx.core.SetDeadlineTicks(1000)
	fx.source = &fakeSource{core: fx.core, served: map[string][][]byte{}}
	for _, b := range branches {
		name := b.Name
		s := memberSession(t, schema, b, client.MemberConfig{Signer: fx.signer(name, pki.RoleClient), Verifier: pki.NewVerifier(ca.Certificate()),
			Contributions: fx.source, LogShare: func(r client.ShareRecord) error {
				fx.logged[name]++
				fx.logs[name] = append(fx.logs[name], r)
				return nil
			}, Persist: func(b []byte) error { fx.saved[name] = b; return nil }})
		fx.sessions[name] = s
		require.NoError(t, fx.core.Register(task.Registration{ClientID: name, IdentityKey: s.IdentityKey(), TrainRecords: s.TrainRows()}))
	}
	for range 10 {
		var results []task.Result
		for _, name := range fx.names {
			tk, ok, err := fx.core.Poll(name)
			require.NoError(t, err)
			if !ok {
				continue
			}
			if tk.Kind == task.KindDecrypt {
				fx.decrypts[name] = tk
				continue
			}
			if tk.PublicKey != nil {
				fx.pk = tk.PublicKey
			}
			res, _, err := fx.sessions[name].Handle(context.Background(), tk)
			require.NoError(t, err)
			results = append(results, res)
		}
		if len(fx.decrypts) > 0 {
			break
		}
		for _, r := range results {
			_, err := fx.core.Submit(r)
			require.NoError(t, err)
		}
		fx.core.Advance()
	}
	require.NotEmpty(t, fx.decrypts, "no decrypt task reached the committee")
	fx.params, err = secagg.NewParams(secagg.DefaultParamsLiteral())
	require.NoError(t, err)
	fx.enc, err = secagg.NewEncryptor(fx.params, fx.pk, nil)
	require.NoError(t, err)
	return fx
}

// signer is the signer of a certificate the CA issues to name in role (one per name).
func (fx *verifyFixture) signer(name string, role pki.Role) *pki.Signer {
	key := string(role) + "/" + name
	if s, ok := fx.signers[key]; ok {
		return s
	}
	cred, err := fx.ca.Issue(pki.IssueRequest{Role: role, Name: name})
	require.NoError(fx.t, err)
	s, err := cred.Signer()
	require.NoError(fx.t, err)
	fx.signers[key] = s
	return s
}

// contribute is a fresh encrypted result of client name for the round and purpose, signed
// with the certificate of name in role.
func (fx *verifyFixture) contribute(name string, role pki.Role, round int, purpose task.Kind) signedCT {
	ct, err := fx.enc.Encrypt([]float64{1, 2, 3, 4})
	require.NoError(fx.t, err)
	digest := sha256.Sum256(ct)
	e, err := fx.signer(name, role).Sign(task.ContributionDomain, task.ContributionStatement("r", round, purpose, digest[:])...)
	require.NoError(fx.t, err)
	return signedCT{ct: ct, c: task.Contribution{ClientID: name, Digest: digest[:], Endorsement: &task.Endorsement{Certificate: e.Certificate, Signature: e.Signature}}}
}

// decryptTask is a decrypt task for member, as a deviating coordinator may build it: listed
// in the task, summed into the aggregate (with a header claiming len(listed) contributions,
// whatever summed holds), served by FetchContributions, and edit applied to the aggregate.
func (fx *verifyFixture) decryptTask(member string, round int, purpose task.Kind, listed, summed, served []signedCT, edit func([]byte)) task.Task {
	fx.t.Helper()
	sum, err := secagg.NewSum(fx.params, fx.pk, 4)
	require.NoError(fx.t, err)
	for _, s := range summed {
		require.NoError(fx.t, sum.Add(s.ct))
	}
	agg, err := sum.MarshalBinary()
	require.NoError(fx.t, err)
	binary.LittleEndian.PutUint32(agg[28:32], uint32(len(listed)))
	if edit != nil {
		edit(agg)
	}
	var list []task.Contribution
	for _, s := range listed {
		list = append(list, s.c)
	}
	var cts [][]byte
	for _, s := range served {
		cts = append(cts, s.ct)
	}
	fx.source.served[secagg.Digest(agg)] = cts
	honest := fx.decrypts[member]
	return task.Task{ID: fmt.Sprintf("forged/%d/%s/%d", round, purpose, len(fx.source.served)), RunID: "r", Round: round, Kind: task.KindDecrypt,
		Encoding: honest.Encoding, Decrypt: &task.DecryptSpec{Purpose: purpose, AggregateRound: round, Contributors: len(listed),
			Aggregate: agg, Active: honest.Decrypt.Active, Contributions: list}}
}

// member is the first member with a decrypt task.
func (fx *verifyFixture) member() string {
	for _, name := range fx.names {
		if _, ok := fx.decrypts[name]; ok {
			return name
		}
	}
	return ""
}

// TestMembersVerifyWhatTheyDecrypt plays a coordinator that deviates in every way a member
// can check: it changes one coefficient of c1, swaps in an aggregate that leaves out or
// repeats a contribution, forges a contribution (a bad signature, a signature by a
// certificate that is not a client's, one client twice), or lists a contribution whose
// ciphertext it then serves changed. The member refuses each with the aggregate's digest in
// its record, and gives no share; the honest aggregate and honest retries decrypt.
func TestMembersVerifyWhatTheyDecrypt(t *testing.T) {
	fx := newVerifyFixture(t)
	m := fx.member()
	s := fx.sessions[m]
	const round = 0
	a, b, c := fx.contribute("app-a", pki.RoleClient, round, task.KindTrain), fx.contribute("app-b", pki.RoleClient, round, task.KindTrain),
		fx.contribute("app-c", pki.RoleClient, round, task.KindTrain)
	n := 2 * fx.params.Slots()
	c1Word := 32 + 8*(len(fx.params.Literal().LogQ)*n+5) // a coefficient of c1, past every c0 row
	bad := b
	bad.c.Endorsement = &task.Endorsement{Certificate: b.c.Endorsement.Certificate, Signature: slices.Clone(b.c.Endorsement.Signature)}
	bad.c.Endorsement.Signature[10] ^= 1
	byCoordinator := fx.contribute("app-b", pki.RoleCoordinator, round, task.KindTrain)
	aAgain := fx.contribute("app-a", pki.RoleClient, round, task.KindTrain) // app-a's answer to a retried phase
	otherRound := fx.contribute("app-b", pki.RoleClient, round+1, task.KindTrain)
	cs := func(s ...signedCT) []signedCT { return s }

	attacks := []struct {
		name                   string
		listed, summed, served []signedCT
		edit                   func([]byte)
		want                   string
		is                     error
	}{
		{"a chosen d added to c1", cs(a, b, c), cs(a, b, c), cs(a, b, c), func(agg []byte) {
			w := binary.LittleEndian.Uint64(agg[c1Word:])
			binary.LittleEndian.PutUint64(agg[c1Word:], w^1) // +1 or -1, inside the modulus
		}, "not the sum", secagg.ErrNotTheSum},
		{"an aggregate that leaves out a listed contribution", cs(a, b, c), cs(a, b), cs(a, b, c), nil, "not the sum", secagg.ErrNotTheSum},
		{"an aggregate that repeats a contribution", cs(a, b, c), cs(a, b, b), cs(a, b, c), nil, "not the sum", secagg.ErrNotTheSum},
		{"a contribution served other than it was signed", cs(a, b, c), cs(a, b, c), cs(a, c, c), nil, "not the one the task lists", secagg.ErrNotTheSum},
		{"a contribution left out of what is served", cs(a, b, c), cs(a, b, c), cs(a, b), nil, "2 of the 3 contributions arrived", secagg.ErrNotTheSum},
		{"a bad signature", cs(a, bad, c), cs(a, bad, c), cs(a, bad, c), nil, "does not match", pki.ErrBadSignature},
		{"a signature by a coordinator's certificate", cs(a, byCoordinator, c), cs(a, byCoordinator, c), cs(a, byCoordinator, c), nil, "signed by", pki.ErrBadSignature},
		{"a contribution signed for another round", cs(a, otherRound, c), cs(a, otherRound, c), cs(a, otherRound, c), nil, "does not match", pki.ErrBadSignature},
		{"the same client twice", cs(a, b, aAgain), cs(a, b, aAgain), cs(a, b, aAgain), nil, "contributes twice", client.ErrRefused},
	}
	for _, tc := range attacks {
		t.Run(tc.name, func(t *testing.T) {
			before := fx.logged[m]
			tk := fx.decryptTask(m, round, task.KindTrain, tc.listed, tc.summed, tc.served, tc.edit)
			res, rep, err := s.Handle(context.Background(), tk)
			require.ErrorIs(t, err, client.ErrRefused)
			require.ErrorIs(t, err, tc.is)
			assert.Contains(t, err.Error(), tc.want)
			assert.Empty(t, res.DecryptionShare, "nothing is decrypted")
			require.NotNil(t, rep.Share)
			assert.Equal(t, secagg.Digest(tk.Decrypt.Aggregate), rep.Share.Digest, "the refusal is logged with the aggregate's digest")
			assert.Equal(t, before, fx.logged[m], "no share was logged")
		})
	}

	t.Run("the honest aggregate", func(t *testing.T) {
		res, rep, err := s.Handle(context.Background(), fx.decrypts[m])
		require.NoError(t, err)
		assert.NotEmpty(t, res.DecryptionShare)
		assert.Equal(t, fx.names, rep.Share.ContributorIDs, "the share log names the contributors")
		assert.Equal(t, fx.decrypts[m].Decrypt.Active, rep.Share.Active, "and the active set")
		assert.Equal(t, 1, fx.logged[m])
	})
	t.Run("an honest forged-free aggregate of app clients", func(t *testing.T) {
		res, _, err := s.Handle(context.Background(), fx.decryptTask(m, round, task.KindTrain, cs(a, b, c), cs(a, b, c), cs(a, b, c), nil))
		require.NoError(t, err)
		assert.NotEmpty(t, res.DecryptionShare)
	})
}

// TestMembersRefuseDifferencing: a member logs the contributors of every aggregate it helped
// decrypt and refuses one that differs from any of them by fewer than min_contributors
// clients (2 here), in the same round and across rounds, or that sums again a contribution
// decrypted in another set; a retry with a new cohort, or the same clients' fresh answers,
// decrypts. The log survives a restart.
func TestMembersRefuseDifferencing(t *testing.T) {
	fx := newVerifyFixture(t)
	m := fx.member()
	s := fx.sessions[m]
	ct := func(name string, round int) signedCT {
		return fx.contribute(name, pki.RoleClient, round, task.KindTrain)
	}
	decrypt := func(round int, cts ...signedCT) error {
		_, _, err := s.Handle(context.Background(), fx.decryptTask(m, round, task.KindTrain, cts, cts, cts, nil))
		return err
	}
	a, b, c := ct("app-a", 1), ct("app-b", 1), ct("app-c", 1)
	require.NoError(t, decrypt(1, a, b, c), "the first aggregate of round 1")

	steps := []struct {
		name string
		cts  func() []signedCT
		want string // "" decrypts
	}{
		{"one client fewer, same round", func() []signedCT { return []signedCT{ct("app-a", 1), ct("app-b", 1)} }, "differ from those of an aggregate decrypted before by 1 clients"},
		{"one client more, same round", func() []signedCT { return []signedCT{ct("app-a", 1), ct("app-b", 1), ct("app-c", 1), ct("app-d", 1)} }, "by 1 clients"},
		{"the same ciphertexts in another set", func() []signedCT { return []signedCT{a, b, ct("app-d", 1), ct("app-e", 1)} }, "summed before"},
		{"an honest retry of the same clients with fresh answers", func() []signedCT { return []signedCT{ct("app-a", 1), ct("app-b", 1), ct("app-c", 1)} }, ""},
		{"an honest retry with a new cohort", func() []signedCT { return []signedCT{ct("app-a", 1), ct("app-d", 1), ct("app-e", 1)} }, ""},
		{"one client fewer, next round", func() []signedCT { return []signedCT{ct("app-a", 2), ct("app-b", 2)} }, "by 1 clients"},
		{"one client swapped, next round (a difference of two)", func() []signedCT { return []signedCT{ct("app-a", 2), ct("app-b", 2), ct("app-f", 2)} }, ""},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			cts := st.cts()
			round := 1
			if strings.Contains(st.name, "next round") {
				round = 2
			}
			before := fx.logged[m]
			err := decrypt(round, cts...)
			if st.want == "" {
				require.NoError(t, err)
				assert.Equal(t, before+1, fx.logged[m])
				return
			}
			require.ErrorIs(t, err, client.ErrRefused)
			require.ErrorIs(t, err, task.ErrDifferencing)
			assert.Contains(t, err.Error(), st.want)
			assert.Equal(t, before, fx.logged[m], "nothing is decrypted")
		})
	}

	t.Run("the log survives a restart", func(t *testing.T) {
		dir := client.StateDir(t.TempDir())
		for _, r := range fx.logs[m] {
			require.NoError(t, dir.AppendShare(r))
		}
		logged, err := dir.ShareLog()
		require.NoError(t, err)
		require.Equal(t, fx.logs[m], logged)
		id, err := dir.Identity()
		require.NoError(t, err)
		restarted, err := client.NewMember(client.MemberConfig{MinContributors: 2, Identity: id, Saved: fx.saved[m], ShareLog: logged,
			Verifier: pki.NewVerifier(fx.ca.Certificate()), Contributions: fx.source, LogShare: dir.AppendShare})
		require.NoError(t, err)
		b := fx.branches[m]
		again, err := client.NewSession(m, fx.schema, b.Train, b.Test, client.SessionOptions{Member: restarted, RequireEncryption: true})
		require.NoError(t, err)
		fewer := []signedCT{ct("app-a", 2), ct("app-b", 2)}
		_, _, err = again.Handle(context.Background(), fx.decryptTask(m, 2, task.KindTrain, fewer, fewer, fewer, nil))
		require.ErrorIs(t, err, task.ErrDifferencing, "the restarted member remembers what it decrypted")
		fresh := []signedCT{ct("app-a", 2), ct("app-b", 2), ct("app-f", 2)}
		_, _, err = again.Handle(context.Background(), fx.decryptTask(m, 2, task.KindTrain, fresh, fresh, fresh, nil))
		require.NoError(t, err)
		logged, err = dir.ShareLog()
		require.NoError(t, err)
		assert.Len(t, logged, len(fx.logs[m])+1, "and logs the share it gave")
	})
}

// TestClientsAnswerStatisticsOncePerRunAndRepeatTheirContributions: a client sends its
// encrypted statistics once per run: a repeat (a retried phase, a restarted coordinator or
// client) gets the very same signed ciphertext, another statistics question is declined. It
// signs every encrypted result, and answers a repeat of the same evaluation with the same
// signed ciphertext too, so that no coordinator gets two encryptions of one answer.
func TestClientsAnswerStatisticsOncePerRunAndRepeatTheirContributions(t *testing.T) {
	fx := newVerifyFixture(t)
	b := fx.branches[fx.names[0]]
	var state []byte
	open := func() *client.Session {
		s, err := client.NewSession("app-1", fx.schema, b.Train, b.Test, client.SessionOptions{RequireEncryption: true, Signer: fx.signer("app-1", pki.RoleClient),
			PrivacyState: state, PersistPrivacy: func(p []byte) error { state = p; return nil }})
		require.NoError(t, err)
		return s
	}
	s := open()
	stats := task.Task{ID: "r/stats/r0/a1/app-1", RunID: "r", Kind: task.KindStats, Encoding: fx.decrypts[fx.member()].Encoding, PublicKey: fx.pk, CohortSize: 4, StatsScale: 1.0 / 1024}
	res, _, err := s.Handle(context.Background(), stats)
	require.NoError(t, err)
	require.NotNil(t, res.Endorsement, "an encrypted result is signed")
	digest := sha256.Sum256(res.Sum.Ciphertext)
	_, err = pki.NewVerifier(fx.ca.Certificate()).Verify(pki.Signed{Certificate: res.Endorsement.Certificate, Signature: res.Endorsement.Signature},
		pki.Identity{Name: "app-1", Role: pki.RoleClient}, task.ContributionDomain, task.ContributionStatement("r", 0, task.KindStats, digest[:])...)
	require.NoError(t, err, "by the client's own certificate, for its run, round and kind")

	retry := stats
	retry.ID = "r/stats/r0/a2/app-1"
	again, _, err := s.Handle(context.Background(), retry)
	require.NoError(t, err)
	assert.Equal(t, res.Sum.Ciphertext, again.Sum.Ciphertext, "a repeat gets the very same ciphertext")
	assert.Equal(t, res.Endorsement, again.Endorsement)
	restarted, _, err := open().Handle(context.Background(), retry)
	require.NoError(t, err)
	assert.Equal(t, res.Sum.Ciphertext, restarted.Sum.Ciphertext, "a restarted client too")
	other := retry
	other.StatsScale = 1.0 / 2048
	_, _, err = s.Handle(context.Background(), other)
	require.ErrorIs(t, err, client.ErrDeclined, "another statistics question in the same run")
	assert.Contains(t, err.Error(), "answers them once")

	tasks := tasks(t, fx.schema, b.Train)
	eval := tasks[2]
	eval.PublicKey, eval.CohortSize = fx.pk, 4
	first, _, err := s.Handle(context.Background(), eval)
	require.NoError(t, err)
	eval.ID = "e-attempt-2"
	second, _, err := s.Handle(context.Background(), eval)
	require.NoError(t, err)
	assert.Equal(t, first.Sum.Ciphertext, second.Sum.Ciphertext, "the same answer is the same ciphertext")
	assert.Equal(t, first.Endorsement, second.Endorsement)
}

// TestTheCoordinatorBuildsAggregatesTheMembersAccept: five clients, three of them members with
// certificates who verify every aggregate. Round 1 sums all five; then one client goes for
// good, and round 2's aggregate of the other four would differ from round 1's by one client.
// The coordinator leaves one more result out (its record says which), the members decrypt
// without a single refusal, and the run commits; the coordinator's record names every
// aggregate's contributors and active sets, and matches the members' share logs.
func TestTheCoordinatorBuildsAggregatesTheMembersAccept(t *testing.T) {
	ca, err := pki.NewCA(pki.InitOptions{})
	require.NoError(t, err)
	cfg := synth.Config{Branches: 5, CustomersPerBranch: 150, Seed: 9}.WithDefaults()
	branches, err := synth.Generate(cfg)
	require.NoError(t, err)
	schema := synth.Schema(cfg)
	var names []string
	for _, b := range branches {
		names = append(names, b.Name)
	}
	committee, gone := names[:3], names[4]
	rc := coordinator.RunConfig{ID: "r", Rounds: 2, MinClients: 5, MinCohort: 5, Quorum: 2, MaxAttempts: 2, Strategy: strategy.Config{Name: "fedavg"},
		SecureAggregation: coordinator.SecureAggregationConfig{Mode: "he", Committee: committee, Threshold: 2, MinContributors: 2}}.WithDefaults()
	require.NoError(t, rc.Validate())
	core, err := coordinator.NewCore(rc, schema, nil, nil, nil)
	require.NoError(t, err)
	core.SetDeadlineTicks(50)
	sessions := map[string]*client.Session{}
	logs := map[string][]client.ShareRecord{}
	for i, b := range branches {
		cred, err := ca.Issue(pki.IssueRequest{Role: pki.RoleClient, Name: b.Name})
		require.NoError(t, err)
		signer, err := cred.Signer()
		require.NoError(t, err)
		if i < 3 {
			name := b.Name
			sessions[name] = memberSession(t, schema, b, client.MemberConfig{Signer: signer, Verifier: pki.NewVerifier(ca.Certificate()),
				Contributions: coreSource{core}, LogShare: func(r client.ShareRecord) error { logs[name] = append(logs[name], r); return nil }})
		} else {
			sessions[b.Name], err = client.NewSession(b.Name, schema, b.Train, b.Test, client.SessionOptions{RequireEncryption: true, Signer: signer})
			require.NoError(t, err)
		}
		require.NoError(t, core.Register(task.Registration{ClientID: b.Name, IdentityKey: sessions[b.Name].IdentityKey(), TrainRecords: sessions[b.Name].TrainRows()}))
	}
	var refusals []error
	for range 400 {
		var results []task.Result
		for _, name := range names {
			if name == gone && core.Round() >= 2 {
				continue // gone for good: polls no more
			}
			tk, ok, err := core.Poll(name)
			require.NoError(t, err)
			if !ok {
				continue
			}
			res, _, err := sessions[name].Handle(context.Background(), tk)
			if err != nil {
				refusals = append(refusals, err)
				continue
			}
			results = append(results, res)
		}
		for _, r := range results {
			_, _ = core.Submit(r) // a repeat of an answered task is harmless
		}
		core.Tick()
		core.Advance()
		if core.Status().Status.Finished() {
			break
		}
	}
	require.Empty(t, refusals, "no member refused, no client declined")
	st := core.Status()
	require.Equal(t, coordinator.RunCompleted, st.Status, st.Message)
	assert.Equal(t, 3, core.LastModel().Contributors, "round 2 summed three of the four results left")

	var train []coordinator.DecryptionRecord
	for _, d := range st.Decryptions {
		assert.NotEmpty(t, d.Active, "every recorded aggregate names its active sets")
		if d.Purpose == "train" {
			train = append(train, d)
		}
	}
	require.Len(t, train, 2)
	assert.ElementsMatch(t, names, train[0].Contributors)
	assert.Len(t, train[1].Contributors, 3)
	assert.NotContains(t, train[1].Contributors, gone)
	for _, member := range committee {
		for _, r := range logs[member] {
			i := slices.IndexFunc(st.Decryptions, func(d coordinator.DecryptionRecord) bool { return d.Digest == r.Digest })
			require.GreaterOrEqual(t, i, 0, "the coordinator records every aggregate a member decrypted")
			assert.Equal(t, st.Decryptions[i].Contributors, r.ContributorIDs)
			assert.Contains(t, st.Decryptions[i].Active, r.Active)
		}
	}
}
