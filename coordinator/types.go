package coordinator

import (
	"errors"
	"fmt"
	"time"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/metrics"
	"github.com/fedprop/fedprop/metrics/fairness"
	"github.com/fedprop/fedprop/model"
	"github.com/fedprop/fedprop/model/explain"
	"github.com/fedprop/fedprop/model/gbdt"
	"github.com/fedprop/fedprop/model/logreg"
	"github.com/fedprop/fedprop/store"
	"github.com/fedprop/fedprop/strategy"
	"github.com/fedprop/fedprop/task"
)

// RunStatus is where a run stands.
type RunStatus string

// The states of a run, as stored and as GetRun reports them.
const (
	RunWaiting   RunStatus = "waiting"   // waiting for enough clients to register
	RunStats     RunStatus = "stats"     // collecting federated feature statistics
	RunTraining  RunStatus = "training"  // rounds in progress
	RunCompleted RunStatus = "completed" // every configured round committed
	RunFailed    RunStatus = "failed"    // stopped; Message says why
	// RunStopped: an operator stopped the run (StopRun); its state is kept, and only an
	// explicit StartRun of the same run id resumes it, never a coordinator's restart.
	RunStopped RunStatus = "stopped"
)

// Finished reports whether the run will make no more progress on its own (a stopped run
// resumes only when an operator starts it again).
func (s RunStatus) Finished() bool { return s == RunCompleted || s == RunFailed || s == RunStopped }

// RunState is the persisted record of a run: its configuration, the standardisation pinned
// before round 1, and how far it got. It is written with every committed version, in the same
// transaction, so a restarted coordinator resumes exactly after the last committed round.
type RunState struct {
	ID         string    `json:"id"`
	Config     RunConfig `json:"config"`
	SchemaHash string    `json:"schema_hash"`
	SchemaYAML []byte    `json:"schema_yaml"`
	Status     RunStatus `json:"status"`
	Message    string    `json:"message,omitempty"`

	// Standardization is pinned by the stats phase; nil before it.
	Standardization *dataset.Standardization `json:"standardization,omitempty"`
	// ConsentTracked is false when the schema declares that the data has no consent column;
	// the run's record says so rather than implying consent was checked.
	ConsentTracked    bool    `json:"consent_tracked"`
	ExcludedNoConsent float64 `json:"excluded_no_consent"`
	StatsClients      int     `json:"stats_clients"`
	StatsRecords      float64 `json:"stats_records"`

	// SecAgg is the committee setup of an he-mode run.
	SecAgg *SecAggState `json:"secagg,omitempty"`
	// Privacy is the differential-privacy accounting of a DP run.
	Privacy *PrivacyState `json:"privacy,omitempty"`
	// Decryptions records every aggregate of an he-mode run the committee was asked to
	// decrypt, with its contributors and active sets: what `fedprop audit members` matches
	// the members' share logs against.
	Decryptions []DecryptionRecord `json:"decryptions,omitempty"`

	LastRound     int    `json:"last_round"`
	LatestVersion uint64 `json:"latest_version"`

	// BestLogLoss is the lowest federated evaluation log loss of the run so far, and
	// EvalsSinceBest the evaluations since it, for run.early_stopping.
	BestLogLoss    float64 `json:"best_log_loss,omitempty"`
	EvalsSinceBest int     `json:"evals_since_best,omitempty"`
}

// ModelVersion is one committed global model with the metrics measured for it.
type ModelVersion struct {
	Version  uint64    `json:"version"`
	Parent   uint64    `json:"parent,omitempty"`
	RunID    string    `json:"run_id"`
	Round    int       `json:"round"`
	Created  time.Time `json:"created"`
	Weights  []float64 `json:"weights"`
	Features []string  `json:"features"`
	// Trees is the model of a gradient-boosted-trees run (Weights is then empty): every tree
	// grown so far, the base score and the features with their bin edges.
	Trees *gbdt.Model `json:"trees,omitempty"`

	// Contributors and Examples describe the training aggregate of this round.
	Contributors int     `json:"contributors"`
	Examples     float64 `json:"examples"`
	// TrainLoss is the clients' mean training loss; 0 (absent) under differential privacy,
	// which does not release it.
	TrainLoss float64 `json:"train_loss,omitempty"`
	// Evaluation is the federated evaluation of this version; nil in rounds without one.
	Evaluation    *metrics.Summary `json:"evaluation,omitempty"`
	EvalClients   int              `json:"eval_clients,omitempty"`
	StrategyState strategy.State   `json:"strategy_state"`
	// Privacy is the differential-privacy guarantee of this version (nil without DP).
	Privacy *PrivacyReport `json:"privacy,omitempty"`
	// EvalSums is the federated evaluation's summed vector (metrics.EvalSums), kept for the
	// calibration table of the model card.
	EvalSums []float64 `json:"eval_sums,omitempty"`
	// Fairness is the audit on the sensitive attributes, and FairnessVerdict the run policy's
	// judgement of it (flagged versions need an override to be approved).
	Fairness *fairness.Report `json:"fairness,omitempty"`
	// Importance is the features' global importance over the federated evaluation's records,
	// from the clients' summed sums (nil under differential privacy, which does not release
	// them): for logistic regression the standard deviation of each feature's contribution to
	// the log-odds, for trees its mean |TreeSHAP value|.
	Importance []explain.Importance `json:"importance,omitempty"`
	// GainImportance is a tree model's importance from the trees themselves: each feature's
	// total split gain over every node that splits on it, and its share of the total (nil for
	// logistic regression). It needs no client data, so every tree version has it.
	GainImportance  []explain.Importance `json:"gain_importance,omitempty"`
	FairnessVerdict *fairness.Verdict    `json:"fairness_verdict,omitempty"`
	// AuditHead is the audit log's head once this version's commit is logged ("SEQ:HASH",
	// audit.Head.String), written with it: a log rewritten or cut after the commit no longer
	// runs through that entry, which the coordinator checks at every start.
	AuditHead string `json:"audit_head,omitempty"`
}

// Sentinel errors of the coordinator and its store. Check them with errors.Is.
var (
	// ErrNotFound: the store has no such run or version (store.ErrNotFound).
	ErrNotFound = store.ErrNotFound
	// ErrConflict: a commit would duplicate or skip a version (store.ErrConflict).
	ErrConflict = store.ErrConflict
	// ErrUnknownClient, ErrStale and ErrInvalid are the protocol's, shared with clients.
	ErrUnknownClient = task.ErrUnknownClient
	ErrStale         = task.ErrStale
	ErrInvalid       = task.ErrInvalid
	// ErrRunActive: a run is already in progress.
	ErrRunActive = errors.New("a run is already active")
)

// ProtocolError says which client, run, round and field a rejected call concerned.
type ProtocolError struct {
	Client string
	Run    string
	Round  int
	Field  string
	Err    error
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("client %q, run %q, round %d, field %s: %v", e.Client, e.Run, e.Round, e.Field, e.Err)
}

func (e *ProtocolError) Unwrap() error { return e.Err }

// ErrBadConfig marks a configuration that cannot be used; the message names the key.
var ErrBadConfig = errors.New("bad configuration")

// ErrOutOfBounds marks a result refused because its content breaks the run's bounds (a count
// above the records its client announced, an update norm above the clipping norm): a client
// no honest run produces. Such an error is also ErrInvalid. Check it with errors.Is.
var ErrOutOfBounds = errors.New("outside the run's bounds")

// boundsError carries a bounds check's message unchanged (the client reads it) and marks it
// as ErrOutOfBounds.
type boundsError struct{ err error }

func (e boundsError) Error() string        { return e.err.Error() }
func (e boundsError) Unwrap() error        { return e.err }
func (e boundsError) Is(target error) bool { return target == ErrOutOfBounds }

// Event says what a Note reports, for the driver's metrics: the message is for people and may
// be reworded, so nothing counts notes by their text.
type Event int

// The events the core reports in its notes.
const (
	// EventNone: a note that no metric counts.
	EventNone Event = iota
	// EventPhaseFailed: a collection or decryption phase failed (quorum missed, aggregate
	// discarded, too few committee members) and is retried, or, with no attempt left, the run
	// fails with it.
	EventPhaseFailed
	// EventAggregateDiscarded: a decrypted he-mode aggregate was implausible and discarded,
	// never committed; its phase fails with it (an EventPhaseFailed note follows).
	EventAggregateDiscarded
)

func (e Event) String() string {
	switch e {
	case EventNone:
		return "none"
	case EventPhaseFailed:
		return "phase_failed"
	case EventAggregateDiscarded:
		return "aggregate_discarded"
	}
	return fmt.Sprintf("event(%d)", int(e))
}

// Model is the version's model: its trees, or its weights over enc, the run's encoding.
func (v ModelVersion) Model(enc *dataset.Encoder) (model.Model, error) {
	switch {
	case v.Trees != nil:
		return v.Trees, nil
	case len(v.Weights) == 0:
		return nil, fmt.Errorf("version %d has no weights", v.Version)
	}
	m, err := logreg.NewModel(v.Weights, enc)
	if err != nil {
		return nil, fmt.Errorf("version %d: %w", v.Version, err)
	}
	return m, nil
}
