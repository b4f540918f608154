package grpctransport_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/secagg"
	"github.com/fedprop/fedprop/strategy"
	"github.com/fedprop/fedprop/synth"
	"github.com/fedprop/fedprop/task"
	grpctransport "github.com/fedprop/fedprop/transport/grpc"
)

// recorder keeps, per client, the plaintext train sums each client computed (before
// encryption) and which of its results the coordinator accepted.
type recorder struct {
	mu       sync.Mutex
	plain    map[string][]float64 // task id -> plaintext sum
	accepted map[string]bool      // task id -> accepted
	round1   map[string]string    // client -> its round-1 train task id
}

// conn wraps a client's connection to record accepted submissions.
type recordingConn struct {
	client.Coordinator
	rec *recorder
}

func (c recordingConn) SubmitResult(ctx context.Context, r task.Result) (bool, error) {
	dup, err := c.Coordinator.SubmitResult(ctx, r)
	if err == nil {
		c.rec.mu.Lock()
		c.rec.accepted[r.TaskID] = true
		c.rec.mu.Unlock()
	}
	return dup, err
}

// TestSecureAggregationSurvivesDropoutsOverGRPC: five branches, all on the committee, T=3.
// One member dies while training round 1 and another while decrypting round 1's aggregate;
// the round still commits the exact aggregate of the updates that arrived.
func TestSecureAggregationSurvivesDropoutsOverGRPC(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := synth.Config{Branches: 5, CustomersPerBranch: 200, Seed: 21}.WithDefaults()
	branches, err := synth.Generate(cfg)
	require.NoError(t, err)
	schema := synth.Schema(cfg)
	var committee []string
	for _, b := range branches {
		committee = append(committee, b.Name)
	}
	rc := coordinator.RunConfig{
		ID: "he-dropout", Rounds: 2, MinClients: 5, MinCohort: 5, Quorum: 3, RoundDeadline: 1500 * time.Millisecond,
		MaxAttempts: 5, Seed: 3, Strategy: strategy.Config{Name: "fedavg"},
		SecureAggregation: coordinator.SecureAggregationConfig{Mode: "he", Committee: committee, Threshold: 3, MinContributors: 2},
	}.WithDefaults()
	f := startFed(t, rc, schema)

	rec := &recorder{plain: map[string][]float64{}, accepted: map[string]bool{}, round1: map[string]string{}}
	trainVictim, decryptVictim := committee[4], committee[0]
	var (
		wg             sync.WaitGroup
		diedDecrypting atomic.Bool
	)
	defer wg.Wait()
	for _, b := range branches {
		agentCtx, kill := context.WithCancel(ctx)
		defer kill()
		name := b.Name
		identity, err := client.StateDir(filepath.Join(dir, name)).Identity()
		require.NoError(t, err)
		member, err := client.NewMember(client.MemberConfig{MinContributors: 2, Identity: identity,
			Persist: client.StateDir(filepath.Join(dir, name)).SaveMember})
		require.NoError(t, err)
		protector := client.ProtectorFunc(func(_ context.Context, tk task.Task, values []float64) (task.Vector, error) {
			if tk.Kind == task.KindTrain {
				if name == trainVictim && tk.Round == 1 {
					kill() // dies in the middle of training
					return task.Vector{}, context.Canceled
				}
				rec.mu.Lock()
				rec.plain[tk.ID] = slices.Clone(values)
				if tk.Round == 1 {
					rec.round1[name] = tk.ID
				}
				rec.mu.Unlock()
			}
			return task.Vector{Plain: values}, nil
		})
		session, err := client.NewSession(name, schema, b.Train, b.Test, client.SessionOptions{Protector: protector, Member: member, RequireEncryption: true})
		require.NoError(t, err)
		conn, err := grpctransport.Dial(f.addr)
		require.NoError(t, err)
		defer conn.Close()
		var c client.Coordinator = recordingConn{Coordinator: grpctransport.NewClient(conn), rec: rec}
		if name == decryptVictim {
			c = dieOnDecrypt{Coordinator: c, kill: kill, fired: &diedDecrypting}
		}
		agent := client.NewAgent(c, session, client.AgentConfig{PollWait: 200 * time.Millisecond, MinBackoff: 20 * time.Millisecond,
			MaxBackoff: 100 * time.Millisecond, Logger: quietLogger()})
		wg.Add(1)
		go func() { defer wg.Done(); _ = agent.Run(agentCtx) }()
	}

	require.Eventually(t, func() bool {
		r, err := f.store.Run(ctx, "he-dropout")
		return err == nil && r.Status.Finished()
	}, 90*time.Second, 20*time.Millisecond)
	run, err := f.store.Run(ctx, "he-dropout")
	require.NoError(t, err)
	require.Equal(t, coordinator.RunCompleted, run.Status, run.Message)
	require.True(t, diedDecrypting.Load(), "a member of the first active set died on its decrypt task")
	require.NotNil(t, run.SecAgg)
	assert.True(t, run.SecAgg.Ready)

	versions, err := f.store.Versions(ctx)
	require.NoError(t, err)
	require.Len(t, versions, 2)
	v1 := versions[0]

	// The exact aggregate of the round-1 updates that arrived: FedAvg of their plaintext sums.
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var sum []float64
	contributors := 0
	for _, name := range committee {
		id, ok := rec.round1[name]
		if !ok || !rec.accepted[id] {
			continue
		}
		contributors++
		if sum == nil {
			sum = make([]float64, len(rec.plain[id]))
		}
		for k, x := range rec.plain[id] {
			sum[k] += x
		}
	}
	assert.NotContains(t, rec.round1, trainVictim, "the member killed in training sent nothing")
	require.Equal(t, 4, contributors)
	assert.Equal(t, contributors, v1.Contributors)
	n := sum[task.TrainCountIndex]
	assert.InDelta(t, n, v1.Examples, 1e-6)
	for k := range v1.Weights {
		want := sum[task.TrainDeltaStart+k] / n // global starts at zero: w1 = mean update
		assert.InDelta(t, want, v1.Weights[k], 1e-9, "weight %d", k)
	}
	assert.False(t, math.IsNaN(v1.Evaluation.AUC))
}

// dieOnDecrypt kills its client when a decrypt task arrives, before it answers.
type dieOnDecrypt struct {
	client.Coordinator
	kill  func()
	fired *atomic.Bool
}

func (d dieOnDecrypt) PollTask(ctx context.Context, id string, wait time.Duration) (task.Task, bool, error) {
	t, ok, err := d.Coordinator.PollTask(ctx, id, wait)
	if ok && t.Kind == task.KindDecrypt && t.Decrypt != nil && t.Decrypt.Purpose == task.KindTrain {
		d.fired.Store(true)
		d.kill()
		return task.Task{}, false, fmt.Errorf("client died: %w", context.Canceled)
	}
	return t, ok, err
}

// activeCoordinator stands between a member and the real coordinator as a coordinator that
// deviates would: it adds a chosen d to one coefficient of c1 in every train aggregate it
// hands the member to decrypt, and serves that aggregate's contributions unchanged (it maps
// the tampered aggregate's digest back to the real one), so the member's fetch succeeds and
// only its re-add can catch the change.
type activeCoordinator struct {
	client.Coordinator
	src      client.ContributionSource
	mu       sync.Mutex
	digests  map[string]string // tampered aggregate -> the real one
	tampered *atomic.Int32
}

func (a *activeCoordinator) PollTask(ctx context.Context, id string, wait time.Duration) (task.Task, bool, error) {
	t, ok, err := a.Coordinator.PollTask(ctx, id, wait)
	if !ok || err != nil || t.Kind != task.KindDecrypt || t.Decrypt.Purpose != task.KindTrain {
		return t, ok, err
	}
	spec := *t.Decrypt
	agg := slices.Clone(spec.Aggregate)
	word := 32 + 8*(len(agg)-32)/16 + 40 // in the second half of the body: c1 of the only ciphertext
	binary.LittleEndian.PutUint64(agg[word:], binary.LittleEndian.Uint64(agg[word:])^1)
	a.mu.Lock()
	a.digests[secagg.Digest(agg)] = secagg.Digest(spec.Aggregate)
	a.mu.Unlock()
	spec.Aggregate = agg
	t.Decrypt = &spec
	a.tampered.Add(1)
	return t, true, nil
}

func (a *activeCoordinator) FetchContributions(ctx context.Context, q task.ContributionQuery, size int, each func(int, []byte) error) error {
	a.mu.Lock()
	if real, ok := a.digests[q.AggregateDigest]; ok {
		q.AggregateDigest = real
	}
	a.mu.Unlock()
	return a.src.FetchContributions(ctx, q, size, each)
}

// TestMembersCatchAnActiveCoordinatorOverGRPC: four branches behind mutual TLS, three on the
// committee (T=2) with their certificates, every result signed. Run "honest" commits, and its
// record names each aggregate's contributors and active sets exactly as the members' share
// logs do. In run "tampered" a deviating coordinator adds d to c1 of the train aggregate it
// asks every member to decrypt: each member fetches the signed contributions over
// FetchContributions, re-adds them, refuses and says why; the coordinator tries every set,
// nothing of the round is decrypted, and the run fails without a version. A result without
// its client's signature is refused at the edge.
func TestMembersCatchAnActiveCoordinatorOverGRPC(t *testing.T) {
	cfg := synth.Config{Branches: 4, CustomersPerBranch: 150, Seed: 23}.WithDefaults()
	branches, err := synth.Generate(cfg)
	require.NoError(t, err)
	schema := synth.Schema(cfg)
	var names []string
	for _, b := range branches {
		names = append(names, b.Name)
	}
	committee := names[:3]
	spec := func(id string) coordinator.RunSpec {
		rc := coordinator.RunConfig{ID: id, Rounds: 1, MinClients: 4, MinCohort: 4, Quorum: 3, RoundDeadline: 3 * time.Second, MaxAttempts: 1,
			Strategy: strategy.Config{Name: "fedavg"}, EvalEvery: 100,
			SecureAggregation: coordinator.SecureAggregationConfig{Mode: "he", Committee: committee, Threshold: 2, MinContributors: 2}}.WithDefaults()
		return coordinator.RunSpec{Config: rc, Schema: schema, SchemaYAML: []byte("synthetic")}
	}

	agentLogs := &syncBuffer{}
	run := func(t *testing.T, id string, deviate bool) (coordinator.RunState, map[string][]client.ShareRecord, int32) {
		sc := startSecureCoordinator(t, spec(id), nil)
		dirs := map[string]client.StateDir{}
		var tampered atomic.Int32
		for i, b := range branches {
			files, _ := sc.pki.issue(pki.RoleClient, b.Name)
			signer, err := pki.LoadSigner(files)
			require.NoError(t, err)
			opts := client.SessionOptions{RequireEncryption: true, Signer: signer}
			if i < 3 {
				dirs[b.Name] = client.StateDir(filepath.Join(t.TempDir(), b.Name))
				identity, err := dirs[b.Name].Identity()
				require.NoError(t, err)
				verifier, err := pki.LoadVerifier(files.CA)
				require.NoError(t, err)
				opts.Member, err = client.NewMember(client.MemberConfig{MinContributors: 2, Identity: identity, Signer: signer, Verifier: verifier,
					LogShare: dirs[b.Name].AppendShare})
				require.NoError(t, err)
			}
			session, err := client.NewSession(b.Name, schema, b.Train, b.Test, opts)
			require.NoError(t, err)
			conn := sc.dialFiles(files)
			var c client.Coordinator = grpctransport.NewClient(conn)
			if deviate && i < 3 {
				c = &activeCoordinator{Coordinator: c, src: c.(client.ContributionSource), digests: map[string]string{}, tampered: &tampered}
			}
			agent := client.NewAgent(c, session, client.AgentConfig{PollWait: 200 * time.Millisecond, MinBackoff: 20 * time.Millisecond,
				MaxBackoff: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(agentLogs, nil))})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); _ = agent.Run(ctx) }()
			t.Cleanup(func() { cancel(); <-done })
		}
		var st coordinator.RunState
		require.Eventually(t, func() bool {
			st, err = sc.store.Run(context.Background(), id)
			return err == nil && st.Status.Finished()
		}, 120*time.Second, 20*time.Millisecond)
		logs := map[string][]client.ShareRecord{}
		for name, dir := range dirs {
			logs[name], err = dir.ShareLog()
			require.NoError(t, err)
		}
		versions, err := sc.store.Versions(context.Background())
		require.NoError(t, err)
		if deviate {
			assert.Empty(t, versions, "nothing of the tampered round was committed")
		}
		return st, logs, tampered.Load()
	}

	t.Run("honest", func(t *testing.T) {
		st, logs, _ := run(t, "honest", false)
		require.Equal(t, coordinator.RunCompleted, st.Status, st.Message)
		shares := 0
		for member, recs := range logs {
			for _, r := range recs {
				shares++
				assert.Equal(t, member, r.Member)
				i := slices.IndexFunc(st.Decryptions, func(d coordinator.DecryptionRecord) bool { return d.Digest == r.Digest })
				require.GreaterOrEqual(t, i, 0, "every share a member gave is in the coordinator's record")
				d := st.Decryptions[i]
				assert.Equal(t, d.Contributors, r.ContributorIDs)
				assert.Contains(t, d.Active, r.Active)
				assert.Equal(t, d.Purpose, r.Purpose.String())
			}
		}
		assert.GreaterOrEqual(t, shares, 4, "two members for the statistics and two for the round's update")
	})
	t.Run("tampered", func(t *testing.T) {
		st, logs, tampered := run(t, "tampered", true)
		require.Equal(t, coordinator.RunFailed, st.Status)
		assert.GreaterOrEqual(t, tampered, int32(2), "the first active set got the tampered aggregate")
		assert.Contains(t, agentLogs.String(), "decryption share refused")
		assert.Contains(t, agentLogs.String(), "aggregate is not the sum of its contributions: coefficient word", "caught by the re-add")
		assert.Contains(t, agentLogs.String(), "refusal sent")
		for member, recs := range logs {
			for _, r := range recs {
				assert.NotEqual(t, task.KindTrain, r.Purpose, "member %s gave no share for the tampered aggregate", member)
			}
		}
	})

	t.Run("an unsigned result is refused at the edge", func(t *testing.T) {
		sc := startSecureCoordinator(t, tinySpec(t), nil)
		files, _ := sc.pki.issue(pki.RoleClient, "app-1")
		c := grpctransport.NewClient(sc.dialFiles(files))
		r := task.Result{ClientID: "app-1", TaskID: "t", RunID: "hostile", Round: 1, Kind: task.KindTrain, Sum: task.Vector{Ciphertext: []byte("ct"), Length: 4}}
		_, err := c.SubmitResult(context.Background(), r)
		require.ErrorIs(t, err, task.ErrInvalid)
		assert.Contains(t, err.Error(), "field endorsement")

		otherFiles, _ := sc.pki.issue(pki.RoleClient, "app-2")
		other, err := pki.LoadSigner(otherFiles)
		require.NoError(t, err)
		digest := sha256.Sum256(r.Sum.Ciphertext)
		e, err := other.Sign(task.ContributionDomain, task.ContributionStatement("hostile", 1, task.KindTrain, digest[:])...)
		require.NoError(t, err)
		r.Endorsement = &task.Endorsement{Certificate: e.Certificate, Signature: e.Signature}
		_, err = c.SubmitResult(context.Background(), r)
		require.ErrorIs(t, err, task.ErrInvalid, "signed by another client's certificate")
		assert.Contains(t, err.Error(), "another certificate than the caller's")
	})
}

// lateSource is a member's contribution source bound once its connection exists (a test's
// connection wrappers hide the gRPC client's FetchContributions from NewAgent).
type lateSource struct {
	mu    sync.Mutex
	inner client.ContributionSource
}

func (l *lateSource) set(src client.ContributionSource) {
	l.mu.Lock()
	l.inner = src
	l.mu.Unlock()
}

func (l *lateSource) FetchContributions(ctx context.Context, q task.ContributionQuery, size int, each func(int, []byte) error) error {
	l.mu.Lock()
	src := l.inner
	l.mu.Unlock()
	if src == nil {
		return errors.New("no connection yet")
	}
	return src.FetchContributions(ctx, q, size, each)
}
