package coordinator

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"slices"

	"gonum.org/v1/gonum/floats"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/metrics"
	"github.com/fedprop/fedprop/metrics/fairness"
	"github.com/fedprop/fedprop/model/explain"
	"github.com/fedprop/fedprop/model/gbdt"
	"github.com/fedprop/fedprop/secagg"
	"github.com/fedprop/fedprop/strategy"
	"github.com/fedprop/fedprop/task"
)

const defaultHistogramBins = metrics.DefaultBins

// phase is what the core is collecting results for.
type phase int

const (
	phaseWaiting phase = iota
	phaseStats
	phaseTrain
	phaseEvaluate
	phaseKeygen
	phaseDecrypt
	phaseDone
)

func (p phase) kind() task.Kind {
	switch p {
	case phaseStats:
		return task.KindStats
	case phaseTrain:
		return task.KindTrain
	case phaseEvaluate:
		return task.KindEvaluate
	case phaseKeygen:
		return task.KindKeygen
	case phaseDecrypt:
		return task.KindDecrypt
	}
	return task.KindUnspecified
}

// Note is something the operator should read in the coordinator's log.
type Note struct {
	Level slog.Level
	Msg   string
	Attrs []slog.Attr
	// Event is what the note reports for the driver's metrics (EventNone for most).
	Event Event
}

// Actions are what the driver must do after a Step or Tick, in this order: persist Run (with
// Commit in the same transaction when both are set), log the Notes, then call Advance.
type Actions struct {
	Run    *RunState
	Commit *ModelVersion
	Notes  []Note
}

// Empty reports whether there is nothing to do.
func (a Actions) Empty() bool { return a.Run == nil && a.Commit == nil && len(a.Notes) == 0 }

// Core is the coordinator's round state machine for one run: events in (registrations, polls,
// results, ticks), actions out (persist this, commit that version). It does no I/O, starts no
// goroutine and reads no clock; time is a count of ticks and randomness comes from the run's
// seed, so the same events give the same run. It is not safe for concurrent use: one driver
// loop owns it.
type Core struct {
	cfg           RunConfig
	schema        *dataset.Schema
	deadlineTicks int64

	run       RunState
	numeric   int
	encoder   *dataset.Encoder
	features  []string
	strategy  strategy.Strategy
	global    []float64
	stratSt   strategy.State
	lastModel *ModelVersion

	clients  map[string]int64 // client id -> tick last seen
	records  map[string]int   // client id -> training records announced at registration
	tick     int64
	phase    phase
	round    int
	attempt  int
	deadline int64

	cohort []string
	// summed are the clients whose results the phase's last sum holds (in he mode, the
	// aggregate's contributors), once it is complete.
	summed      []string
	outstanding map[string]task.Task  // client id -> task issued and not yet answered
	accepted    map[string]acceptance // task id -> who answered it, and with what, in this phase
	previous    map[string]acceptance // and in the phase before it (a retry may arrive late)
	acc         accumulator
	// scratch is the plain form of a sparse result while submitSum checks it, and all zeros
	// between results: one buffer serves every result, so that thousands of evaluation
	// results of 28,000 values (a few hundred of them not zero) allocate nothing. Nothing
	// keeps it.
	scratch     []float64
	results     int      // results accepted in the current collection
	refusals    int      // tasks clients declined, over the run
	implausible int      // decrypted aggregates discarded as implausible, over the run
	submitters  []string // the clients whose results were accepted in it
	// train is the round strategy of the current (or last) train phase, and step the step
	// of its round being collected (a tree grows in several).
	train trainRound
	step  int
	// trees is the model of a tree run so far (nil before its bins are fixed).
	trees *gbdt.Model
	// treeDigests names the model in tree steps after a tree's first level (see
	// treeTrain.fill); it lives as long as the run, so that each tree is hashed once.
	treeDigests gbdt.Digester

	// noise is the source of the coordinator's differential-privacy noise.
	noise *rand.Rand
	// fairness is the layout of the per-group sums evaluate tasks return (nil: no sensitive
	// attributes).
	fairness *fairness.Layout
	// importanceFeatures is the number of raw features whose importance sums evaluate tasks
	// return.
	importanceFeatures int
	// expected is m, the contributors the current train phase expects, fixed when the phase
	// starts.
	expected int

	// sec is the secure-aggregation sub-state machine (he mode; nil otherwise).
	sec *committee

	// candidate holds the trained model of this round while it is being evaluated.
	candidate *ModelVersion

	pending Actions
}

// NewCore starts a new run, or resumes one when prev is the run's stored record and last its
// latest committed version (nil when none). cfg must have passed Validate.
func NewCore(cfg RunConfig, schema *dataset.Schema, schemaYAML []byte, prev *RunState, last *ModelVersion) (*Core, error) {
	strat, err := strategy.New(cfg.Strategy)
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", cfg.ID, err)
	}
	c := &Core{
		cfg:           cfg,
		schema:        schema,
		deadlineTicks: 1,
		strategy:      strat,
		numeric:       len(schema.Numeric),
		clients:       map[string]int64{},
		records:       map[string]int{},
		outstanding:   map[string]task.Task{},
		accepted:      map[string]acceptance{},
		noise:         rand.New(cryptoSource()),
	}
	if len(schema.Sensitive) > 0 {
		layout, err := fairness.NewLayout(schema, cfg.Fairness.LayoutConfig)
		if err != nil {
			return nil, fmt.Errorf("run %s: run.fairness: %w", cfg.ID, err)
		}
		c.fairness = &layout
	}
	if c.he() {
		if c.sec, err = newCommittee(cfg.SecureAggregation); err != nil {
			return nil, fmt.Errorf("run %s: %w", cfg.ID, err)
		}
	}
	if prev == nil {
		if err := c.cfg.planDPSGD(schema); err != nil {
			return nil, fmt.Errorf("run %s: %w", cfg.ID, err)
		}
		c.run = RunState{
			ID:             cfg.ID,
			Config:         c.cfg,
			SchemaHash:     task.SchemaHash(schema),
			SchemaYAML:     schemaYAML,
			Status:         RunWaiting,
			ConsentTracked: schema.Consent.Tracked,
		}
		if last != nil {
			// The store holds earlier runs' versions: this run's are numbered after them.
			c.run.LatestVersion = last.Version
		}
		if err := c.initPrivacy(); err != nil {
			return nil, err
		}
		c.pending.Run = c.snapshot()
		return c, nil
	}
	if prev.ID != cfg.ID {
		return nil, fmt.Errorf("resume run %s: stored record is for run %s", cfg.ID, prev.ID)
	}
	c.run = *prev
	c.cfg.keepPlan(prev.Config)
	c.run.Config = c.cfg
	if last != nil && last.RunID == cfg.ID {
		if last.Round != prev.LastRound {
			return nil, fmt.Errorf("resume run %s: latest version %d is round %d but the run record says round %d: %w",
				cfg.ID, last.Version, last.Round, prev.LastRound, ErrConflict)
		}
		c.global = slices.Clone(last.Weights)
		c.trees = last.Trees
		c.stratSt = last.StrategyState
		c.lastModel = last
	}
	if last != nil {
		c.run.LatestVersion = max(c.run.LatestVersion, last.Version)
	}
	if c.run.Standardization != nil {
		if err := c.pinEncoding(*c.run.Standardization); err != nil {
			return nil, err
		}
		if c.global == nil { // stopped after the stats phase, before round 1 committed
			c.global = make([]float64, c.encoder.Dim()+1)
		}
	}
	return c, nil
}

// SetDeadlineTicks sets how many ticks a phase may take; the driver derives it from the
// configured round deadline and its tick interval.
func (c *Core) SetDeadlineTicks(n int64) { c.deadlineTicks = max(1, n) }

// Status returns a copy of the run record.
func (c *Core) Status() RunState { return *c.snapshot() }

// Round is the round in progress (0 during the stats phase).
func (c *Core) Round() int { return c.round }

// Registered is the number of registered clients.
func (c *Core) Registered() int { return len(c.clients) }

// Global is the current global model (nil before the stats phase has pinned the encoding).
func (c *Core) Global() []float64 { return slices.Clone(c.global) }

// Encoder is the run's pinned encoder, nil before the stats phase.
func (c *Core) Encoder() *dataset.Encoder { return c.encoder }

// Register adds a client; registering again only marks it as seen (and updates its identity
// key, which committee members announce for the sealed threshold shares). A run that
// aggregates in plaintext refuses a client announcing fewer training records than its
// min_records_plaintext, with an error wrapping ErrTooFewRecords, and forgets it if it was
// registered before.
func (c *Core) Register(r task.Registration) error {
	clientID := r.ClientID
	if clientID == "" {
		return &ProtocolError{Run: c.cfg.ID, Round: c.round, Field: "client_id", Err: fmt.Errorf("%w: empty", ErrInvalid)}
	}
	_, known := c.clients[clientID]
	if least := c.cfg.MinRecords(); !c.he() && r.TrainRecords < least {
		// In plaintext the coordinator reads each client's own sums; a small client's are
		// close to its customers' records. A client that re-registers with fewer records
		// (consent withdrawn) leaves the run: it gets no further task.
		delete(c.clients, clientID)
		c.note(slog.LevelWarn, "registration refused: too few records for plaintext aggregation", slog.String("client", clientID),
			slog.Int("train_records", r.TrainRecords), slog.Int("min_records_plaintext", least))
		return &ProtocolError{Client: clientID, Run: c.cfg.ID, Round: c.round, Field: "train_records", Err: fmt.Errorf(
			"%w: the client announced %d consenting training records (a client older than this coordinator announces none), below run.min_records_plaintext %d: "+
				"this run aggregates in plaintext (secure_aggregation.mode none), where the coordinator reads each client's own sums, and a small client's sums are close to its customers' records; "+
				"run it with secure_aggregation.mode he, under which the coordinator decrypts only sums over many clients (min_records_plaintext 0 is a research opt-out that removes this protection)",
			ErrTooFewRecords, r.TrainRecords, least)}
	}
	if !known && len(c.clients) == 0 && c.cfg.SmallClientsInPlaintext() {
		// Once per coordinator process, at its first registration: the operator reads why
		// small clients' own sums may arrive in plaintext.
		c.note(slog.LevelWarn, "research opt-out: run.min_records_plaintext is 0 in a plaintext run, so clients of any size register and the coordinator reads their own sums; use secure_aggregation.mode he for small clients",
			slog.Int("min_records_plaintext", 0), slog.String("secure_aggregation", c.cfg.SecureAggregation.Mode))
	}
	if !known {
		c.note(slog.LevelInfo, "client registered", slog.String("client", clientID), slog.Int("registered", len(c.clients)+1))
	}
	c.clients[clientID] = c.tick
	c.records[clientID] = r.TrainRecords
	if len(r.IdentityKey) > 0 && c.sec != nil {
		c.sec.identity[clientID] = r.IdentityKey
	}
	c.progress()
	return nil
}

// Poll returns the task outstanding for the client, if any, and marks the client as live.
func (c *Core) Poll(clientID string) (task.Task, bool, error) {
	if _, ok := c.clients[clientID]; !ok {
		return task.Task{}, false, &ProtocolError{Client: clientID, Run: c.cfg.ID, Round: c.round, Field: "client_id", Err: ErrUnknownClient}
	}
	c.clients[clientID] = c.tick
	t, ok := c.outstanding[clientID]
	return t, ok, nil
}

// Submit takes a client's result. A repeat of an accepted result returns duplicate=true and
// no error; a result that is not for an outstanding task of this client is an error naming
// the field at fault, and leaves the phase untouched.
func (c *Core) Submit(r task.Result) (duplicate bool, err error) {
	perr := func(field string, err error) error {
		return &ProtocolError{Client: r.ClientID, Run: r.RunID, Round: r.Round, Field: field, Err: err}
	}
	if _, ok := c.clients[r.ClientID]; !ok {
		return false, perr("client_id", ErrUnknownClient)
	}
	c.clients[r.ClientID] = c.tick
	if r.RunID != c.cfg.ID {
		return false, perr("run_id", fmt.Errorf("%w: the active run is %q", ErrStale, c.cfg.ID))
	}
	for _, seen := range []map[string]acceptance{c.accepted, c.previous} {
		if a, ok := seen[r.TaskID]; ok && a.client == r.ClientID {
			if a.digest != resultDigest(r) {
				return false, perr("task_id", fmt.Errorf("%w: task %s was already answered with a different result; a retry must resend the accepted one unchanged", ErrInvalid, r.TaskID))
			}
			return true, nil
		}
	}
	t, ok := c.outstanding[r.ClientID]
	if !ok || t.ID != r.TaskID {
		return false, perr("task_id", fmt.Errorf("%w: %q is not outstanding for this client (past its deadline, or another round)", ErrStale, r.TaskID))
	}
	if r.Round != t.Round {
		return false, perr("round", fmt.Errorf("%w: task %s is for round %d", ErrInvalid, t.ID, t.Round))
	}
	if r.Kind != t.Kind {
		return false, perr("kind", fmt.Errorf("%w: task %s is a %s task, got %s", ErrInvalid, t.ID, t.Kind, r.Kind))
	}
	if r.Refusal != "" {
		// The client declined (its privacy floor, for example): nothing of it is counted, and
		// the phase stops waiting for it.
		c.note(slog.LevelWarn, "client refused its task", slog.String("client", r.ClientID), slog.Int("round", t.Round),
			slog.String("kind", t.Kind.String()), slog.String("reason", r.Refusal))
		c.refusals++
		delete(c.outstanding, r.ClientID)
		c.accepted[r.TaskID] = acceptance{client: r.ClientID, digest: resultDigest(r)}
		c.progress()
		return false, nil
	}
	switch t.Kind {
	case task.KindKeygen:
		if err := c.sec.submitKeygen(c.run.SecAgg, r, perr); err != nil {
			return false, err
		}
	case task.KindDecrypt:
		if err := c.submitDecrypt(r, perr); err != nil {
			return false, err
		}
	default:
		if err := c.submitSum(t, r, perr); err != nil {
			return false, err
		}
	}
	c.results++
	if t.Kind != task.KindKeygen && t.Kind != task.KindDecrypt {
		c.submitters = append(c.submitters, r.ClientID)
	}
	delete(c.outstanding, r.ClientID)
	c.accepted[r.TaskID] = acceptance{client: r.ClientID, digest: resultDigest(r)}
	c.progress()
	return false, nil
}

// acceptance is an accepted result as the core remembers it: who sent it, and a digest of
// everything it said, so that a replay is told from a different answer under the same id.
type acceptance struct {
	client string
	digest [sha256.Size]byte
}

// resultDigest fingerprints every field of r a client chose (lengths before variable parts,
// so that no two results share an encoding).
func resultDigest(r task.Result) [sha256.Size]byte {
	h := sha256.New()
	var b [8]byte
	u64 := func(v uint64) { binary.BigEndian.PutUint64(b[:], v); h.Write(b[:]) }
	blob := func(p []byte) { u64(uint64(len(p))); h.Write(p) }
	blob([]byte(r.RunID))
	u64(uint64(r.Round))
	u64(uint64(r.Kind))
	u64(uint64(r.Sum.Len()))
	// Plaintext values by position with the zeros left out: a result reads the same sent
	// sparse or in plain, and an evaluation result of 28,000 bins hashes its few hundred
	// values, not 224 KB.
	nonzero := uint64(0)
	eachNonzero(r.Sum, func(int, float64) { nonzero++ })
	u64(nonzero)
	eachNonzero(r.Sum, func(i int, x float64) { u64(uint64(i)); u64(math.Float64bits(x)) })
	blob(r.Sum.Ciphertext)
	blob(r.PublicKeyShare)
	u64(uint64(len(r.Boxes)))
	for _, s := range r.Boxes {
		u64(uint64(s.From))
		u64(uint64(s.To))
		blob(s.Box)
	}
	blob(r.DecryptionShare)
	if e := r.Endorsement; e != nil {
		u64(1)
		blob(e.Certificate)
		blob(e.Signature)
	} else {
		u64(0)
	}
	blob([]byte(r.Refusal))
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}

// eachNonzero calls f with the position and value of each non-zero plaintext value of v,
// dense or sparse, in order (a NaN counts as non-zero, -0 as zero).
func eachNonzero(v task.Vector, f func(i int, x float64)) {
	for k, x := range v.Plain {
		if x == 0 {
			continue
		}
		if v.Index == nil {
			f(k, x)
		} else if k < len(v.Index) {
			f(int(v.Index[k]), x)
		}
	}
}

// plainForm returns a plaintext result's values in plain: its own for a dense vector, the
// core's scratch filled in for a sparse one (release clears it again). v's length must have
// been checked against the task's.
func (c *Core) plainForm(v task.Vector) (plain []float64, release func(), err error) {
	if v.Index == nil {
		return v.Plain, func() {}, nil
	}
	if cap(c.scratch) < v.Length {
		c.scratch = make([]float64, v.Length)
	}
	c.scratch = c.scratch[:v.Length]
	if err := v.AddTo(c.scratch); err != nil { // into zeros: nothing written on error
		return nil, nil, err
	}
	return c.scratch, func() {
		for _, i := range v.Index {
			c.scratch[i] = 0
		}
	}, nil
}

// submitSum checks a stats, train or evaluate result and adds it to the running sum.
func (c *Core) submitSum(t task.Task, r task.Result, perr func(string, error) error) error {
	if want := c.resultLen(t.Kind); r.Sum.Len() != want {
		return perr("sum", fmt.Errorf("%w: %d values, want %d", ErrInvalid, r.Sum.Len(), want))
	}
	if c.he() {
		if r.Sum.Ciphertext == nil {
			return perr("sum.plain", fmt.Errorf("%w: this run aggregates encrypted sums; a plaintext result is refused", ErrInvalid))
		}
		if err := c.addContribution(r); err != nil {
			return perr("sum.ciphertext", fmt.Errorf("%w: %v", ErrInvalid, err))
		}
		return nil
	}
	if r.Sum.Ciphertext != nil {
		return perr("sum.ciphertext", fmt.Errorf("%w: this run aggregates in plaintext", ErrInvalid))
	}
	if err := r.Sum.CheckFinite(); err != nil {
		return perr("sum.plain", fmt.Errorf("%w: %v", ErrInvalid, err))
	}
	plain, release, err := c.plainForm(r.Sum)
	if err != nil {
		return perr("sum.sparse_index", fmt.Errorf("%w: %v", ErrInvalid, err))
	}
	defer release()
	if err := c.checkContent(r.ClientID, t, plain); err != nil {
		return perr("sum.plain", fmt.Errorf("%w: %w", ErrInvalid, boundsError{err}))
	}
	// The round's own checks first: a result it refuses (a tree histogram no rows can give)
	// must not already be in the sum. plainForm has added the vector once, so adding it again
	// cannot fail after combine has kept it.
	if t.Kind == task.KindTrain {
		if err := c.train.combine(plain, c.records[r.ClientID]); err != nil {
			return perr("sum.plain", fmt.Errorf("%w: %v", ErrInvalid, err))
		}
	}
	if err := c.acc.add(r.Sum); err != nil {
		return perr("sum", fmt.Errorf("%w: %v", ErrInvalid, err))
	}
	return nil
}

// Tick advances time by one tick and ends phases whose deadline has passed.
func (c *Core) Tick() {
	c.tick++
	c.progress()
}

// Ready returns the actions pending since the last Advance.
func (c *Core) Ready() Actions { return c.pending }

// Advance acknowledges that the driver carried out the actions Ready returned.
func (c *Core) Advance() { c.pending = Actions{} }

func (c *Core) note(level slog.Level, msg string, attrs ...slog.Attr) {
	c.noteEvent(EventNone, level, msg, attrs...)
}

// noteEvent is note for a note the driver's metrics count.
func (c *Core) noteEvent(ev Event, level slog.Level, msg string, attrs ...slog.Attr) {
	attrs = append([]slog.Attr{slog.String("run", c.cfg.ID)}, attrs...)
	c.pending.Notes = append(c.pending.Notes, Note{Level: level, Msg: msg, Attrs: attrs, Event: ev})
}

// snapshot copies the run record, deeply enough that later rounds do not change a record
// handed to the store.
func (c *Core) snapshot() *RunState {
	s := c.run
	if s.Privacy != nil {
		p := *s.Privacy
		p.Accountant = p.Accountant.Clone()
		p.ClipSchedule = slices.Clone(p.ClipSchedule)
		p.Participation = maps.Clone(p.Participation)
		s.Privacy = &p
	}
	if s.SecAgg != nil {
		sa := *s.SecAgg
		sa.Members = slices.Clone(sa.Members)
		sa.KeyEndorsements = slices.Clone(sa.KeyEndorsements)
		s.SecAgg = &sa
	}
	s.Decryptions = slices.Clone(s.Decryptions) // records are replaced, never changed in place
	return &s
}

func (c *Core) resultLen(k task.Kind) int {
	switch k {
	case task.KindStats:
		return dataset.StatsVectorLen(c.schema) + 1 // and the count excluded for lack of consent
	case task.KindTrain:
		if c.train != nil {
			return c.train.resultLen()
		}
		return task.TrainVectorLen(len(c.global))
	case task.KindEvaluate:
		n := metrics.VectorLen(c.evalBins())
		if l := c.evalLayout(); l != nil {
			n += l.VectorLen()
		}
		if c.evalImportance() {
			n += c.importanceLen()
		}
		return n
	}
	return -1
}

// importanceLen is the length of the importance sums an evaluate result ends with (see
// evalImportance): a tree model's |TreeSHAP| sums (gbdt.AbsSHAPSums), or logistic
// regression's contribution sums (explain.ImportanceSums).
func (c *Core) importanceLen() int {
	if c.cfg.Trees() {
		return gbdt.AbsSHAPLen(c.treeFeatures())
	}
	return 1 + 2*c.importanceFeatures
}

// treeFeatures is the number of features of a tree run's model: the candidate's, which
// evaluate tasks carry and clients lay out their |SHAP| sums by, else the model so far, else
// (before the bins are fixed, when only the re-keying budget asks) the schema's columns, every
// one of which a tree model reads.
func (c *Core) treeFeatures() int {
	switch {
	case c.candidate != nil && c.candidate.Trees != nil:
		return len(c.candidate.Trees.Features)
	case c.trees != nil:
		return len(c.trees.Features)
	}
	return len(c.schema.Numeric) + len(c.schema.Categorical)
}

// progress moves the state machine as far as the events so far allow.
func (c *Core) progress() {
	for {
		switch c.phase {
		case phaseWaiting:
			if c.run.Status.Finished() {
				c.phase = phaseDone
				return
			}
			if len(c.clients) < c.cfg.MinClients {
				return
			}
			switch {
			case c.he() && (c.run.SecAgg == nil || !c.run.SecAgg.Ready):
				if !c.sec.ready() {
					return
				}
				c.startKeygen(task.KeygenPublicKey)
			case c.encoder == nil:
				c.startPhase(phaseStats, 0)
			default:
				c.startPhase(phaseTrain, c.run.LastRound+1)
			}
		case phaseStats, phaseTrain, phaseEvaluate, phaseKeygen:
			if !c.phaseOver() {
				return
			}
			c.finishPhase()
		case phaseDecrypt:
			before := c.phase
			c.progressDecrypt()
			if c.phase == before && c.sec.dec != nil {
				return
			}
		case phaseDone:
			return
		}
	}
}

// phaseOver: every cohort member answered, the deadline passed, or the quorum went out of
// reach during the phase (clients declined or were refused: waiting out the deadline would
// change nothing). A cohort drawn smaller than the quorum (too few clients live yet, a small
// Poisson sample) still waits for its deadline, as clients may register meanwhile for the
// next attempt: failing at once would spend the phase's attempts in one tick.
func (c *Core) phaseOver() bool {
	q := c.quorum()
	return len(c.outstanding) == 0 || c.tick >= c.deadline || q.State() == QuorumImpossible && len(c.cohort) >= q.Need
}

// attemptFor counts attempts of the same phase and round.
func (c *Core) attemptFor(p phase, round int) {
	if p != c.phase || round != c.round {
		c.attempt = 0
	}
	c.phase, c.round = p, round
	c.attempt++
}

// startPhase opens a stats, train or evaluate collection. A differentially private run has no
// stats phase: it standardises from the schema's public bounds and trains.
func (c *Core) startPhase(p phase, round int) {
	if p == phaseStats && c.dp() != DPNone {
		c.standardizeFromBounds()
		return
	}
	c.attemptFor(p, round)
	if p == phaseTrain && c.attempt > 1 && c.cfg.Trees() {
		// A tree round that starts again grows its tree again: its levels cost anew.
		if ok, why := c.budgetAllowsRound(); !ok {
			c.stopForBudget(why)
			return
		}
	}
	if p == phaseTrain && c.attempt == 1 {
		if ok, why := c.budgetAllowsRound(); !ok {
			c.stopForBudget(why)
			return
		}
		if c.he() && c.rekeyDue() {
			// Before the round, not in it: every aggregate of a round is under one key.
			c.note(slog.LevelInfo, "collective key near its decryption budget: new committee setup", slog.Int("round", round),
				slog.String("setup", c.run.SecAgg.SetupID), slog.Int("decrypted", c.run.SecAgg.Decrypted))
			c.run.SecAgg.Ready = false
			c.startKeygen(task.KeygenPublicKey)
			return
		}
	}
	switch p {
	case phaseStats:
		c.run.Status = RunStats
	default:
		c.run.Status = RunTraining
	}
	if p == phaseTrain {
		c.train, c.step = c.newTrainRound(), 0
	}
	if !c.openSum(p) {
		return
	}
	var cohort []string
	if p == phaseTrain {
		if cohort = c.train.configure(c.liveClients()); c.phase == phaseDone {
			return // the round could not be configured: the run failed
		}
	} else {
		cohort = c.selectCohort(p)
	}
	if p == phaseEvaluate && c.dp() != DPNone {
		c.startEvaluationRelease(cohort)
	}
	c.beginCollect(p, cohort)
}

// beginCollect issues the phase's tasks to cohort and starts its deadline.
func (c *Core) beginCollect(p phase, cohort []string) {
	c.deadline = c.tick + c.deadlineTicks
	c.outstanding = map[string]task.Task{}
	c.results = 0
	c.submitters = nil
	// Remember accepted task ids for this phase and the one before; older ones are stale, so
	// the set stays small however long the run.
	c.previous, c.accepted = c.accepted, map[string]acceptance{}
	c.cohort = cohort
	for i, id := range c.cohort {
		c.outstanding[id] = c.newTask(p, id, i)
	}
	c.note(slog.LevelDebug, "phase started", slog.String("phase", p.kind().String()), slog.Int("round", c.round),
		slog.Int("attempt", c.attempt), slog.Int("cohort", len(c.cohort)), slog.Int64("deadline_ticks", c.deadlineTicks))
}

func (c *Core) newTask(p phase, clientID string, i int) task.Task {
	t := task.Task{
		ID:    c.taskID(p, clientID),
		RunID: c.cfg.ID,
		Round: c.round,
		Kind:  p.kind(),
		Seed:  mixSeed(c.cfg.Seed, uint64(c.round), uint64(c.attempt), hashString(clientID)),
	}
	t.Encoding.SchemaHash = c.run.SchemaHash
	if c.run.Standardization != nil {
		t.Encoding.Mean = c.run.Standardization.Mean
		t.Encoding.Std = c.run.Standardization.Std
	}
	if c.he() && c.run.SecAgg.Ready {
		t.PublicKey = c.run.SecAgg.PublicKey
		t.KeyInfo = c.sec.keyInfo(c.run.SecAgg)
		t.CohortSize = len(c.cohort)
	}
	if p == phaseStats {
		t.StatsScale = c.statsScale()
	}
	switch p {
	case phaseTrain:
		t.ModelVersion = c.run.LatestVersion
		t.Weights = c.global
		t.Train = c.strategy.ClientParams(c.cfg.Train)
		c.train.fill(&t)
	case phaseEvaluate:
		t.ModelVersion = c.run.LatestVersion + 1
		t.Weights = c.candidate.Weights
		t.Trees = c.candidate.Trees
		t.HistogramBins = c.evalBins()
		if l := c.evalLayout(); l != nil {
			t.Fairness = &task.FairnessSpec{Thresholds: l.Thresholds, Bins: l.Bins, Groups: c.cfg.Fairness.Groups}
		}
		t.Noise = c.releaseNoise()
		t.SHAPSums = t.Trees != nil && c.evalImportance()
	case phaseKeygen:
		t.Keygen = c.sec.keygenSpec(c.run.SecAgg, clientID)
	case phaseDecrypt:
		c.decryptTask(&t)
	}
	return t
}

// statsScale is the factor stats sums are taken at: in he mode 2^-10, so that the sums of
// squares of raw features (incomes of 1e5 over a million records) stay far inside the
// ciphertext range, while the decoding grid (2^-30) keeps them exact to about 1e-9.
func (c *Core) statsScale() float64 {
	if c.he() {
		return 1.0 / 1024
	}
	return 1
}

// taskID names a task uniquely within the run, so that a repeated submission is recognised.
func (c *Core) taskID(p phase, clientID string) string {
	switch p {
	case phaseKeygen:
		// The setup's generation too: a new key mid-run restarts the keygen attempts.
		return fmt.Sprintf("%s/keygen%d/g%d/a%d/%s", c.cfg.ID, c.sec.step(), c.run.SecAgg.Generation, c.attempt, clientID)
	case phaseDecrypt:
		// The attempt of the phase whose aggregate this is, then the active set's; a tree
		// level's aggregate is its step's.
		if c.sec.dec.purpose == phaseTrain && c.step > 0 {
			return fmt.Sprintf("%s/decrypt-%s/r%d/a%d/s%d.%d/%s", c.cfg.ID, c.sec.dec.purpose.kind(), c.round, c.attempt, c.step, c.sec.dec.attempt, clientID)
		}
		return fmt.Sprintf("%s/decrypt-%s/r%d/a%d.%d/%s", c.cfg.ID, c.sec.dec.purpose.kind(), c.round, c.attempt, c.sec.dec.attempt, clientID)
	}
	if p == phaseTrain && c.step > 0 {
		// A tree's later levels: another question of the same round and attempt.
		return fmt.Sprintf("%s/%s/r%d/a%d/s%d/%s", c.cfg.ID, p.kind(), c.round, c.attempt, c.step, clientID)
	}
	return fmt.Sprintf("%s/%s/r%d/a%d/%s", c.cfg.ID, p.kind(), c.round, c.attempt, clientID)
}

// liveClients lists, sorted, the registered clients seen within the last deadline.
func (c *Core) liveClients() []string {
	live := make([]string, 0, len(c.clients))
	for id, seen := range c.clients {
		if c.tick-seen <= c.deadlineTicks {
			live = append(live, id)
		}
	}
	slices.Sort(live)
	return live
}

// selectCohort picks who works in a stats or evaluate phase: every live client (under
// differential privacy, only the live clients asked to train the model evaluated: no other
// has trained from it, and clients evaluate only such models). The train round's strategy
// draws its own cohort (trainRound.configure).
func (c *Core) selectCohort(p phase) []string {
	live := c.liveClients()
	if p == phaseEvaluate && c.dp() != DPNone && c.run.Privacy.trainCohort != nil {
		return slices.DeleteFunc(slices.Clone(c.run.Privacy.trainCohort), func(id string) bool {
			_, found := slices.BinarySearch(live, id)
			return !found
		})
	}
	return live
}

func (c *Core) finishPhase() {
	q := c.quorum()
	got := q.Got
	switch q.State() {
	case QuorumImpossible:
		c.phaseFailed(fmt.Sprintf("%d of %d results, %d still owed: quorum %d is out of reach", got, len(c.cohort), q.Owed, q.Need))
		return
	case QuorumPending:
		c.phaseFailed(fmt.Sprintf("%d of %d results by the deadline; quorum %d", got, len(c.cohort), q.Need))
		return
	}
	if len(c.outstanding) > 0 {
		c.note(slog.LevelWarn, "deadline passed; leaving out clients that did not answer", slog.String("phase", c.phase.kind().String()),
			slog.Int("round", c.round), slog.Int("left_out", len(c.outstanding)), slog.Any("first_left_out", firstIDs(c.Outstanding(), 20)))
		c.outstanding = map[string]task.Task{}
	}
	switch {
	case c.phase == phaseKeygen:
		c.finishKeygen()
	case c.he():
		c.startDecrypt()
	default:
		c.summed = slices.Clone(c.submitters)
		c.finishWith(c.acc.(*plainSum).values, got)
	}
}

// finishWith completes a stats, train or evaluate phase with its (decrypted) sum.
func (c *Core) finishWith(sum []float64, contributors int) {
	switch c.phase {
	case phaseStats:
		c.finishStats(sum, contributors)
	case phaseTrain:
		c.finishTrain(sum, contributors)
	case phaseEvaluate:
		c.finishEvaluate(sum, contributors)
	}
}

// phaseFailed retries the current phase, or fails the run after MaxAttempts. Nothing of the
// failed attempt is committed.
func (c *Core) phaseFailed(why string) {
	missing := c.Outstanding()
	if c.attempt >= c.cfg.MaxAttempts {
		c.failAs(EventPhaseFailed, fmt.Sprintf("%s phase of round %d failed %d times (last: %s); nothing was committed for it",
			c.phase.kind(), c.round, c.attempt, why))
		return
	}
	c.noteEvent(EventPhaseFailed, slog.LevelWarn, "phase failed, retrying", slog.String("phase", c.phase.kind().String()),
		slog.Int("round", c.round), slog.String("why", why), slog.Any("missing", missing))
	if c.phase == phaseKeygen {
		c.startKeygen(task.KeygenPublicKey)
		return
	}
	c.startPhase(c.phase, c.round)
}

// stopForBudget ends the run before a round that would exceed the privacy budget.
func (c *Core) stopForBudget(why string) {
	c.run.Status = RunCompleted
	c.run.Message = fmt.Sprintf("stopped by the privacy budget after %d rounds: %s", c.run.LastRound, why)
	c.phase = phaseDone
	c.outstanding = map[string]task.Task{}
	c.pending.Run = c.snapshot()
	c.note(slog.LevelWarn, "run stopped by the privacy budget", slog.Int("rounds_committed", c.run.LastRound), slog.String("reason", why))
}

func (c *Core) fail(msg string) { c.failAs(EventNone, msg) }

// Stop ends the run at an operator's request: no further task goes out and results still in
// flight are refused as stale; what was committed stays, and the run record keeps everything a
// resumed run needs (StartRun of the same run id continues with the next round).
func (c *Core) Stop(reason string) {
	c.run.Status = RunStopped
	c.run.Message = "stopped by an operator: " + reason
	c.phase = phaseDone
	c.outstanding = map[string]task.Task{}
	c.pending.Run = c.snapshot()
	c.note(slog.LevelWarn, "run stopped by an operator", slog.Int("rounds_committed", c.run.LastRound), slog.String("reason", reason))
}

// failAs fails the run with a note reporting ev: EventPhaseFailed when a phase ran out of
// attempts, so that the metrics count that last failure too.
func (c *Core) failAs(ev Event, msg string) {
	c.run.Status = RunFailed
	c.run.Message = msg
	c.phase = phaseDone
	c.outstanding = map[string]task.Task{}
	c.pending.Run = c.snapshot()
	c.noteEvent(ev, slog.LevelError, "run failed", slog.String("reason", msg))
}

func (c *Core) finishStats(sum []float64, clients int) {
	stats, err := dataset.FeatureStatsFromVector(sum[:len(sum)-1], c.numeric)
	if scale := c.statsScale(); err == nil && scale != 1 {
		floats.Scale(1/scale, stats.Sum)
		floats.Scale(1/(scale*scale), stats.SumSq)
	}
	if err == nil {
		var std dataset.Standardization
		if std, err = stats.Standardization(); err == nil {
			err = c.pinEncoding(std)
		}
	}
	if err != nil {
		c.fail(fmt.Sprintf("federated statistics: %v", err))
		return
	}
	c.run.StatsClients = clients
	c.run.StatsRecords = stats.Count
	c.run.ExcludedNoConsent = sum[len(sum)-1]
	if c.global == nil {
		c.global = make([]float64, c.encoder.Dim()+1)
	}
	c.pending.Run = c.snapshot()
	c.note(slog.LevelInfo, "standardisation pinned", slog.Int("clients", clients), slog.Float64("records", stats.Count),
		slog.Float64("excluded_no_consent", c.run.ExcludedNoConsent), slog.Bool("consent_tracked", c.run.ConsentTracked))
	c.startPhase(phaseTrain, c.run.LastRound+1)
}

func (c *Core) pinEncoding(std dataset.Standardization) error {
	enc, err := dataset.NewEncoder(c.schema, std)
	if err != nil {
		return fmt.Errorf("pin encoding: %w", err)
	}
	c.encoder = enc
	c.features = enc.FeatureNames()
	x, err := c.explainer(make([]float64, enc.Dim()+1), std)
	if err != nil {
		return fmt.Errorf("pin encoding: %w", err)
	}
	c.importanceFeatures = len(x.Features())
	c.run.Standardization = &std
	if c.global != nil && len(c.global) != enc.Dim()+1 {
		return fmt.Errorf("pin encoding: stored model has %d weights, the schema gives %d: %w", len(c.global), enc.Dim()+1, ErrConflict)
	}
	return nil
}

func (c *Core) finishTrain(sum []float64, clients int) {
	out, err := c.train.finalize(sum, clients)
	if errors.Is(err, errStepIncomplete) {
		c.phaseFailed(fmt.Sprintf("round %d: %v", c.round, err))
		return
	}
	if err != nil {
		c.fail(fmt.Sprintf("round %d: aggregate: %v", c.round, err))
		return
	}
	if out.more {
		c.nextTrainStep()
		return
	}
	if out.trees != nil {
		c.candidateTrees(out.trees, clients)
		return
	}
	mean := out.mean
	n := sum[task.TrainCountIndex]
	trainLoss := sum[len(sum)-1] / n
	if c.dp() != DPNone {
		trainLoss = 0 // not released under differential privacy
	}
	next, st, err := c.strategy.Apply(c.global, mean, c.stratSt)
	if err != nil {
		c.fail(fmt.Sprintf("round %d: aggregate: %v", c.round, err))
		return
	}
	var parent uint64 // a run's first version grows from no earlier run's model
	if c.run.LastRound > 0 {
		parent = c.run.LatestVersion
	}
	v := &ModelVersion{
		Version:       c.run.LatestVersion + 1,
		Parent:        parent,
		RunID:         c.cfg.ID,
		Round:         c.round,
		Weights:       next,
		Features:      c.features,
		Contributors:  clients,
		Examples:      n,
		TrainLoss:     trainLoss,
		StrategyState: st,
		Privacy:       c.privacyReport(),
	}
	c.candidate = v
	c.evaluateOrCommit()
}

// evaluateOrCommit evaluates the round's candidate when the run evaluates this round, and
// commits it otherwise.
func (c *Core) evaluateOrCommit() {
	if c.round%c.cfg.EvalEvery == 0 || c.round == c.cfg.Rounds {
		c.startPhase(phaseEvaluate, c.round)
		return
	}
	c.commit()
}

// nextTrainStep collects the round's next step from the same cohort (a tree's next level),
// under the same attempt: only a failed step starts the round again.
//
// The step goes to the clients whose results the last step summed (in he mode, the last
// aggregate's contributors): a tree's later levels derive a node's larger child as its parent
// minus its smaller one, which holds only over the same rows (see treeTrain.finalize).
func (c *Core) nextTrainStep() {
	c.step++
	cohort := slices.Clone(c.summed)
	slices.Sort(cohort)
	if c.openSum(phaseTrain) {
		c.beginCollect(phaseTrain, cohort)
	}
}

// openSum starts the phase's (or step's) sum of results: ciphertexts under the collective key
// in he mode, floats otherwise. It reports false, the run failed, when the key cannot sum.
func (c *Core) openSum(p phase) bool {
	n := c.resultLen(p.kind())
	if !c.he() {
		c.acc = newPlainSum(n)
		return true
	}
	sum, err := secagg.NewSum(c.sec.params, c.run.SecAgg.PublicKey, n)
	if err != nil {
		c.fail(fmt.Sprintf("%s phase of round %d: %v", p.kind(), c.round, err))
		return false
	}
	c.acc = &heSum{sum: sum}
	return true
}

// candidateTrees makes the round's candidate of a tree run: the model with its new tree.
func (c *Core) candidateTrees(m *gbdt.Model, clients int) {
	var parent uint64
	if c.run.LastRound > 0 {
		parent = c.run.LatestVersion
	}
	c.candidate = &ModelVersion{Version: c.run.LatestVersion + 1, Parent: parent, RunID: c.cfg.ID, Round: c.round, Trees: m,
		Features: c.features, Contributors: clients, Examples: treeExamples(m), Privacy: c.privacyReport(),
		GainImportance: treeImportance(m, m.GainImportance())}
	c.evaluateOrCommit()
}

func (c *Core) finishEvaluate(sum []float64, clients int) {
	if c.dp() != DPNone {
		// Noised (by the coordinator in plaintext mode) and accounted before anything is read
		// from it.
		if err := c.privatizeEvaluation(sum, clients); err != nil {
			c.fail(fmt.Sprintf("round %d: evaluation: differential privacy: %v", c.round, err))
			return
		}
		c.candidate.Privacy = c.privacyReport()
	}
	bins := c.evalBins()
	n := metrics.VectorLen(bins)
	ev, err := metrics.EvalSumsFromVector(sum[:n], bins)
	if err != nil {
		c.fail(fmt.Sprintf("round %d: evaluation: %v", c.round, err))
		return
	}
	if c.dp() != DPNone {
		ev = ev.Clamped() // noise can make a count negative
	}
	s := ev.Summary()
	c.candidate.Evaluation = &s
	c.candidate.EvalClients = clients
	c.candidate.EvalSums = ev.Vector()
	impStart := n
	layout := c.evalLayout()
	if layout != nil {
		impStart += layout.VectorLen()
	}
	switch {
	case c.evalImportance() && c.candidate.Trees != nil:
		// Like the logistic figure below, left out when the sums say nothing (no rows).
		m := c.candidate.Trees
		if mean, err := gbdt.MeanAbsSHAP(sum[impStart:], len(m.Features)); err == nil {
			c.candidate.Importance = treeImportance(m, mean)
		}
	case c.evalImportance():
		if imp, err := explain.ImportanceSumsFromVector(sum[impStart:], c.importanceFeatures); err == nil {
			if x, err := c.explainer(c.candidate.Weights, *c.run.Standardization); err == nil {
				if importance, err := x.Importance(imp); err == nil {
					c.candidate.Importance = importance
				}
			}
		}
	}
	if layout != nil {
		groups, err := fairness.GroupSumsFromVector(*layout, sum[n:impStart])
		if err == nil {
			var report fairness.Report
			minSize := c.cfg.Fairness.MinGroupSize
			if minSize == 0 {
				minSize = fairness.DefaultMinGroupSize
			}
			opts := fairness.ReportOptions{MinGroupSize: float64(minSize), CountNoiseStd: c.evalCountNoiseStd()}
			if report, err = groups.ReportWith(opts); err == nil {
				c.candidate.Fairness = &report
				if p := c.cfg.Fairness.Policy; p != nil {
					var verdict fairness.Verdict
					if verdict, err = p.Check(report); err == nil {
						c.candidate.FairnessVerdict = &verdict
					}
				}
			}
		}
		if err != nil {
			c.fail(fmt.Sprintf("round %d: fairness audit: %v", c.round, err))
			return
		}
		if v := c.candidate.FairnessVerdict; v != nil && v.Flagged {
			c.note(slog.LevelWarn, "version flagged by the fairness policy: it needs an override to be approved",
				slog.Int("round", c.round), slog.Any("violations", v.Violations))
		}
	}
	c.commit()
}

// treeImportance states a figure per feature of m (in Features order: its mean |SHAP value|
// or its total split gain) as global importance (explain.Rank).
func treeImportance(m *gbdt.Model, values []float64) []explain.Importance {
	out := make([]explain.Importance, len(m.Features))
	for f, col := range m.Columns() {
		out[f] = explain.Importance{Feature: col.Name, Kind: explain.Kind(col.Kind), Importance: values[f]}
	}
	explain.Rank(out)
	return out
}

// commit hands the candidate to the driver together with the run record, for one atomic
// write, and moves on to the next round or ends the run.
func (c *Core) commit() {
	v := c.candidate
	c.candidate = nil
	if v.Trees != nil {
		c.trees = v.Trees
	} else {
		c.global = v.Weights
	}
	c.stratSt = v.StrategyState
	c.lastModel = v
	c.run.LastRound = v.Round
	c.run.LatestVersion = v.Version
	attrs := []slog.Attr{slog.Int("round", v.Round), slog.Uint64("version", v.Version),
		slog.Int("contributors", v.Contributors), slog.Float64("examples", v.Examples), slog.Float64("train_loss", v.TrainLoss)}
	if v.Evaluation != nil {
		attrs = append(attrs, slog.Float64("auc", v.Evaluation.AUC), slog.Float64("log_loss", v.Evaluation.LogLoss))
	}
	c.note(slog.LevelInfo, "version committed", attrs...)
	stopEarly := c.trackEarlyStopping(v)
	if stopEarly && v.Round < c.cfg.Rounds {
		c.run.Status = RunCompleted
		c.run.Message = fmt.Sprintf("stopped early after round %d: %d evaluations without a lower log loss than %.6g (run.early_stopping)",
			v.Round, c.run.EvalsSinceBest, c.run.BestLogLoss)
		c.phase = phaseDone
		c.note(slog.LevelInfo, "run stopped early", slog.Int("round", v.Round), slog.Float64("best_log_loss", c.run.BestLogLoss),
			slog.Int("evaluations_since_best", c.run.EvalsSinceBest))
		c.outstanding = map[string]task.Task{}
	} else if v.Round >= c.cfg.Rounds {
		c.run.Status = RunCompleted
		c.run.Message = fmt.Sprintf("all %d rounds committed", c.cfg.Rounds)
		c.phase = phaseDone
		c.note(slog.LevelInfo, "run completed", slog.Int("rounds", c.cfg.Rounds), slog.Uint64("latest_version", v.Version))
		c.outstanding = map[string]task.Task{}
	}
	c.pending.Commit = v
	c.pending.Run = c.snapshot()
	if c.phase != phaseDone {
		c.startPhase(phaseTrain, c.round+1)
	}
}

// trackEarlyStopping records v's evaluation against the run's best and reports whether
// run.early_stopping ends the run.
func (c *Core) trackEarlyStopping(v *ModelVersion) bool {
	if c.cfg.EarlyStopping == 0 || v.Evaluation == nil {
		return false
	}
	if l := v.Evaluation.LogLoss; c.run.BestLogLoss == 0 || l < c.run.BestLogLoss {
		c.run.BestLogLoss, c.run.EvalsSinceBest = l, 0
		return false
	}
	c.run.EvalsSinceBest++
	return c.run.EvalsSinceBest >= c.cfg.EarlyStopping
}

// explainer explains the scores of weights under the run's encoding.
func (c *Core) explainer(weights []float64, std dataset.Standardization) (*explain.Explainer, error) {
	enc := task.Encoding{SchemaHash: c.run.SchemaHash, Mean: std.Mean, Std: std.Std}
	return explain.New(task.ModelDocument(c.schema, enc, c.features, weights))
}

// LastModel is the latest committed version of this run, nil before the first.
func (c *Core) LastModel() *ModelVersion { return c.lastModel }

// Config is the run's configuration.
func (c *Core) Config() RunConfig { return c.cfg }

// Cohort is the clients asked to work in the current phase.
func (c *Core) Cohort() []string { return slices.Clone(c.cohort) }

// Outstanding lists the clients whose task in the current phase is unanswered, sorted.
func (c *Core) Outstanding() []string {
	ids := make([]string, 0, len(c.outstanding))
	for id := range c.outstanding {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, cmp.Compare)
	return ids
}

// accumulator is a phase's running sum: the coordinator holds one sum, never every result.
type accumulator interface {
	add(v task.Vector) error
	count() int
}

// plainSum is the running sum of one phase's plaintext results: the coordinator holds one
// sum, never every update.
type plainSum struct {
	values []float64
	n      int
}

func newPlainSum(n int) *plainSum { return &plainSum{values: make([]float64, n)} }

func (s *plainSum) add(vec task.Vector) error {
	if err := vec.AddTo(s.values); err != nil { // a sparse result adds its few values only
		return err
	}
	s.n++
	return nil
}

func (s *plainSum) count() int { return s.n }

// StatsVectorLen is the length of a stats result for schema: count, sums, sums of squares (and,
// when the schema imputes missing values, each feature's count of observed values), then the
// count of rows excluded for lack of consent.
func StatsVectorLen(schema *dataset.Schema) int { return dataset.StatsVectorLen(schema) + 1 }

func hashString(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// mixSeed combines seed parts into one well-mixed seed (splitmix64 steps).
func mixSeed(parts ...uint64) uint64 {
	var x uint64 = 0x9e3779b97f4a7c15
	for _, p := range parts {
		x ^= p
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		x = z ^ (z >> 31)
	}
	return x
}

// firstIDs keeps a log line readable when thousands of clients are left out.
func firstIDs(ids []string, n int) []string { return ids[:min(len(ids), n)] }

// TicksLeft is the number of ticks until the current phase's deadline.
func (c *Core) TicksLeft() int64 { return max(0, c.deadline-c.tick) }
