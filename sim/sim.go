package sim

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"time"

	"gonum.org/v1/gonum/mat"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/metrics"
	"github.com/fedprop/fedprop/metrics/fairness"
	"github.com/fedprop/fedprop/model/gbdt"
	"github.com/fedprop/fedprop/model/logreg"
	"github.com/fedprop/fedprop/privacy"
	"github.com/fedprop/fedprop/release/audit"
	"github.com/fedprop/fedprop/release/modelcard"
	"github.com/fedprop/fedprop/release/modelfile"
	"github.com/fedprop/fedprop/secagg"
	"github.com/fedprop/fedprop/sim/attack"
	"github.com/fedprop/fedprop/store/mem"
	"github.com/fedprop/fedprop/task"
	"github.com/fedprop/fedprop/transport/inmem"
)

// RoundMetrics is one line of metrics.csv: the committed version of a round, evaluated
// exactly on the pooled test rows, beside the federated evaluation the coordinator computed
// from the clients' sums.
type RoundMetrics struct {
	Round        int
	Version      uint64
	Test         metrics.Summary
	Federated    *metrics.Summary
	TrainLoss    float64
	Contributors int
	Examples     float64
	Seconds      float64
}

// Summary is summary.json.
type Summary struct {
	FedpropVersion    string           `json:"fedprop_version"`
	Seed              uint64           `json:"seed"`
	Rounds            int              `json:"rounds"`
	Status            string           `json:"status"`
	Message           string           `json:"message,omitempty"`
	Clients           int              `json:"clients"`
	TrainRows         int              `json:"train_rows"`
	TestRows          int              `json:"test_rows"`
	ConsentTracked    bool             `json:"consent_tracked"`
	ExcludedNoConsent int              `json:"excluded_no_consent"`
	Features          int              `json:"features"`
	Final             metrics.Summary  `json:"final"`
	Centralized       *metrics.Summary `json:"centralized,omitempty"`
	// SecureAggregation is the mode ("none" or "he") and, in he mode, the committee.
	SecureAggregation string `json:"secure_aggregation"`
	CommitteeSize     int    `json:"committee_size,omitempty"`
	Threshold         int    `json:"threshold,omitempty"`
	// BytesPerClientRound is the mean payload a client sent per train task.
	BytesPerClientRound float64 `json:"bytes_per_client_round"`
	// BytesPerClientTree is, in a tree run, the mean payload a client sent for one tree (one
	// round: the levels it was asked, and the sketch in the first); CiphertextsPerClientLevel
	// the mean ciphertexts of one client's histograms of one level, in he mode.
	BytesPerClientTree        float64 `json:"bytes_per_client_tree,omitempty"`
	CiphertextsPerClientLevel float64 `json:"ciphertexts_per_client_level,omitempty"`
	// Privacy is the differential-privacy guarantee of the final model (nil without DP).
	Privacy *coordinator.PrivacyReport `json:"privacy,omitempty"`
	// Fairness is the final model's fairness audit, computed by the coordinator from the
	// clients' per-group sums, and FairnessVerdict the run policy's judgement of it.
	Fairness        *fairness.Report  `json:"fairness,omitempty"`
	FairnessVerdict *fairness.Verdict `json:"fairness_verdict,omitempty"`
	// FederatedEvaluation is the final federated evaluation (histogram AUC, exact counts).
	FederatedEvaluation *metrics.Summary `json:"federated_evaluation,omitempty"`
	// Personalization compares, per client, the global model with its fine-tuned copy.
	Personalization *Personalization `json:"personalization,omitempty"`
	// Dropped and Late count the answers the failure model dropped and those that arrived
	// after their phase's deadline.
	Dropped int `json:"dropped"`
	Late    int `json:"late"`
	// Rejected counts the results the coordinator refused as outside the run's bounds.
	Rejected int `json:"rejected"`
	// Time spent protecting sums: clients encoding and encrypting, the coordinator adding
	// results into its running sums, and the committee decrypting (shares and combination).
	EncryptionSeconds  float64   `json:"encryption_seconds"`
	AggregationSeconds float64   `json:"aggregation_seconds"`
	DecryptionSeconds  float64   `json:"decryption_seconds"`
	WallSeconds        float64   `json:"wall_seconds"`
	Weights            []float64 `json:"weights"`
	// SmallClientsInPlaintext flags the research opt-out: a plaintext run (secure_aggregation
	// none) with run.min_records_plaintext 0, whose coordinator received the own sums of
	// ClientsBelowMinRecords clients holding fewer training records than the default minimum,
	// close to their customers' records. A coordinator at its default refuses such clients.
	SmallClientsInPlaintext bool `json:"small_clients_in_plaintext"`
	ClientsBelowMinRecords  int  `json:"clients_below_min_records,omitempty"`
	// ClientRandomness says where the clients' privacy-protecting randomness came from: in a
	// simulation, from the simulator's seed.
	ClientRandomness ClientRandomness `json:"client_randomness"`
	// Populations describes, in a cross-device federation (data.branch_clients), the app
	// clients and the branch clients: what each held and what each was asked.
	Populations []Population `json:"populations,omitempty"`
	Config      Config       `json:"config"`
}

// ClientRandomness is the summary's statement about the clients' private randomness.
type ClientRandomness struct {
	// SeededBySimulator is true: every simulated client's private source (and the simulated
	// coordinator's) was seeded by the simulator from Seed, so that the run repeats.
	SeededBySimulator bool   `json:"seeded_by_simulator"`
	Seed              uint64 `json:"seed"`
	// Covers lists the draws that came from those sources; FromCryptoRand those that come
	// from crypto/rand even in a simulation (in he mode, so such a run repeats only to within
	// that noise, far below the model's precision).
	Covers         []string `json:"covers"`
	FromCryptoRand []string `json:"from_crypto_rand"`
	Note           string   `json:"note"`
}

// simulatedRandomness is what every simulation states about its clients' randomness.
func simulatedRandomness(seed uint64) ClientRandomness {
	return ClientRandomness{
		SeededBySimulator: true,
		Seed:              seed,
		Covers: []string{"differential-privacy noise and noise shares", "DP-SGD record sampling", "encryption",
			"committee members' identity and secret keys", "the coordinator's own privacy noise and client sampling"},
		FromCryptoRand: []string{"committee members' public-key share noise", "decryption-share smudging"},
		Note: "simulation only: each client's private source was seeded by the simulator from its seed so that the run repeats; " +
			"a production client seeds it from crypto/rand and has no setting to do otherwise",
	}
}

// Population is one kind of client of a cross-device federation.
type Population struct {
	// Kind is "branch" (data.branch_clients) or "app" (the synthetic population).
	Kind      string `json:"kind"`
	Clients   int    `json:"clients"`
	TrainRows int    `json:"train_rows"`
	// KeyHolders counts the clients that held committee key material (an identity key and,
	// once set up, a share of the collective secret key).
	KeyHolders int `json:"key_holders"`
	// Tasks counts the tasks the clients answered, by kind; EncryptedResults and
	// PlaintextResults the sums they sent (stats, train, evaluate) by how they left them.
	Tasks            map[string]int `json:"tasks"`
	EncryptedResults int            `json:"encrypted_results"`
	PlaintextResults int            `json:"plaintext_results"`
}

// Observer hears about a simulation's progress: the table printer and the progress bar.
type Observer interface {
	Round(m RoundMetrics)
}

// Options are the simulation's process settings.
type Options struct {
	Logger   *slog.Logger
	Observer Observer
	// Trace, when set, receives the run's protocol events, one line each, in the order they
	// happened: registrations, tasks handed out, what became of each answer, commits and the
	// coordinator's warnings. Golden scenario tests compare it.
	Trace io.Writer
	// Version is the fedprop version written into the summary.
	Version string
	// World, when set, is the federation's data instead of what cfg.Data loads; Run only
	// reads it. The privacy audit runs one partition with chosen training rows left out.
	World *World
	// Release, when set, fills Result.Model and Result.ModelCard from the coordinator before
	// it stops: what it would release of the last committed version.
	Release bool
}

// Result is a finished simulation.
type Result struct {
	Rounds  []RoundMetrics
	Summary Summary
	// Audit is the coordinator's audit log of the run, as `fedprop audit verify --log`
	// checks it.
	Audit []audit.Entry
	// Model and ModelCard are the last committed version's model document and model card
	// (Options.Release).
	Model     *modelfile.Document
	ModelCard *modelcard.Card
}

// Run simulates cfg. It returns an error when the data cannot be loaded or the run fails.
func Run(ctx context.Context, cfg Config, opts Options) (*Result, error) {
	start := time.Now()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	world := opts.World
	if world == nil {
		w, err := Load(ctx, cfg)
		if err != nil {
			return nil, err
		}
		world = w
	}
	if pc := &cfg.Run.Privacy; pc.Mechanism == coordinator.DPRecord && pc.SamplingRate == 0 && pc.Records == 0 {
		// A planned DP-SGD run needs the records it trains on; in a simulation they are
		// known, so the plan uses the data's count rather than a declared one.
		pc.Records = world.TrainRows()
	}
	sessions, err := newSessions(cfg, world)
	if err != nil {
		return nil, err
	}
	excluded := 0
	for _, s := range sessions {
		excluded += s.Excluded()
	}
	d := &driver{cfg: cfg, opts: opts, sessions: sessions, world: world, answered: map[string]bool{}, trainRounds: map[clientRound]bool{}}
	if cfg.Run.SecureAggregation.Mode == coordinator.SecAggHE {
		lit, err := secagg.PresetLiteral(cfg.Run.SecureAggregation.Parameters)
		if err != nil {
			return nil, fmt.Errorf("simulate: %w", err)
		}
		params, err := secagg.NewParams(lit)
		if err != nil {
			return nil, fmt.Errorf("simulate: %w", err)
		}
		d.cts = params.CiphertextsFor
	}
	if cfg.Data.BranchClients.Count > 0 {
		d.populations = newPopulations(world, sessions)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	if err := d.start(runCtx); err != nil {
		return nil, err
	}
	defer d.stopServer()
	if err := d.schedule(ctx); err != nil {
		return nil, err
	}
	var (
		status  coordinator.RunState
		encoder *dataset.Encoder
		last    *coordinator.ModelVersion
	)
	if err := d.server.View(ctx, func(c *coordinator.Core) {
		status, encoder, last = c.Status(), c.Encoder(), c.LastModel()
	}); err != nil {
		return nil, fmt.Errorf("simulate: %w", err)
	}
	if err := d.evaluateCommits(); err != nil {
		return nil, err
	}
	var (
		doc  *modelfile.Document
		card *modelcard.Card
	)
	if opts.Release && last != nil {
		if doc, err = d.server.ModelDocument(ctx, last.Version); err != nil {
			return nil, fmt.Errorf("simulate: %w", err)
		}
		if card, err = d.server.ModelCard(ctx, last.Version); err != nil {
			return nil, fmt.Errorf("simulate: %w", err)
		}
	}
	d.stopServer()
	if d.auditLog, err = d.audit.Entries(ctx); err != nil {
		return nil, fmt.Errorf("simulate: %w", err)
	}
	res := &Result{Rounds: d.rounds, Audit: d.auditLog, Model: doc, ModelCard: card}
	sum := Summary{
		FedpropVersion:     opts.Version,
		Seed:               cfg.Seed,
		Rounds:             status.LastRound,
		Status:             string(status.Status),
		Message:            status.Message,
		Clients:            len(sessions),
		TrainRows:          world.TrainRows(),
		TestRows:           world.Test.Len(),
		ConsentTracked:     status.ConsentTracked,
		ExcludedNoConsent:  excluded,
		Config:             cfg,
		SecureAggregation:  cfg.Run.SecureAggregation.Mode,
		CommitteeSize:      len(cfg.Run.SecureAggregation.Committee),
		Threshold:          cfg.Run.SecureAggregation.Threshold,
		Dropped:            d.dropped,
		Late:               d.late,
		Rejected:           d.rejected,
		EncryptionSeconds:  d.encSeconds,
		AggregationSeconds: d.aggSeconds,
		DecryptionSeconds:  d.decSeconds,
		ClientRandomness:   simulatedRandomness(cfg.Seed),
		Populations:        d.populations,
	}
	if cfg.Run.SmallClientsInPlaintext() {
		sum.SmallClientsInPlaintext = true
		sum.ClientsBelowMinRecords = clientsBelow(world, coordinator.DefaultMinRecordsPlaintext)
	}
	if encoder != nil {
		sum.Features = encoder.Dim()
	}
	if n := len(d.rounds); n > 0 {
		sum.Final = d.rounds[n-1].Test
	}
	if last != nil {
		sum.Weights = last.Weights
		sum.Privacy = last.Privacy
		sum.Fairness, sum.FairnessVerdict = last.Fairness, last.FairnessVerdict
		sum.FederatedEvaluation = last.Evaluation
	}
	if d.trainTasks > 0 {
		sum.BytesPerClientRound = float64(d.trainBytes) / float64(d.trainTasks)
	}
	if cfg.Run.Trees() && len(d.trainRounds) > 0 {
		sum.BytesPerClientTree = float64(d.trainBytes) / float64(len(d.trainRounds))
	}
	if d.levelResults > 0 {
		sum.CiphertextsPerClientLevel = float64(d.levelCiphertexts) / float64(d.levelResults)
	}
	if status.Status != coordinator.RunCompleted {
		return res, fmt.Errorf("simulate: run %s %s: %s", status.ID, status.Status, status.Message)
	}
	if cfg.Personalization.Epochs > 0 {
		enc := task.Encoding{SchemaHash: status.SchemaHash, Mean: status.Standardization.Mean, Std: status.Standardization.Std}
		if sum.Personalization, err = personalize(cfg, sessions, sum.Weights, enc); err != nil {
			return nil, fmt.Errorf("simulate: %w", err)
		}
	}
	// The sessions' state (privacy ledgers, releases) is not needed any more: let it go, and
	// collect it now, before the centralized fit pools every training row; otherwise the heap
	// grows past the run's peak (100,000 app clients: 2.3 GB instead of 1.8).
	sessions, d.sessions, d.agents = nil, nil, nil
	runtime.GC()
	if *cfg.Centralized && cfg.Run.Trees() {
		c, err := centralizedTrees(world, *status.Standardization, cfg.Run)
		if err != nil {
			return nil, err
		}
		sum.Centralized = &c
	} else if *cfg.Centralized {
		c, err := centralized(world, encoder, d.testX, cfg.Run.Train.L2)
		if err != nil {
			return nil, err
		}
		sum.Centralized = &c
	}
	sum.WallSeconds = time.Since(start).Seconds()
	res.Summary = sum
	return res, nil
}

type driver struct {
	cfg      Config
	opts     Options
	server   *coordinator.Server
	store    *mem.Store
	audit    *audit.MemStore
	net      *inmem.Network
	sessions []*client.Session
	agents   []*client.Agent
	world    *World
	// stopServer ends the coordinator's driver loop and waits for it (idempotent).
	stopServer func()
	// tick is the simulated clock, for the trace.
	tick     int64
	traceMu  sync.Mutex
	commits  *commitLog
	auditLog []audit.Entry

	rounds     []RoundMetrics
	roundStart time.Time
	encoder    *dataset.Encoder
	testX      *mat.Dense // the pooled test rows, encoded once the encoding is pinned
	trainBytes int
	trainTasks int
	// trainRounds are the (client, round) pairs that sent a train result; levelResults and
	// levelCiphertexts count a tree run's encrypted histograms, cts the ciphertexts of a
	// vector of n values under the run's parameters (nil without he).
	trainRounds      map[clientRound]bool
	levelResults     int
	levelCiphertexts int
	cts              func(n int) int
	answered         map[string]bool // task ids already computed (a task stays outstanding until it ends)
	dropped          int             // answers the failure model dropped
	refused          int             // tasks clients declined (their privacy floor)
	rejected         int             // results the coordinator refused (outside the run's bounds)
	late             int             // answers that arrived after their phase ended
	encSeconds       float64
	aggSeconds       float64
	decSeconds       float64
	// populations counts, in a cross-device federation, what each kind of client did
	// (indexed by populationOf).
	populations []Population
}

// start runs the production coordinator (its Server, over an in-memory store and audit log,
// in virtual time) and makes every client's agent, connected to it through the in-memory
// network.
func (d *driver) start(ctx context.Context) error {
	cfg := d.cfg
	d.store, d.audit, d.commits = mem.New(), &audit.MemStore{}, &commitLog{d: d}
	srv, err := coordinator.NewServer(ctx, d.store, &coordinator.RunSpec{Config: cfg.Run, Schema: d.world.Schema, SchemaYAML: d.world.SchemaYAML},
		coordinator.ServerConfig{
			ID: "fedprop-sim", Logger: d.opts.Logger, Audit: d.audit, Version: d.opts.Version, Observer: d.commits,
			// In simulated time every client answers within the tick it was asked, so the
			// deadline only matters for clients a scenario drops.
			ManualClock: true, DeadlineTicks: cfg.Failures.DeadlineTicks,
			NoiseSource: rand.NewChaCha8(seedKey(cfg.Seed, 0, 4)),
		})
	if err != nil {
		return fmt.Errorf("simulate: %w", err)
	}
	d.server = srv
	done := make(chan struct{})
	loopCtx, cancel := context.WithCancel(ctx)
	go func() { defer close(done); _ = srv.Run(loopCtx) }()
	var once sync.Once
	d.stopServer = func() { once.Do(func() { cancel(); <-done }) }

	d.net = inmem.New(srv, inmem.Options{Share: true, NoLog: true})
	// The agents log nothing: the summary counts what they would say, for every client.
	quiet := slog.New(slog.DiscardHandler)
	d.agents = make([]*client.Agent, len(d.sessions))
	for i, s := range d.sessions {
		d.agents[i] = client.NewAgent(d.net.Endpoint(s.ID()), s, client.AgentConfig{Logger: quiet, SendAttempts: 1, KeepNoAnswer: true})
	}
	return nil
}

// progress reads the run's status and round from the coordinator.
func (d *driver) progress(ctx context.Context) (coordinator.RunStatus, int, error) {
	var (
		st    coordinator.RunStatus
		round int
	)
	err := d.server.View(ctx, func(c *coordinator.Core) {
		if c != nil {
			st, round = c.RunStatus(), c.Round()
		}
	})
	return st, round, err
}

// commitLog hears the versions the coordinator commits, for the simulator to evaluate them.
// It is the driver's Observer: called inside the coordinator's loop, it only keeps them.
type commitLog struct {
	d        *driver // for the trace
	mu       sync.Mutex
	versions []coordinator.ModelVersion
	at       []time.Time
}

func (l *commitLog) Flushed(f coordinator.Flush) {
	for _, n := range f.Actions.Notes {
		if n.Level >= slog.LevelWarn {
			l.d.tracef("%s %s%s", strings.ToLower(n.Level.String()), n.Msg, attrText(n.Attrs))
		}
	}
	if v := f.Actions.Commit; v != nil {
		l.d.tracef("commit version %d round %d contributors %d", v.Version, v.Round, v.Contributors)
	}
	if r := f.Actions.Run; r != nil && r.Status.Finished() {
		l.d.tracef("run %s: %s", r.Status, r.Message)
	}
	if f.Actions.Commit == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.versions = append(l.versions, *f.Actions.Commit)
	l.at = append(l.at, time.Now())
}

func (l *commitLog) Submitted(task.Kind, coordinator.Outcome) {}
func (l *commitLog) Audited(audit.Action)                     {}

// tracef writes one line of the trace, prefixed with the simulated tick.
func (d *driver) tracef(format string, args ...any) {
	if d.opts.Trace == nil {
		return
	}
	d.traceMu.Lock()
	defer d.traceMu.Unlock()
	fmt.Fprintf(d.opts.Trace, "t=%d "+format+"\n", append([]any{d.tick}, args...)...)
}

// attrText renders a note's attributes after its message, the run's id left out.
func attrText(attrs []slog.Attr) string {
	var b strings.Builder
	for _, a := range attrs {
		if a.Key == "run" {
			continue
		}
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	return b.String()
}

// evaluateCommits evaluates the versions committed since the last call.
func (d *driver) evaluateCommits() error {
	d.commits.mu.Lock()
	versions, at := d.commits.versions, d.commits.at
	d.commits.versions, d.commits.at = nil, nil
	d.commits.mu.Unlock()
	if len(versions) == 0 {
		return nil
	}
	if d.encoder == nil {
		if err := d.server.View(context.Background(), func(c *coordinator.Core) { d.encoder = c.Encoder() }); err != nil {
			return fmt.Errorf("simulate: %w", err)
		}
	}
	for k, v := range versions {
		if err := d.evaluate(v, at[k]); err != nil {
			return fmt.Errorf("simulate: %w", err)
		}
	}
	return nil
}

// evaluate scores a committed version exactly on the pooled test rows; at is when it was
// committed.
func (d *driver) evaluate(v coordinator.ModelVersion, at time.Time) error {
	scores, err := d.testScores(v)
	if err != nil {
		return fmt.Errorf("score version %d on the test rows: %w", v.Version, err)
	}
	m := RoundMetrics{
		Round:        v.Round,
		Version:      v.Version,
		Test:         metrics.Evaluate(scores, d.world.Test.Label),
		Federated:    v.Evaluation,
		TrainLoss:    v.TrainLoss,
		Contributors: v.Contributors,
		Examples:     v.Examples,
		Seconds:      at.Sub(d.roundStart).Seconds(),
	}
	d.roundStart = at
	d.rounds = append(d.rounds, m)
	if d.opts.Observer != nil {
		d.opts.Observer.Round(m)
	}
	return nil
}

// encodedScorer is a model that scores rows its encoder made (logistic regression): the
// driver encodes the pooled test rows once, not once a round.
type encodedScorer interface {
	PredictEncoded(x *mat.Dense) []float64
}

// testScores scores the pooled test rows with the model of version v.
func (d *driver) testScores(v coordinator.ModelVersion) ([]float64, error) {
	m, err := v.Model(d.encoder)
	if err != nil {
		return nil, err
	}
	if e, ok := m.(encodedScorer); ok {
		if d.testX == nil {
			d.testX = d.encoder.Encode(d.world.Test)
		}
		return e.PredictEncoded(d.testX), nil
	}
	return m.Predict(d.world.Test)
}

// newSessions makes every simulated client's session: in he mode, committee members get key
// material drawn from seeded sources and every client encrypts, so the run still repeats.
func newSessions(cfg Config, world *World) ([]*client.Session, error) {
	sa := cfg.Run.SecureAggregation
	he := sa.Mode == coordinator.SecAggHE
	members := map[string]bool{}
	for _, id := range sa.Committee {
		members[id] = true
	}
	names := make([]string, len(world.Clients))
	for i, c := range world.Clients {
		names[i] = c.Name
	}
	var malicious map[string]bool
	if cfg.Attack.Enabled() {
		malicious = cfg.Attack.Malicious(names, cfg.Seed)
	}
	sessions := make([]*client.Session, len(world.Clients))
	for i, c := range world.Clients {
		// The simulated clients hold the run's plaintext minimum as their own (the research
		// opt-out included), so that the coordinator's rule is what a simulation shows.
		minPlain := cfg.Run.MinRecords()
		opts := client.SessionOptions{RequireEncryption: he, Now: time.Now, Random: seededReader(cfg.Seed, uint64(i), 1),
			Floor: privacy.Floor{MinRecordsPlaintext: &minPlain}, Parameters: simParameters(sa),
			// Very many small clients keep nothing but their records between tasks, and are not
			// logged one by one.
			NoEncodingCache: len(world.Clients) > 1000, NoEpsilonReport: len(world.Clients) > 1000}
		train := c.Train
		if malicious[c.Name] {
			switch cfg.Attack.Kind {
			case attack.LabelFlip:
				train = train.Subset(nil)
				*train = *c.Train
				train.Label = attack.FlipLabels(c.Train.Label)
			default:
				opts.Protector = poisoner(cfg.Attack)
			}
		}
		if he {
			if members[c.Name] {
				identity, err := secagg.NewIdentity(seededReader(cfg.Seed, uint64(i), 2))
				if err != nil {
					return nil, fmt.Errorf("simulate: %w", err)
				}
				m, err := client.NewMember(client.MemberConfig{MinContributors: sa.MinContributors, Identity: identity,
					Random: seededReader(cfg.Seed, uint64(i), 3), Parameters: simParameters(sa)})
				if err != nil {
					return nil, fmt.Errorf("simulate: %w", err)
				}
				opts.Member = m
				delete(members, c.Name)
			}
		}
		s, err := client.NewSession(c.Name, world.Schema, train, c.Test, opts)
		if err != nil {
			return nil, fmt.Errorf("simulate: %w", err)
		}
		sessions[i] = s
	}
	for id := range members {
		return nil, fmt.Errorf("simulate: run.secure_aggregation.committee: %q is not one of the simulated clients", id)
	}
	return sessions, nil
}

// newPopulations describes the branch and app clients of a cross-device federation before the
// run; the driver counts their tasks as they answer.
func newPopulations(world *World, sessions []*client.Session) []Population {
	pops := []Population{{Kind: "branch", Tasks: map[string]int{}}, {Kind: "app", Tasks: map[string]int{}}}
	for i, c := range world.Clients {
		p := &pops[populationOf(c)]
		p.Clients++
		p.TrainRows += c.Train.Len()
		if sessions[i].IdentityKey() != nil {
			p.KeyHolders++
		}
	}
	return pops
}

// populationOf is the index in Summary.Populations of a client's kind.
func populationOf(c ClientData) int {
	if c.Branch {
		return 0
	}
	return 1
}

// count records that client i answered t with r.
func (d *driver) count(i int, t task.Task, r task.Result) {
	if d.populations == nil {
		return
	}
	p := &d.populations[populationOf(d.world.Clients[i])]
	p.Tasks[t.Kind.String()]++
	switch {
	case r.Sum.Ciphertext != nil:
		p.EncryptedResults++
	case r.Sum.Plain != nil:
		p.PlaintextResults++
	}
}

// clientsBelow counts the clients with fewer than n training rows.
func clientsBelow(w *World, n int) int {
	k := 0
	for _, c := range w.Clients {
		if c.Train.Len() < n {
			k++
		}
	}
	return k
}

// simParameters is what the simulated clients accept: the run's parameter set, whichever it
// is (a simulation studies the configured run, not a client's refusal of it).
func simParameters(sa coordinator.SecureAggregationConfig) []string {
	if sa.Parameters == "" {
		return nil
	}
	return []string{sa.Parameters}
}

// poisoner is a malicious client's last step: it corrupts its train update as the attack says.
func poisoner(a attack.Config) client.Protector {
	return client.ProtectorFunc(func(_ context.Context, t task.Task, values []float64) (task.Vector, error) {
		if t.Kind == task.KindTrain {
			values = a.PoisonWithin(values, t.MaxUpdateNorm)
		}
		return task.Vector{Plain: values}, nil
	})
}

// seededReader is a deterministic byte stream for one client and purpose.
func seededReader(seed, client, purpose uint64) io.Reader {
	return rand.NewChaCha8(seedKey(seed, client, purpose))
}

func seedKey(seed, client, purpose uint64) [32]byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[0:], seed)
	binary.LittleEndian.PutUint64(key[8:], client)
	binary.LittleEndian.PutUint64(key[16:], purpose)
	copy(key[24:], "fedprop!")
	return key
}

// centralizedTrees fits the run's trees on the pooled training rows with the very algorithm
// the federation ran (gbdt.Fit is the federated fit with one client), the same
// standardisation and parameters, and evaluates them on the pooled test rows.
func centralizedTrees(w *World, std dataset.Standardization, rc coordinator.RunConfig) (metrics.Summary, error) {
	m, err := gbdt.Fit(w.PooledTrain(), std, rc.TreeParams())
	if err != nil {
		return metrics.Summary{}, fmt.Errorf("centralized fit: %w", err)
	}
	scores, err := m.Predict(w.Test)
	if err != nil {
		return metrics.Summary{}, fmt.Errorf("centralized fit: %w", err)
	}
	return metrics.Evaluate(scores, w.Test.Label), nil
}

// centralized trains the same model (same encoding, same L2 penalty) on the pooled training
// rows to convergence and evaluates it on the pooled test rows.
func centralized(w *World, enc *dataset.Encoder, testX *mat.Dense, l2 float64) (metrics.Summary, error) {
	train := w.PooledTrain()
	x, y := enc.Encode(train), train.Label
	train = nil // only the encoded rows and the labels are needed from here on
	weights, err := logreg.FitCentralized(x, y, l2)
	if err != nil {
		return metrics.Summary{}, fmt.Errorf("centralized fit: %w", err)
	}
	if testX == nil {
		testX = enc.Encode(w.Test)
	}
	scores := logreg.PredictAll(weights, testX, nil)
	return metrics.Evaluate(scores, w.Test.Label), nil
}
