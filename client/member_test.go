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
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/privacy"
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
	s, err := client.NewSession(b.Name, schema, b.Train, b.Test, client.SessionOptions{Member: m, RequireEncryption: true})
	require.NoError(t, err)
	return s
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
			s := memberSession(t, schema, b, client.MemberConfig{Signer: signer, Verifier: pki.NewVerifier(ca.Certificate())})
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
