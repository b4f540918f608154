// Package dataset reads customer records for propensity modelling: a YAML schema declares
// the label, the numeric and categorical features, the consent rule and the sensitive
// attributes; a streaming CSV reader turns a file into a typed, consent-filtered Dataset
// with errors that name file, line and column; FeatureStats are the federated sums from
// which every client derives the same standardisation; and an Encoder turns a Dataset into
// the model's input matrix identically on every client.
//
// Records whose consent does not grant the schema's purpose never enter a Dataset: they
// are only counted. Sensitive attributes are kept per row as group labels for fairness
// audits and are model inputs only when the schema says so.
package dataset

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// DefaultPurpose is the consent purpose a schema checks when it names none.
const DefaultPurpose = "propensity-modeling"

// OtherCategory is the value WriteCSV writes for a row in a categorical column's "other"
// bucket, and the suffix of that bucket's feature name ("job=<other>"). It may not be part
// of a vocabulary.
const OtherCategory = "<other>"

// Schema describes one CSV layout: which column is the label, which are features, which
// carry consent and which are sensitive. Build it with LoadSchema or ParseSchema, which
// fill defaults and validate; treat it as immutable afterwards.
type Schema struct {
	// Name identifies the schema in messages and model cards.
	Name string `yaml:"name"`
	// CSV is the file format.
	CSV CSVFormat `yaml:"csv"`
	// Label is the target column.
	Label LabelSpec `yaml:"label"`
	// Numeric lists the numeric feature columns, in model order.
	Numeric []string `yaml:"numeric"`
	// Categorical lists the categorical feature columns, one-hot encoded in this order.
	Categorical []CategoricalSpec `yaml:"categorical"`
	// Exclude lists columns that may be present in the file but are never used. Every
	// column of a file must be used or excluded, so that nothing is ignored by accident.
	Exclude []string `yaml:"exclude"`
	// Consent says whether, and how, each record's consent is checked.
	Consent ConsentSpec `yaml:"consent"`
	// Sensitive lists the attributes kept for fairness audits.
	Sensitive []SensitiveSpec `yaml:"sensitive"`
	// Bounds declares a public [min, max] range per numeric feature, known without looking
	// at any record (from the domain: ages of adult customers, days of a month). A run with
	// differential privacy standardises from them (see PublicStandardization) instead of
	// asking clients for feature statistics, so the standardisation costs no privacy budget.
	// Values outside a range are used as they are, not clipped: the guarantee does not rest on
	// them (DP-SGD clips each example's gradient, an evaluation release bounds what each
	// record adds), and clipping in training alone would make the exported models (ONNX, PMML)
	// score such a record otherwise than training saw it. Absent, the schema's JSON (and with
	// it its hash) is what it was before bounds existed.
	Bounds map[string][]float64 `yaml:"bounds" json:",omitempty"`
}

// CSVFormat is the delimiter and quoting of a CSV file. In YAML an absent key takes the
// default of DefaultCSVFormat; in Go the zero value means comma-delimited and unquoted.
type CSVFormat struct {
	// Delimiter is the single-character field separator; "" means ",".
	Delimiter string `yaml:"delimiter"`
	// Quote is `"` for RFC 4180 quoting or "" for none (fields are split at every
	// delimiter, quotes are ordinary characters). No other quote character is supported.
	Quote string `yaml:"quote"`
}

// DefaultCSVFormat is comma-delimited with double-quote quoting.
func DefaultCSVFormat() CSVFormat { return CSVFormat{Delimiter: ",", Quote: `"`} }

// Comma returns the delimiter as a rune (',' when unset).
func (f CSVFormat) Comma() rune {
	if f.Delimiter == "" {
		return ','
	}
	r, _ := utf8.DecodeRuneInString(f.Delimiter)
	return r
}

// Quoted reports whether fields may be quoted.
func (f CSVFormat) Quoted() bool { return f.Quote != "" }

func (f CSVFormat) validate() []string {
	var problems []string
	if f.Delimiter != "" {
		r, size := utf8.DecodeRuneInString(f.Delimiter)
		switch {
		case size != len(f.Delimiter):
			problems = append(problems, fmt.Sprintf("csv.delimiter %q must be a single character", f.Delimiter))
		case r == utf8.RuneError || r == '\r' || r == '\n':
			problems = append(problems, fmt.Sprintf("csv.delimiter %q cannot be used as a delimiter", f.Delimiter))
		case f.Delimiter == f.Quote:
			problems = append(problems, fmt.Sprintf("csv.delimiter %q is also the quote character", f.Delimiter))
		}
	}
	if f.Quote != "" && f.Quote != `"` {
		problems = append(problems, fmt.Sprintf(`csv.quote %q is not supported: use '"' or '' (no quoting)`, f.Quote))
	}
	return problems
}

// LabelSpec names the target column and the values that mean 1 and 0.
type LabelSpec struct {
	// Column is the label's header name.
	Column string `yaml:"column"`
	// Positive is the value that means 1.
	Positive string `yaml:"positive"`
	// Negative lists the values that mean 0; any other value is an error.
	Negative []string `yaml:"negative"`
}

// UnseenPolicy says what the reader does with a categorical value outside the vocabulary.
type UnseenPolicy string

// The unseen-category policies.
const (
	// UnseenError rejects the file, naming line and column (the default).
	UnseenError UnseenPolicy = "error"
	// UnseenOther puts the value in an extra "other" bucket with its own one-hot input.
	UnseenOther UnseenPolicy = "other"
)

// CategoricalSpec is a categorical feature with a fixed vocabulary.
type CategoricalSpec struct {
	// Column is the header name.
	Column string `yaml:"column"`
	// Values is the vocabulary, one-hot encoded in this order.
	Values []string `yaml:"values"`
	// Unseen is the policy for values outside Values; "" means UnseenError.
	Unseen UnseenPolicy `yaml:"unseen"`
}

// Policy returns the effective unseen-category policy.
func (c CategoricalSpec) Policy() UnseenPolicy {
	if c.Unseen == "" {
		return UnseenError
	}
	return c.Unseen
}

// Width is the number of one-hot inputs: one per value, plus the "other" bucket when the
// policy is UnseenOther.
func (c CategoricalSpec) Width() int {
	if c.Policy() == UnseenOther {
		return len(c.Values) + 1
	}
	return len(c.Values)
}

// ConsentSpec says whether the file records consent and which values grant the purpose.
type ConsentSpec struct {
	// Tracked must be stated in YAML: true when the file has a consent column, false when
	// it has none (then every record is used).
	Tracked bool `yaml:"tracked"`
	// Column is the consent column's header name (required when Tracked).
	Column string `yaml:"column"`
	// Purpose is the processing purpose consent must cover; "" means DefaultPurpose.
	Purpose string `yaml:"purpose"`
	// Grants lists the consent values that grant Purpose (required when Tracked). A record
	// whose consent value is anything else is left out and counted.
	Grants []string `yaml:"grants"`
}

// Granted reports whether a record with this consent value may be used. It is always true
// when consent is not tracked.
func (c ConsentSpec) Granted(value string) bool {
	return !c.Tracked || slices.Contains(c.Grants, value)
}

// SensitiveSpec is an attribute kept per row for fairness audits.
type SensitiveSpec struct {
	// Column is the header name.
	Column string `yaml:"column"`
	// ModelInput must be true for a sensitive column that is also a feature; a sensitive
	// column is never a model input otherwise.
	ModelInput bool `yaml:"model_input"`
	// Bands are increasing edges that group a numeric column: [30, 60] gives the groups
	// "<30" (x < 30), "30-60" (30 <= x < 60) and ">=60". Without bands the group is the
	// raw value.
	Bands []float64 `yaml:"bands"`
	// Groups lists the expected values of an attribute without bands that is not a
	// categorical feature, so that a fairness audit knows its groups in advance (values
	// outside it count in an "<other>" group).
	Groups []string `yaml:"groups"`
}

// BandLabels returns the group labels of a banded attribute, lowest band first (nil
// without bands).
func (s SensitiveSpec) BandLabels() []string {
	if len(s.Bands) == 0 {
		return nil
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	labels := make([]string, 0, len(s.Bands)+1)
	labels = append(labels, "<"+f(s.Bands[0]))
	for i := 1; i < len(s.Bands); i++ {
		labels = append(labels, f(s.Bands[i-1])+"-"+f(s.Bands[i]))
	}
	return append(labels, ">="+f(s.Bands[len(s.Bands)-1]))
}

// Band returns the index into BandLabels of the band holding v.
func (s SensitiveSpec) Band(v float64) int {
	i, _ := slices.BinarySearch(s.Bands, v)
	if i < len(s.Bands) && s.Bands[i] == v {
		i++ // an edge belongs to the band above it
	}
	return i
}

// LoadSchema reads and validates a YAML schema file; errors name the file and the key.
func LoadSchema(path string) (*Schema, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load schema: %w", err)
	}
	return ParseSchema(path, data)
}

// ParseSchema parses and validates a YAML schema; name (usually the file name) prefixes
// every error. Unknown keys are errors, and consent.tracked must be stated explicitly.
func ParseSchema(name string, data []byte) (*Schema, error) {
	fail := func(line, col int, cause error, format string, args ...any) error {
		loc := name
		if line > 0 {
			loc = fmt.Sprintf("%s:%d:%d", name, line, col)
		}
		return fmt.Errorf("%s: %w", loc, &reasonError{msg: fmt.Sprintf(format, args...), sentinel: ErrInvalidSchema, cause: cause})
	}
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fail(0, 0, nil, "the schema is empty")
		}
		return nil, fail(0, 0, err, "%v", err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fail(doc.Line, doc.Column, nil, "the schema must be a YAML mapping (name, csv, label, numeric, ...)")
	}
	root := doc.Content[0]
	if err := checkKeys(root, reflect.TypeFor[Schema](), ""); err != nil {
		var ke *keyError
		if errors.As(err, &ke) {
			return nil, fail(ke.line, ke.col, nil, "%s", ke.msg)
		}
		return nil, fail(0, 0, err, "%v", err)
	}
	if consent := mappingValue(root, "consent"); consent == nil || consent.Kind != yaml.MappingNode || !stated(mappingValue(consent, "tracked")) {
		line, col := root.Line, root.Column
		if consent != nil {
			line, col = consent.Line, consent.Column
		}
		return nil, fail(line, col, nil, "consent.tracked is missing: say `tracked: true` (with column and grants) when the file records consent, or `tracked: false` explicitly when it does not")
	}
	s := Schema{CSV: DefaultCSVFormat()}
	if err := root.Decode(&s); err != nil {
		return nil, fail(0, 0, err, "%v", err)
	}
	s.fillDefaults()
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &s, nil
}

func (s *Schema) fillDefaults() {
	if s.Consent.Purpose == "" {
		s.Consent.Purpose = DefaultPurpose
	}
	for i := range s.Categorical {
		if s.Categorical[i].Unseen == "" {
			s.Categorical[i].Unseen = UnseenError
		}
	}
}

// Validate checks that the schema is consistent: every column has one role (the label is
// not a feature, nothing is listed twice), vocabularies are non-empty and unique, consent
// names its column and granting values when tracked, and a sensitive column is a feature
// exactly when model_input is true. (That consent.tracked is stated explicitly is checked
// by ParseSchema, since a Go value cannot tell false from unstated.) The error wraps
// ErrInvalidSchema and lists every problem.
func (s *Schema) Validate() error {
	if s == nil {
		return fmt.Errorf("%w: no schema", ErrInvalidSchema)
	}
	problems := s.CSV.validate()
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	roles := map[string]string{} // column -> the key that uses it
	claim := func(column, role string) {
		if column == "" {
			add("%s: the column name is empty", role)
			return
		}
		if prev, ok := roles[column]; ok {
			add("column %q is listed twice: as %s and as %s", column, prev, role)
			return
		}
		roles[column] = role
	}

	claim(s.Label.Column, "label.column")
	if s.Label.Positive == "" {
		add("label.positive is empty: name the value that means 1")
	}
	if len(s.Label.Negative) == 0 {
		add("label.negative is empty: list the values that mean 0")
	}
	if slices.Contains(s.Label.Negative, s.Label.Positive) {
		add("label value %q is both positive and negative", s.Label.Positive)
	}
	for i, c := range s.Numeric {
		claim(c, fmt.Sprintf("numeric[%d]", i))
	}
	for i, c := range s.Categorical {
		key := fmt.Sprintf("categorical[%d]", i)
		claim(c.Column, key)
		if len(c.Values) == 0 {
			add("%s (%s): values is empty", key, c.Column)
		}
		seen := map[string]bool{}
		for _, v := range c.Values {
			if seen[v] {
				add("%s (%s): value %q is listed twice", key, c.Column, v)
			}
			seen[v] = true
			if v == OtherCategory {
				add("%s (%s): value %q is reserved for the other bucket", key, c.Column, v)
			}
		}
		if p := c.Policy(); p != UnseenError && p != UnseenOther {
			add("%s (%s): unseen %q must be %q or %q", key, c.Column, c.Unseen, UnseenError, UnseenOther)
		}
	}
	if len(s.Numeric)+len(s.Categorical) == 0 {
		add("no features: list numeric and/or categorical columns")
	}
	for i, c := range s.Exclude {
		claim(c, fmt.Sprintf("exclude[%d]", i))
	}
	if s.Consent.Tracked {
		claim(s.Consent.Column, "consent.column")
		if len(s.Consent.Grants) == 0 {
			add("consent.grants is empty: list the consent values that grant purpose %q", s.Consent.Purpose)
		}
	} else if s.Consent.Column != "" || len(s.Consent.Grants) > 0 {
		add("consent.column/grants are set but consent.tracked is false: set tracked: true, or remove them")
	}

	sensitive := map[string]bool{}
	for i, sa := range s.Sensitive {
		key := fmt.Sprintf("sensitive[%d] (%s)", i, sa.Column)
		if sa.Column == "" {
			add("sensitive[%d]: the column name is empty", i)
			continue
		}
		if sensitive[sa.Column] {
			add("%s: listed twice", key)
		}
		sensitive[sa.Column] = true
		role := roles[sa.Column]
		isNumeric := strings.HasPrefix(role, "numeric[")
		isFeature := isNumeric || strings.HasPrefix(role, "categorical[")
		switch {
		case isFeature && !sa.ModelInput:
			add("%s: the column is a feature (%s) but sensitive attributes are never model inputs unless the schema says so: set model_input: true, or remove it from the features", key, role)
		case !isFeature && sa.ModelInput:
			add("%s: model_input is true but the column is not a numeric or categorical feature", key)
		case role != "" && !isFeature:
			add("%s: the column is already %s", key, role)
		}
		if len(sa.Bands) > 0 {
			if isFeature && !isNumeric {
				add("%s: bands apply to numeric columns only", key)
			}
			for j, b := range sa.Bands {
				if math.IsNaN(b) || math.IsInf(b, 0) {
					add("%s: bands[%d] is not a finite number", key, j)
				} else if j > 0 && !(b > sa.Bands[j-1]) {
					add("%s: bands must be strictly increasing", key)
				}
			}
		}
	}
	problems = append(problems, s.validateBounds()...)
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidSchema, strings.Join(problems, "; "))
	}
	return nil
}

// validateBounds checks that every bound names a numeric feature and is a finite [min, max]
// with min < max, in column order so that the messages come out in a stable order.
func (s *Schema) validateBounds() []string {
	var problems []string
	columns := slices.Sorted(maps.Keys(s.Bounds))
	for _, c := range columns {
		b := s.Bounds[c]
		key := fmt.Sprintf("bounds.%s", c)
		if !slices.Contains(s.Numeric, c) {
			problems = append(problems, fmt.Sprintf("%s: %q is not a numeric feature: bounds apply to numeric features only", key, c))
			continue
		}
		if len(b) != 2 {
			problems = append(problems, fmt.Sprintf("%s: want [min, max], got %d values", key, len(b)))
			continue
		}
		if math.IsNaN(b[0]) || math.IsInf(b[0], 0) || math.IsNaN(b[1]) || math.IsInf(b[1], 0) {
			problems = append(problems, fmt.Sprintf("%s: [%v, %v] is not a pair of finite numbers", key, b[0], b[1]))
			continue
		}
		if !(b[0] < b[1]) {
			problems = append(problems, fmt.Sprintf("%s: min %v must be below max %v", key, b[0], b[1]))
		}
	}
	return problems
}

// ErrNoBounds is wrapped when a standardisation from public bounds is asked of a schema that
// does not bound every numeric feature.
var ErrNoBounds = errors.New("numeric feature without public bounds")

// Unbounded lists, in schema order, the numeric features without bounds.
func (s *Schema) Unbounded() []string {
	var out []string
	for _, c := range s.Numeric {
		if _, ok := s.Bounds[c]; !ok {
			out = append(out, c)
		}
	}
	return out
}

// PublicStandardization derives the standardisation from the schema's bounds alone, reading
// no record: each feature is centred on the middle of its range and scaled by half its width,
// so that a value inside its range encodes within [-1, 1]. (On bank-full under DP-SGD at
// epsilon 1 this gives the test AUC the federated statistics gave, where scaling by the
// standard deviation of a value spread evenly over the range, half the width over sqrt(3),
// lost about 0.005: wider inputs are clipped more.) The error wraps ErrNoBounds and names
// every numeric feature that lacks bounds.
func (s *Schema) PublicStandardization() (Standardization, error) {
	if missing := s.Unbounded(); len(missing) > 0 {
		return Standardization{}, fmt.Errorf("%w: %s: declare them under bounds: in the schema (for example `%s: [min, max]`), from what is known about the domain, not from the data",
			ErrNoBounds, strings.Join(missing, ", "), missing[0])
	}
	st := Standardization{Mean: make([]float64, len(s.Numeric)), Std: make([]float64, len(s.Numeric))}
	for i, c := range s.Numeric {
		b := s.Bounds[c]
		st.Mean[i] = b[0] + (b[1]-b[0])/2
		st.Std[i] = (b[1] - b[0]) / 2
	}
	return st, nil
}

// Columns returns every column a file must have for this schema, in the order label,
// numeric, categorical, consent, then sensitive columns that are not features.
func (s *Schema) Columns() []string {
	cols := []string{s.Label.Column}
	cols = append(cols, s.Numeric...)
	for _, c := range s.Categorical {
		cols = append(cols, c.Column)
	}
	if s.Consent.Tracked {
		cols = append(cols, s.Consent.Column)
	}
	for _, sa := range s.Sensitive {
		if !slices.Contains(cols, sa.Column) {
			cols = append(cols, sa.Column)
		}
	}
	return cols
}

// keyError is an unknown YAML key with its position.
type keyError struct {
	line, col int
	msg       string
}

func (e *keyError) Error() string { return e.msg }

// checkKeys walks a YAML node alongside the Go type it decodes into and reports the first
// mapping key that has no field, naming its path (for example "consent.trackd").
func checkKeys(n *yaml.Node, t reflect.Type, path string) error {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		fields := map[string]reflect.Type{}
		var known []string
		for i := range t.NumField() {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if tag == "" || tag == "-" {
				continue
			}
			fields[tag] = f.Type
			known = append(known, tag)
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				where := "at the top level"
				if path != "" {
					where = "in " + path
				}
				return &keyError{line: k.Line, col: k.Column, msg: fmt.Sprintf("unknown key %q %s (known keys: %s)", k.Value, where, strings.Join(known, ", "))}
			}
			if err := checkKeys(v, ft, joinPath(path, k.Value)); err != nil {
				return err
			}
		}
	case n.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice:
		for i, e := range n.Content {
			if err := checkKeys(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// stated reports whether a YAML value is present and not null.
func stated(n *yaml.Node) bool {
	return n != nil && !(n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// mappingValue returns the value node of key in a mapping node, or nil.
func mappingValue(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			v := m.Content[i+1]
			for v.Kind == yaml.AliasNode && v.Alias != nil {
				v = v.Alias
			}
			return v
		}
	}
	return nil
}
