package sim

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"github.com/fedprop/fedprop/release/audit"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/fedprop/fedprop/coordinator"
)

// Table is an Observer that prints one fixed-width line per committed round as it happens.
type Table struct {
	w       io.Writer
	started bool
}

// NewTable prints to w.
func NewTable(w io.Writer) *Table { return &Table{w: w} }

const tableRow = "%5s %9s %9s %9s %8s %11s %8s %8s\n"

// Round implements Observer.
func (t *Table) Round(m RoundMetrics) {
	if !t.started {
		fmt.Fprintf(t.w, tableRow, "round", "test_auc", "log_loss", "accuracy", "brier", "train_loss", "clients", "seconds")
		t.started = true
	}
	f4 := func(x float64) string { return strconv.FormatFloat(x, 'f', 4, 64) }
	fmt.Fprintf(t.w, tableRow, strconv.Itoa(m.Round), f4(m.Test.AUC), f4(m.Test.LogLoss), f4(m.Test.Accuracy), f4(m.Test.Brier),
		trainLoss(m.TrainLoss), strconv.Itoa(m.Contributors), strconv.FormatFloat(m.Seconds, 'f', 2, 64))
}

// trainLoss is the table's train_loss cell. The coordinator records 0 for a loss it did not
// release (under differential privacy it does not: coordinator.ModelVersion.TrainLoss), and
// a mean log loss of a regularised model is never 0, so 0 is printed as "-", not as a loss.
func trainLoss(x float64) string {
	if x == 0 {
		return "-"
	}
	return strconv.FormatFloat(x, 'f', 4, 64)
}

// PrintSummary prints the final and the centralized figures and what was written.
func PrintSummary(w io.Writer, s Summary, outDir string) {
	fmt.Fprintf(w, "\nfederated   (round %d): AUC %.4f  log loss %.4f  accuracy %.4f\n", s.Rounds, s.Final.AUC, s.Final.LogLoss, s.Final.Accuracy)
	if c := s.Centralized; c != nil {
		fmt.Fprintf(w, "centralized (pooled)  : AUC %.4f  log loss %.4f  accuracy %.4f\n", c.AUC, c.LogLoss, c.Accuracy)
	}
	fmt.Fprintf(w, "%d clients, %d training rows, %d test rows, %d excluded for lack of consent (consent tracked: %v); %.1fs\n",
		s.Clients, s.TrainRows, s.TestRows, s.ExcludedNoConsent, s.ConsentTracked, s.WallSeconds)
	if s.SmallClientsInPlaintext {
		fmt.Fprintf(w, "research opt-out: plaintext aggregation with run.min_records_plaintext 0; the coordinator read the own sums of %d clients below %d records (a coordinator at its default refuses them: use secure_aggregation.mode he)\n",
			s.ClientsBelowMinRecords, coordinator.DefaultMinRecordsPlaintext)
	}
	if s.ClientRandomness.SeededBySimulator {
		fmt.Fprintf(w, "clients' private randomness (DP noise, sampling, encryption) seeded from seed %d by the simulator, for reproducibility: simulation only\n", s.ClientRandomness.Seed)
	}
	fmt.Fprintf(w, "wrote %s, %s and %s (fedprop audit verify --log checks it)\n", filepath.Join(outDir, "metrics.csv"), filepath.Join(outDir, "summary.json"),
		filepath.Join(outDir, "audit.jsonl"))
}

// WriteResults writes DIR/metrics.csv, DIR/summary.json and the coordinator's audit log
// DIR/audit.jsonl, creating DIR.
func WriteResults(dir string, res *Result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := WriteMetricsCSV(filepath.Join(dir, "metrics.csv"), res.Rounds); err != nil {
		return err
	}
	if err := writeAudit(filepath.Join(dir, "audit.jsonl"), res.Audit); err != nil {
		return err
	}
	return WriteJSON(filepath.Join(dir, "summary.json"), res.Summary)
}

// writeAudit writes the audit log as `fedprop audit export` does.
func writeAudit(path string, entries []audit.Entry) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := audit.WriteEntries(f, entries); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// WriteMetricsCSV writes one row per committed round.
func WriteMetricsCSV(path string, rounds []RoundMetrics) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write([]string{"round", "auc", "log_loss", "accuracy", "brier", "federated_auc", "federated_log_loss", "train_loss", "contributors", "examples", "seconds"})
	ff := func(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
	for _, m := range rounds {
		fedAUC, fedLL := "", ""
		if m.Federated != nil {
			fedAUC, fedLL = ff(m.Federated.AUC), ff(m.Federated.LogLoss)
		}
		_ = w.Write([]string{strconv.Itoa(m.Round), ff(m.Test.AUC), ff(m.Test.LogLoss), ff(m.Test.Accuracy), ff(m.Test.Brier),
			fedAUC, fedLL, ff(m.TrainLoss), strconv.Itoa(m.Contributors), ff(m.Examples), strconv.FormatFloat(m.Seconds, 'f', 3, 64)})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		_ = f.Close() // the write error is the one to report
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// WriteJSON writes v as indented JSON.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
