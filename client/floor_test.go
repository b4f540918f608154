package client_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/privacy"
	"github.com/fedprop/fedprop/task"
)

// errStop ends a task in a test protector once the values it must see have been recorded.
var errStop = errors.New("stop before encryption")

// dpSGD is a record-level train task: 10 DP-SGD steps at q = 0.1.
func dpSGD(base task.Task, z float64) task.Task {
	tk := base
	tk.DP = &task.DPSpec{Mechanism: task.DPRecord, ClipNorm: 1, NoiseMultiplier: z, SamplingRate: 0.1, Steps: 10, Delta: 1e-5}
	return tk
}

// clientLevelHE is a client-level train task of a run that aggregates under encryption: the
// client adds its share of the round's noise itself.
func clientLevelHE(base task.Task, z, clip float64, expected int) task.Task {
	tk := base
	tk.PublicKey = []byte("collective key")
	tk.DP = &task.DPSpec{Mechanism: task.DPClient, ClipNorm: clip, NoiseMultiplier: z, ExpectedContributors: expected, Delta: 1e-5}
	return tk
}

func TestClientDeclinesTasksBelowItsFloor(t *testing.T) {
	schema, train, eval := branchFile(t, false, 300)
	base := tasks(t, schema, train)[1]
	plainClient := base
	plainClient.DP = &task.DPSpec{Mechanism: task.DPClient, ClipNorm: 1, NoiseMultiplier: 1}
	recordFloor := privacy.Floor{Require: privacy.RequireRecord, MinNoiseMultiplier: 1, MaxClipNorm: 2}
	cases := []struct {
		name  string
		floor privacy.Floor
		task  task.Task
		want  string // "" means accepted
	}{
		{"no floor: a task without DP is a research setting", privacy.Floor{}, base, ""},
		{"no floor: DP without noise is refused all the same", privacy.Floor{}, dpSGD(base, 0), "noise_multiplier 0"},
		{"no floor: a NaN noise multiplier", privacy.Floor{}, dpSGD(base, math.NaN()), "noise_multiplier NaN"},
		{"no floor: an infinite clipping norm", privacy.Floor{}, clientLevelHE(base, 1, math.Inf(1), 10), "clip_norm +Inf"},
		{"no floor: a noise share divided by no contributors", privacy.Floor{}, clientLevelHE(base, 1, 1, 0), "expected contributors 0"},
		{"no floor: a noise share in a plaintext task", privacy.Floor{}, func() task.Task {
			tk := plainClient
			dp := *tk.DP
			dp.ExpectedContributors = 10
			tk.DP = &dp
			return tk
		}(), "plaintext task"},
		{"record floor: a task without DP", recordFloor, base, "asks for no differential privacy"},
		{"record floor: too little noise", recordFloor, dpSGD(base, 0.5), "below min_noise_multiplier 1"},
		{"record floor: a clipping norm of 1e300", recordFloor, clientLevelHE(base, 1, 1e300, 10), "above max_clip_norm 2"},
		{"record floor: enough noise", recordFloor, dpSGD(base, 1.5), ""},
		{"client floor: record-level DP is weaker", privacy.Floor{Require: privacy.RequireClient}, dpSGD(base, 2), "requires client level"},
		{"client floor: client-level DP in plaintext", privacy.Floor{Require: privacy.RequireClient}, plainClient, "without secure aggregation"},
		{"epsilon floor: one release past max_epsilon", privacy.Floor{Require: privacy.RequireRecord, MaxEpsilon: 0.01}, dpSGD(base, 1), "above max_epsilon 0.01"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := client.NewSession("b", schema, train, eval, client.SessionOptions{Floor: tc.floor,
				Protector: client.ProtectorFunc(func(_ context.Context, _ task.Task, v []float64) (task.Vector, error) {
					return task.Vector{Plain: v}, nil
				})})
			require.NoError(t, err)
			tk := tc.task
			res, _, err := s.Handle(context.Background(), tk)
			if tc.want == "" {
				require.NoError(t, err)
				assert.NotEmpty(t, res.Sum.Plain)
				return
			}
			require.ErrorIs(t, err, client.ErrDeclined)
			assert.Contains(t, err.Error(), tc.want)
			refusal := client.Refusal("b", tk, err)
			assert.Contains(t, refusal.Refusal, tc.want, "the coordinator is told why")
			assert.Nil(t, refusal.Sum.Plain)
			eps, _ := s.Epsilon()
			assert.Zero(t, eps, "a declined task releases nothing")
		})
	}
}

func TestStatsAndEvaluationWithoutNoiseAreDeclinedUnderAFloor(t *testing.T) {
	schema, train, eval := branchFile(t, false, 300)
	s, err := client.NewSession("b", schema, train, eval, client.SessionOptions{Floor: privacy.Floor{Require: privacy.RequireRecord}})
	require.NoError(t, err)
	for _, tk := range []task.Task{tasks(t, schema, train)[0], tasks(t, schema, train)[2]} {
		_, _, err := s.Handle(context.Background(), tk)
		require.ErrorIs(t, err, client.ErrDeclined, tk.Kind.String())
		assert.Contains(t, err.Error(), "un-noised")
	}
}

// TestDPNoiseIsNotAFunctionOfAnyWireField gives two clients with the same records the very
// same tasks, every wire field equal (seed included), and shows that their DP-SGD noise is
// independent: a coordinator that chose every field cannot regenerate it.
func TestDPNoiseIsNotAFunctionOfAnyWireField(t *testing.T) {
	schema, train, eval := branchFile(t, false, 300)
	a, err := client.NewSession("a", schema, train, eval, client.SessionOptions{})
	require.NoError(t, err)
	b, err := client.NewSession("b", schema, train, eval, client.SessionOptions{})
	require.NoError(t, err)
	base := dpSGD(tasks(t, schema, train)[1], 1)
	const draws = 40
	var ua, ub [][]float64
	for k := range draws {
		tk := base
		tk.ModelVersion = uint64(k) // a new model each time: each answer is a fresh release
		ra, _, err := a.Handle(context.Background(), tk)
		require.NoError(t, err)
		rb, _, err := b.Handle(context.Background(), tk)
		require.NoError(t, err)
		require.NotEqual(t, ra.Sum.Plain, rb.Sum.Plain, "identical tasks, different private noise")
		ua, ub = append(ua, ra.Sum.Plain[task.TrainDeltaStart:len(ra.Sum.Plain)-1]), append(ub, rb.Sum.Plain[task.TrainDeltaStart:len(rb.Sum.Plain)-1])
	}
	// Centre each coordinate over the draws (the weights never change, so what remains is
	// sampling and noise) and correlate the two clients' deviations.
	var xs, ys []float64
	for j := range ua[0] {
		var ma, mb float64
		for k := range draws {
			ma += ua[k][j] / draws
			mb += ub[k][j] / draws
		}
		for k := range draws {
			xs, ys = append(xs, ua[k][j]-ma), append(ys, ub[k][j]-mb)
		}
	}
	r := correlation(xs, ys)
	// About 1,000 pairs: independent noise gives |r| around 0.03; noise derived from the wire
	// gives r = 1.
	assert.Less(t, math.Abs(r), 0.15, "correlation of two clients' DP noise under identical tasks: %v", r)
}

func correlation(x, y []float64) float64 {
	var sxy, sxx, syy float64
	for i := range x {
		sxy += x[i] * y[i]
		sxx += x[i] * x[i]
		syy += y[i] * y[i]
	}
	return sxy / math.Sqrt(sxx*syy)
}

func TestARepeatedTrainTaskGetsTheSameReleaseNeverFreshNoise(t *testing.T) {
	schema, train, eval := branchFile(t, false, 300)
	s, err := client.NewSession("b", schema, train, eval, client.SessionOptions{})
	require.NoError(t, err)
	tk := dpSGD(tasks(t, schema, train)[1], 1)
	tk.ModelVersion = 4
	first, rep1, err := s.Handle(context.Background(), tk)
	require.NoError(t, err)

	retry := tk
	retry.ID, retry.Seed = "t-attempt-2", 99 // the coordinator's retry of the same round
	again, rep2, err := s.Handle(context.Background(), retry)
	require.NoError(t, err)
	assert.Equal(t, first.Sum.Plain, again.Sum.Plain, "a repeat is answered with the same release")
	assert.Equal(t, rep1.Epsilon, rep2.Epsilon, "and costs nothing more")

	other := tk
	other.Weights = slices.Clone(tk.Weights)
	other.Weights[1] += 1e-9
	_, _, err = s.Handle(context.Background(), other)
	require.ErrorIs(t, err, client.ErrDeclined, "other weights under the same model version")

	rescaled := tk
	dp := *tk.DP
	dp.ReferenceRecords = 1000
	rescaled.DP = &dp
	_, _, err = s.Handle(context.Background(), rescaled)
	require.ErrorIs(t, err, client.ErrDeclined, "another step denominator is another release, not a repeat")

	older := tk
	older.ModelVersion = 3
	_, _, err = s.Handle(context.Background(), older)
	require.ErrorIs(t, err, client.ErrDeclined, "a model older than one already trained from")

	next := tk
	next.ModelVersion = 5
	_, rep3, err := s.Handle(context.Background(), next)
	require.NoError(t, err)
	assert.Greater(t, rep3.Epsilon, rep2.Epsilon, "a new model is a new release, accounted")
}

// TestTheClientsLedgerAccountsEveryReleaseWithItsOwnParameters: alternating the noise
// multiplier from task to task cannot make the client under-report; its epsilon is the
// composition of the mechanisms it actually applied.
func TestTheClientsLedgerAccountsEveryReleaseWithItsOwnParameters(t *testing.T) {
	schema, train, eval := branchFile(t, false, 300)
	s, err := client.NewSession("b", schema, train, eval, client.SessionOptions{})
	require.NoError(t, err)
	base := tasks(t, schema, train)[1]
	want := privacy.NewAccountant(nil)
	var eps float64
	for k, z := range []float64{0.6, 5, 0.6, 5} {
		tk := dpSGD(base, z)
		tk.ModelVersion = uint64(k)
		_, rep, err := s.Handle(context.Background(), tk)
		require.NoError(t, err)
		require.NoError(t, want.Compose(0.1, z, 10))
		eps = rep.Epsilon
	}
	wantEps, _, err := want.Epsilon(1e-5, privacy.PLD)
	require.NoError(t, err)
	assert.InDelta(t, wantEps, eps, 1e-12)
	// The old accounting recomputed everything with the latest task's z = 5.
	naive, _, err := privacy.Epsilon(0.1, 5, 40, 1e-5, nil, privacy.PLD)
	require.NoError(t, err)
	assert.Greater(t, eps, 2*naive)
}

// TestTheNoiseShareIsTheClientsToCap: in he mode the coordinator states m, the contributors
// the round expects, and each client adds z*C/sqrt(m); a coordinator that claims m = 10^4
// cannot shrink a client's share below z*C/sqrt(1000), the client's own cap.
func TestTheNoiseShareIsTheClientsToCap(t *testing.T) {
	schema, train, eval := branchFile(t, false, 300)
	measure := func(floor privacy.Floor, expected int) float64 {
		var seen []float64
		s, err := client.NewSession("b", schema, train, eval, client.SessionOptions{Floor: floor,
			Protector: client.ProtectorFunc(func(_ context.Context, _ task.Task, v []float64) (task.Vector, error) {
				seen = append(seen, v[task.TrainDeltaStart:len(v)-1]...)
				return task.Vector{}, errStop
			})})
		require.NoError(t, err)
		base := clientLevelHE(tasks(t, schema, train)[1], 100, 1, expected)
		for k := range 60 {
			tk := base
			tk.ModelVersion = uint64(k)
			_, _, err := s.Handle(context.Background(), tk)
			require.ErrorIs(t, err, errStop)
		}
		var sq float64
		for _, x := range seen {
			sq += x * x
		}
		return math.Sqrt(sq / float64(len(seen)))
	}
	// The update itself is clipped to norm 1, against noise of std 3 or more per coordinate.
	assert.InEpsilon(t, 100/math.Sqrt(1000), measure(privacy.Floor{}, 10_000), 0.08, "capped at the default 1000")
	assert.InEpsilon(t, 100/math.Sqrt(50), measure(privacy.Floor{MaxExpectedContributors: 50}, 10_000), 0.08, "capped at the client's 50")
	assert.InEpsilon(t, 100/math.Sqrt(20), measure(privacy.Floor{}, 20), 0.08, "m below the cap is the coordinator's")
}

// TestARestartedClientKeepsItsLedgerAndItsReleases: the ledger and the latest release are
// persisted before a release leaves, so a restarted client neither forgets what it spent nor
// answers a repeat of the task with fresh noise.
func TestARestartedClientKeepsItsLedgerAndItsReleases(t *testing.T) {
	schema, train, eval := branchFile(t, false, 300)
	dir := client.StateDir(t.TempDir())
	open := func() *client.Session {
		saved, err := dir.Privacy()
		require.NoError(t, err)
		s, err := client.NewSession("b", schema, train, eval, client.SessionOptions{PrivacyState: saved, PersistPrivacy: dir.SavePrivacy,
			Floor: privacy.Floor{Require: privacy.RequireRecord, MaxEpsilon: 50}})
		require.NoError(t, err)
		return s
	}
	tk := dpSGD(tasks(t, schema, train)[1], 1)
	tk.ModelVersion = 7
	first, rep, err := open().Handle(context.Background(), tk)
	require.NoError(t, err)
	require.Positive(t, rep.Epsilon)

	restarted := open()
	eps, _ := restarted.Epsilon()
	assert.Equal(t, rep.Epsilon, eps, "what was spent survives the restart")
	again, _, err := restarted.Handle(context.Background(), tk)
	require.NoError(t, err)
	assert.Equal(t, first.Sum.Plain, again.Sum.Plain, "a repeat after a restart gets the same release")

	failing, err := client.NewSession("b", schema, train, eval, client.SessionOptions{
		PersistPrivacy: func([]byte) error { return errors.New("disk full") }})
	require.NoError(t, err)
	_, _, err = failing.Handle(context.Background(), tk)
	require.Error(t, err, "a release whose ledger cannot be saved does not leave")
	eps, _ = failing.Epsilon()
	assert.Zero(t, eps)
}

// TestASmallClientDeclinesPlaintextTasks: below its own min_records_plaintext a client answers
// only encrypted tasks, whatever the coordinator's setting; 0 is its explicit opt-out.
func TestASmallClientDeclinesPlaintextTasks(t *testing.T) {
	schema, train, eval := branchFile(t, false, 60)
	require.Less(t, train.Len(), privacy.DefaultMinRecordsPlaintext)
	for _, tk := range tasks(t, schema, train) {
		s, err := client.NewSession("b", schema, train, eval, client.SessionOptions{})
		require.NoError(t, err)
		_, _, err = s.Handle(context.Background(), tk)
		require.ErrorIs(t, err, client.ErrDeclined, tk.Kind.String())
		assert.Contains(t, err.Error(), "below its min_records_plaintext 100")

		optedOut, err := client.NewSession("b", schema, train, eval, client.SessionOptions{Floor: privacy.Floor{MinRecordsPlaintext: new(int)}})
		require.NoError(t, err)
		_, _, err = optedOut.Handle(context.Background(), tk)
		require.NoError(t, err, "opted out: %s", tk.Kind)
	}
	negative := -1
	_, err := client.NewSession("b", schema, train, eval, client.SessionOptions{Floor: privacy.Floor{MinRecordsPlaintext: &negative}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "privacy.min_records_plaintext")
}

// TestARestartedClientRemembersWhatItEvaluated: the evaluation history is saved with the
// ledger, so a restarted client still answers each model version once.
func TestARestartedClientRemembersWhatItEvaluated(t *testing.T) {
	schema, train, eval := branchFile(t, false, 300)
	dir := client.StateDir(t.TempDir())
	open := func() *client.Session {
		saved, err := dir.Privacy()
		require.NoError(t, err)
		s, err := client.NewSession("b", schema, train, eval, client.SessionOptions{PrivacyState: saved, PersistPrivacy: dir.SavePrivacy})
		require.NoError(t, err)
		return s
	}
	base := tasks(t, schema, train)
	tk := dpSGD(base[1], 1)
	tk.ModelVersion = 7
	s := open()
	_, _, err := s.Handle(context.Background(), tk)
	require.NoError(t, err)
	ev := dpEvaluate(base[2], 7, 50, 0, false)
	first, _, err := s.Handle(context.Background(), ev)
	require.NoError(t, err)

	restarted := open()
	again, _, err := restarted.Handle(context.Background(), ev)
	require.NoError(t, err)
	assert.Equal(t, first.Sum.Plain, again.Sum.Plain, "the same question gets the same answer after a restart")
	other := ev
	other.Fairness = nil
	_, _, err = restarted.Handle(context.Background(), other)
	require.ErrorIs(t, err, client.ErrDeclined, "another question about the same version")
}
