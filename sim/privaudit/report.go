package privaudit

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Format identifies the layout of a report; DecodeReport refuses others.
const Format = "fedprop.privaudit/v1"

// MaxReportBytes caps what DecodeReport reads.
const MaxReportBytes = 16 << 20

// ErrInvalid marks a report that cannot be read.
var ErrInvalid = errors.New("invalid privacy audit report")

// Report is an audit's file (audit.json): what the attacks found, about which model, next to
// the accountant's guarantee.
type Report struct {
	Format         string `json:"format"`
	FedpropVersion string `json:"fedprop_version"`
	// Seed drew the targets, their memberships and the shadow models' seeds.
	Seed uint64 `json:"seed"`
	// Model is the audited model.
	Model Model `json:"model"`
	// Accountant is the audited run's differential-privacy guarantee; nil without DP.
	Accountant *Accountant `json:"accountant"`
	Result
	// Method says how the figures were made, for a reader of the file alone.
	Method      []string `json:"method"`
	WallSeconds float64  `json:"wall_seconds"`
	// Config is the configuration that produced the report; `fedprop sim audit --config
	// audit.json` runs it again.
	Config json.RawMessage `json:"config,omitempty"`
}

// Model describes the audited model.
type Model struct {
	RunID  string `json:"run_id"`
	Rounds int    `json:"rounds"`
	// TrainRows is what it trained on: every training row but the non-member targets.
	TrainRows int `json:"train_rows"`
	// TestAUC is its AUC on the held-out rows.
	TestAUC float64 `json:"test_auc"`
}

// Accountant is the guarantee the run's accountant states.
type Accountant struct {
	// Mechanism is "record" or "client".
	Mechanism string  `json:"mechanism"`
	Epsilon   float64 `json:"epsilon"`
	Delta     float64 `json:"delta"`
}

// Method describes how r was computed, in sentences for the report and the model card.
func Method(r Result) []string {
	return []string{
		fmt.Sprintf("Membership inference against %d target records drawn from the training rows: %d were in the audited "+
			"model's training data and %d left out. %d shadow models were trained by the same simulation with other seeds, "+
			"each target in exactly half of them.", r.Targets, r.Members, r.NonMembers, r.Shadows),
		"Attack statistic: the logit-scaled confidence of the true label, phi = log(p/(1-p)). " +
			"lira: the online likelihood-ratio attack (Carlini et al. 2022), Gaussians of phi per target over the shadows " +
			"that trained on it and over those that did not, variance " + r.Variance + "; loss: the loss-threshold attack " +
			"(Yeom et al. 2018).",
		fmt.Sprintf("Epsilon lower bound at each false-positive level: the threshold is fixed on the shadow models (each "+
			"scored by LiRA fitted on the others), the audited model's true and false positives at it are counted, and "+
			"(epsilon, delta)-DP's TPR <= e^eps FPR + delta and 1-FPR <= e^eps (1-TPR) + delta are solved with a "+
			"Clopper-Pearson lower bound on the TPR and upper bound on the FPR (Jagielski et al. 2020; Nasr et al. "+
			"2021), delta = %g. Each interval is at %.4g%% so that the largest of the %d bounds holds with %.0f%% "+
			"confidence (Bonferroni).", r.Delta, 100*r.TestConfidence, 2*len(FPRLevels), 100*r.Confidence),
		fmt.Sprintf("With %d non-members, the ROC cannot resolve false-positive rates below %.3g: the TPR at a lower level is "+
			"read at the last point below it, often FPR 0.", r.NonMembers, 1/float64(max(r.NonMembers, 1))),
		"The intervals treat the guesses as independent trials, as audits that train one model per guess do; the " +
			"targets here share one training run, so the bound is the usual reading of such an audit, not a proof " +
			"(Steinke, Nasr and Jagielski 2023 analyse one-run audits). A lower bound shows what an attack achieved: " +
			"a small one does not show that the model is private.",
	}
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write privacy audit report: %w", err)
	}
	return nil
}

// DecodeReport reads a report written by WriteJSON (at most MaxReportBytes), strictly: an
// unknown field, another format, a figure that is not finite or out of its range is an error.
func DecodeReport(r io.Reader) (*Report, error) {
	var rep Report
	dec := json.NewDecoder(io.LimitReader(r, MaxReportBytes+1))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		return nil, fmt.Errorf("read privacy audit report: %w: %w", ErrInvalid, err)
	}
	if dec.InputOffset() > MaxReportBytes {
		return nil, fmt.Errorf("read privacy audit report: %w: larger than %d bytes", ErrInvalid, MaxReportBytes)
	}
	if err := rep.validate(); err != nil {
		return nil, fmt.Errorf("read privacy audit report: %w: %w", ErrInvalid, err)
	}
	return &rep, nil
}

func (r *Report) validate() error {
	if r.Format != Format {
		return fmt.Errorf("format %q is not %q", r.Format, Format)
	}
	var errs []error
	inRange := func(name string, v, lo, hi float64) {
		if !(v >= lo && v <= hi) {
			errs = append(errs, fmt.Errorf("%s: %v is not in [%v, %v]", name, v, lo, hi))
		}
	}
	nonNegative := func(name string, v float64) {
		if !(v >= 0) || math.IsInf(v, 1) {
			errs = append(errs, fmt.Errorf("%s: %v is not a finite non-negative number", name, v))
		}
	}
	if r.Targets < 0 || r.Members < 0 || r.NonMembers < 0 || r.Members+r.NonMembers != r.Targets {
		errs = append(errs, fmt.Errorf("targets: %d members and %d non-members do not make %d targets", r.Members, r.NonMembers, r.Targets))
	}
	if r.Shadows < 0 || r.Model.Rounds < 0 || r.Model.TrainRows < 0 {
		errs = append(errs, errors.New("shadows, model.rounds, model.train_rows: must not be negative"))
	}
	inRange("model.test_auc", r.Model.TestAUC, 0, 1)
	inRange("delta", r.Delta, 0, 1)
	inRange("confidence", r.Confidence, 0, 1)
	inRange("test_confidence", r.TestConfidence, 0, 1)
	nonNegative("epsilon_lower_bound", r.EpsilonLowerBound)
	nonNegative("wall_seconds", r.WallSeconds)
	if a := r.Accountant; a != nil {
		nonNegative("accountant.epsilon", a.Epsilon)
		inRange("accountant.delta", a.Delta, 0, 1)
	}
	for i, a := range r.Attacks {
		at := fmt.Sprintf("attacks[%d]", i)
		inRange(at+".auc", a.AUC, 0, 1)
		nonNegative(at+".epsilon_lower_bound", a.EpsilonLowerBound)
		for j, p := range a.TPRAtFPR {
			inRange(fmt.Sprintf("%s.tpr_at_fpr[%d].fpr", at, j), p.FPR, 0, 1)
			inRange(fmt.Sprintf("%s.tpr_at_fpr[%d].tpr", at, j), p.TPR, 0, 1)
		}
		for j, b := range a.Bounds {
			bt := fmt.Sprintf("%s.bounds[%d]", at, j)
			inRange(bt+".level", b.Level, 0, 1)
			inRange(bt+".tpr_low", b.TPRLow, 0, 1)
			inRange(bt+".fpr_high", b.FPRHigh, 0, 1)
			nonNegative(bt+".epsilon", b.Epsilon)
			if b.Threshold != nil && (math.IsNaN(*b.Threshold) || math.IsInf(*b.Threshold, 0)) {
				errs = append(errs, fmt.Errorf("%s.threshold: %v is not finite", bt, *b.Threshold))
			}
			if b.TruePositives < 0 || b.TruePositives > r.Members || b.FalsePositives < 0 || b.FalsePositives > r.NonMembers {
				errs = append(errs, fmt.Errorf("%s: %d true and %d false positives of %d members and %d non-members", bt,
					b.TruePositives, b.FalsePositives, r.Members, r.NonMembers))
			}
		}
	}
	return errors.Join(errs...)
}

// WriteROCCSV writes every attack's ROC curve: attack,threshold,fpr,tpr (threshold +Inf is the
// curve's origin).
func (r *Result) WriteROCCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"attack", "threshold", "fpr", "tpr"})
	ff := func(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
	for _, a := range r.Attacks {
		for _, p := range a.ROC {
			_ = cw.Write([]string{a.Name, ff(p.Threshold), ff(p.FPR), ff(p.TPR)})
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write roc: %w", err)
	}
	return nil
}

// WriteText prints the report's table: each attack's AUC, TPR at the FPR levels and epsilon
// bounds, then the largest bound beside the accountant's epsilon.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "membership inference: %d targets (%d members, %d non-members), %d shadow models, LiRA variance %s\n",
		r.Targets, r.Members, r.NonMembers, r.Shadows, r.Variance)
	fmt.Fprintf(&b, "audited model: run %s, %d rounds, %d training rows, test AUC %.4f\n", r.Model.RunID, r.Model.Rounds, r.Model.TrainRows, r.Model.TestAUC)
	head := []string{"attack", "auc"}
	for _, l := range FPRLevels {
		head = append(head, "tpr@"+pct(l))
	}
	for _, l := range FPRLevels {
		head = append(head, "eps@"+pct(l))
	}
	row := func(cells []string) {
		fmt.Fprintf(&b, "%-7s", cells[0])
		for _, c := range cells[1:] {
			fmt.Fprintf(&b, " %10s", c)
		}
		b.WriteString("\n")
	}
	row(head)
	for _, a := range r.Attacks {
		cells := []string{a.Name, strconv.FormatFloat(a.AUC, 'f', 4, 64)}
		for _, p := range a.TPRAtFPR {
			cells = append(cells, strconv.FormatFloat(p.TPR, 'f', 4, 64))
		}
		for _, bd := range a.Bounds {
			cells = append(cells, strconv.FormatFloat(bd.Epsilon, 'f', 3, 64))
		}
		row(cells)
	}
	fmt.Fprintf(&b, "empirical epsilon lower bound: %.3f at delta %g (%.0f%% confidence: Clopper-Pearson, Bonferroni over %d thresholds fixed on the shadow models)\n",
		r.EpsilonLowerBound, r.Delta, 100*r.Confidence, 2*len(FPRLevels))
	if a := r.Accountant; a != nil {
		fmt.Fprintf(&b, "accountant epsilon:            %.3f at delta %g (%s-level differential privacy, an upper bound)\n", a.Epsilon, a.Delta, a.Mechanism)
	} else {
		b.WriteString("accountant epsilon:            none: the run has no differential privacy\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// pct formats a rate as a percentage without trailing zeros: 0.001 is "0.1%".
func pct(x float64) string { return strconv.FormatFloat(100*x, 'f', -1, 64) + "%" }
