package sim

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// SweepTable is a sweep's result table, sweep.csv: one row per configuration in grid order.
// Its columns are the swept keys, the fixed result columns (auc, log_loss, accuracy, brier,
// centralized_auc, rounds, wall_seconds), every other figure of the runs' summaries in name
// order, and last error. The other figures are read from the summaries' JSON, so that a new
// summary field becomes a column by itself; arrays (weights, per-client lists) and the
// config are left out.
type SweepTable struct {
	keys    []string
	columns []string
	rows    []sweepTableRow
}

type sweepTableRow struct {
	settings Settings
	text     map[string]string  // column -> cell
	numbers  map[string]float64 // column (and config.* leaf) -> value, for plotting
}

// SweepPoint is one configuration that ran, as a plot of the sweep needs it.
type SweepPoint struct {
	// Values are the swept settings, key to value as written in the grid.
	Values map[string]string
	// Metrics are the numeric cells of the configuration's row by column, and every numeric
	// leaf of its config as config.<dotted path>.
	Metrics map[string]float64
}

// sweepFixed are the result columns that come first, and the summary fields they are read from.
var sweepFixed = []struct{ column, field string }{
	{"auc", "final.auc"},
	{"log_loss", "final.log_loss"},
	{"accuracy", "final.accuracy"},
	{"brier", "final.brier"},
	{"centralized_auc", "centralized.auc"},
	{"rounds", "rounds"},
	{"wall_seconds", "wall_seconds"},
}

// NewSweepTable tabulates the rows Sweep returned, with keys (Grid.Keys) as the first
// columns. A row whose run failed keeps its settings and its error, and no figures.
func NewSweepTable(keys []string, rows []SweepRow) (*SweepTable, error) {
	t := &SweepTable{keys: slices.Clone(keys)}
	extra := map[string]bool{}
	for _, r := range rows {
		row := sweepTableRow{settings: r.Settings, text: map[string]string{}, numbers: map[string]float64{}}
		if r.Result != nil && r.Err == nil {
			fields, err := flattenJSON(r.Result.Summary)
			if err != nil {
				return nil, fmt.Errorf("sweep configuration %d: summary: %w", r.Index, err)
			}
			for _, f := range sweepFixed {
				if v, ok := fields[f.field]; ok {
					row.set(f.column, v)
				}
			}
			for name, v := range fields {
				if inFixedColumns(name) {
					continue
				}
				extra[name] = true
				row.set(name, v)
			}
		}
		if r.Err != nil {
			row.text["error"] = r.Err.Error()
		}
		cfg, err := flattenJSON(r.Config)
		if err != nil {
			return nil, fmt.Errorf("sweep configuration %d: config: %w", r.Index, err)
		}
		for name, v := range cfg {
			if x, ok := v.number(); ok {
				row.numbers["config."+name] = x
			}
		}
		t.rows = append(t.rows, row)
	}
	t.columns = append(t.columns, t.keys...)
	for _, f := range sweepFixed {
		t.columns = append(t.columns, f.column)
	}
	names := make([]string, 0, len(extra))
	for name := range extra {
		names = append(names, name)
	}
	slices.Sort(names)
	t.columns = append(t.columns, names...)
	t.columns = append(t.columns, "error")
	return t, nil
}

// inFixedColumns reports whether a summary field stays out of the table's extra columns: the
// config (its swept keys are the first columns), and the metrics already in the fixed columns.
func inFixedColumns(name string) bool {
	for _, s := range []string{"config", "final", "centralized", "rounds", "wall_seconds"} {
		if name == s || strings.HasPrefix(name, s+".") {
			return true
		}
	}
	return false
}

func (r *sweepTableRow) set(column string, v jsonValue) {
	r.text[column] = v.text
	if x, ok := v.number(); ok {
		r.numbers[column] = x
	}
}

// Columns is the table's header.
func (t *SweepTable) Columns() []string { return slices.Clone(t.columns) }

// Records is the table as CSV records: the header, then a row per configuration with a cell
// per column (empty where a run has no such figure).
func (t *SweepTable) Records() [][]string {
	records := [][]string{t.Columns()}
	for _, r := range t.rows {
		record := make([]string, len(t.columns))
		for i, c := range t.columns {
			if i < len(t.keys) {
				record[i], _ = r.settings.Value(c)
				continue
			}
			record[i] = r.text[c]
		}
		records = append(records, record)
	}
	return records
}

// WriteCSV writes Records to path as CSV.
func (t *SweepTable) WriteCSV(path string) error {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	if err := w.WriteAll(t.Records()); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// Points are the table's configurations that ran, in grid order, for a plot of the sweep.
func (t *SweepTable) Points() []SweepPoint {
	var pts []SweepPoint
	for _, r := range t.rows {
		if r.text["error"] != "" {
			continue
		}
		values := map[string]string{}
		for _, s := range r.settings {
			values[s.Key] = s.Value
		}
		pts = append(pts, SweepPoint{Values: values, Metrics: r.numbers})
	}
	return pts
}

var unsafePathChars = regexp.MustCompile(`[^A-Za-z0-9._=+-]+`)

// maxSweepDirName bounds the settings part of a configuration's directory name.
const maxSweepDirName = 120

// DirName is the name of the row's directory in a sweep of n configurations:
// "<index>-<key=value_key2=value2>", the index zero-padded to sort in grid order, every run of
// characters that does not belong in a file name replaced by "_", and the settings part cut
// to 120 bytes.
func (r SweepRow) DirName(n int) string {
	parts := make([]string, len(r.Settings))
	for i, s := range r.Settings {
		parts[i] = s.Key + "=" + s.Value
	}
	name := unsafePathChars.ReplaceAllString(strings.Join(parts, "_"), "_")
	if len(name) > maxSweepDirName {
		name = name[:maxSweepDirName]
	}
	return fmt.Sprintf("%0*d-%s", len(strconv.Itoa(n-1)), r.Index, name)
}

// jsonValue is a scalar leaf of a JSON document as text, and whether it was a JSON number.
type jsonValue struct {
	text     string
	isNumber bool
}

func (v jsonValue) number() (float64, bool) {
	if !v.isNumber {
		return 0, false
	}
	x, err := strconv.ParseFloat(v.text, 64)
	return x, err == nil
}

// flattenJSON marshals v and returns its scalar leaves by dotted path (final.auc). Arrays are
// left out (weights, per-client lists); null is an empty cell.
func flattenJSON(v any) (map[string]jsonValue, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	out := map[string]jsonValue{}
	var walk func(prefix string, x any)
	walk = func(prefix string, x any) {
		switch x := x.(type) {
		case map[string]any:
			for k, v := range x {
				if prefix != "" {
					k = prefix + "." + k
				}
				walk(k, v)
			}
		case []any:
		case json.Number:
			out[prefix] = jsonValue{text: x.String(), isNumber: true}
		case string:
			out[prefix] = jsonValue{text: x}
		case bool:
			out[prefix] = jsonValue{text: strconv.FormatBool(x)}
		case nil:
			out[prefix] = jsonValue{}
		}
	}
	walk("", doc)
	return out, nil
}
