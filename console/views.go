package console

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/metrics"
	"github.com/fedprop/fedprop/release/modelcard"
)

// runRow is a run as the runs table shows it.
type runRow struct {
	ID, Status, Message, SecAgg, EpsText string
	LastRound, Rounds, Clients           int
	Active, Private                      bool
	Spent, Budget                        float64
	Latest                               uint64
}

func runRowOf(ri coordinator.RunInfo) runRow {
	st := ri.State
	r := runRow{ID: st.ID, Status: string(st.Status), Message: st.Message, LastRound: st.LastRound, Rounds: st.Config.Rounds,
		Clients: max(ri.Registered, st.StatsClients), Active: ri.Active, Latest: st.LatestVersion, SecAgg: st.Config.SecureAggregation.Mode}
	if r.SecAgg == "" {
		r.SecAgg = "none"
	}
	if r.SecAgg == coordinator.SecAggHE {
		r.SecAgg = "he (threshold CKKS)"
	} else {
		r.SecAgg = "none (plaintext sums)"
	}
	if p := st.Privacy; p != nil {
		r.Private, r.Spent, r.Budget = true, p.Epsilon, st.Config.Privacy.Epsilon
		if r.Budget > 0 {
			r.EpsText = fmt.Sprintf("ε %.3f of %.3f (δ %g)", p.Epsilon, r.Budget, p.Delta)
		} else {
			r.Budget = math.Max(p.Epsilon, 1e-9)
			r.EpsText = fmt.Sprintf("ε %.3f, no budget set (δ %g)", p.Epsilon, p.Delta)
		}
	}
	return r
}

func (c *Console) runs(w http.ResponseWriter, r *http.Request, s *session) {
	infos, err := c.cfg.Backend.ListRuns(r.Context())
	if err != nil {
		c.internal(w, s, err)
		return
	}
	rows := make([]runRow, 0, len(infos))
	for _, ri := range infos {
		rows = append(rows, runRowOf(ri))
	}
	c.render(w, http.StatusOK, "runs", view{Title: "Runs", Nav: "runs", Session: viewOf(s), Data: struct{ Runs []runRow }{rows}})
}

func (c *Console) internal(w http.ResponseWriter, s *session, err error) {
	c.cfg.Logger.Error("console: reading the coordinator failed", "err", err)
	c.fail(w, s, http.StatusInternalServerError, "Unavailable", "The coordinator's store could not be read.", err.Error())
}

// roundRow is one evaluated round of a run.
type roundRow struct {
	Round                   int
	Version                 uint64
	AUC, LogLoss, ECE, Rows string
	Clients                 int
	auc, logLoss, ece       float64
}

// versionRow is one version of a run.
type versionRow struct {
	Version              uint64
	Round, Contributors  int
	Created, AUC, Status string
	Flagged, Audited     bool
}

// ece is the expected calibration error of a version's federated evaluation: the row-weighted
// mean of |mean predicted - observed rate| over the card's score bands (NaN without sums).
func ece(v coordinator.ModelVersion) float64 {
	if len(v.EvalSums) == 0 {
		return math.NaN()
	}
	ev, err := metrics.EvalSumsFromVector(v.EvalSums, metrics.VectorBins(len(v.EvalSums)))
	if err != nil {
		return math.NaN()
	}
	bins, err := modelcard.Calibration(ev, modelcard.DefaultCalibrationBins)
	if err != nil || len(bins) == 0 {
		return math.NaN()
	}
	var n, sum float64
	for _, b := range bins {
		n += b.N
		sum += b.N * math.Abs(b.MeanPredicted-b.ObservedRate)
	}
	if n <= 0 {
		return math.NaN()
	}
	return sum / n
}

func (c *Console) run(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	id := r.PathValue("id")
	infos, err := c.cfg.Backend.ListRuns(ctx)
	if err != nil {
		c.internal(w, s, err)
		return
	}
	i := slices.IndexFunc(infos, func(ri coordinator.RunInfo) bool { return ri.State.ID == id })
	if i < 0 {
		c.fail(w, s, http.StatusNotFound, "No such run", "The store holds no run "+strconv.Quote(id)+".", "")
		return
	}
	versions, err := c.cfg.Backend.Store().Versions(ctx)
	if err != nil {
		c.internal(w, s, err)
		return
	}
	var rounds []roundRow
	var rows []versionRow
	for _, v := range versions {
		if v.RunID != id {
			continue
		}
		vr := versionRow{Version: v.Version, Round: v.Round, Contributors: v.Contributors, Created: fmtTime(v.Created), AUC: "—",
			Status: c.cfg.Backend.Status(v.Version).Status, Flagged: v.FairnessVerdict != nil && v.FairnessVerdict.Flagged, Audited: v.FairnessVerdict != nil}
		if e := v.Evaluation; e != nil {
			vr.AUC = fmtNum(e.AUC, 3)
			x := ece(v)
			rounds = append(rounds, roundRow{Round: v.Round, Version: v.Version, AUC: fmtNum(e.AUC, 4), LogLoss: fmtNum(e.LogLoss, 4),
				ECE: fmtNum(x, 4), Rows: fmtNum(e.N, 0), Clients: v.EvalClients, auc: e.AUC, logLoss: e.LogLoss, ece: x})
		}
		rows = append(rows, vr)
	}
	slices.Reverse(rows) // newest first
	var xs, aucs, losses, eces []float64
	for _, rr := range rounds {
		xs, aucs, losses, eces = append(xs, float64(rr.Round)), append(aucs, rr.auc), append(losses, rr.logLoss), append(eces, rr.ece)
	}
	nan := math.NaN()
	charts := []chart{
		drawChart(chartSpec{id: "auc", title: "AUC (higher is better)", xLabel: "round", xs: xs, ys: aucs, xMin: nan, xMax: nan, yMin: nan, yMax: nan, xInt: true}),
		drawChart(chartSpec{id: "logloss", title: "Log loss (lower is better)", xLabel: "round", xs: xs, ys: losses, xMin: nan, xMax: nan, yMin: nan, yMax: nan, xInt: true}),
		drawChart(chartSpec{id: "ece", title: "Calibration error, ECE (lower is better)", xLabel: "round", xs: xs, ys: eces, xMin: nan, xMax: nan, yMin: nan, yMax: nan, xInt: true}),
	}
	ri := infos[i]
	data := struct {
		Run      runRow
		Strategy string
		Charts   []chart
		Rounds   []roundRow
		Versions []versionRow
	}{Run: runRowOf(ri), Strategy: ri.State.Config.Strategy.Name, Charts: charts, Rounds: rounds, Versions: rows}
	c.render(w, http.StatusOK, "run", view{Title: "Run " + id, Nav: "runs", Session: viewOf(s), Data: data})
}

// notFound answers a version the store does not hold.
func (c *Console) versionError(w http.ResponseWriter, s *session, n uint64, err error) {
	if errors.Is(err, coordinator.ErrNotFound) {
		c.fail(w, s, http.StatusNotFound, "No such version", fmt.Sprintf("The store holds no version %d.", n), "")
		return
	}
	c.internal(w, s, err)
}

// approvedBase is the latest approved version other than n (0: none), and whether n is
// itself the latest approved.
func (c *Console) approvedBase(ctx context.Context, n uint64) (base uint64, same bool, err error) {
	versions, err := c.cfg.Backend.Store().Versions(ctx)
	if err != nil {
		return 0, false, err
	}
	for i := len(versions) - 1; i >= 0; i-- {
		v := versions[i].Version
		if c.cfg.Backend.Status(v).Status == modelcard.StatusApproved {
			return v, v == n, nil
		}
	}
	return 0, false, nil
}
