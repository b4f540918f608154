// Package dataset reads customer records for propensity modelling: a YAML schema declares
// the file's layout (delimiter, header or listed columns, lines to skip, trimming, the
// tokens of missing values), the label, the numeric and categorical features, the consent
// rule, the sensitive attributes and what a missing value means in each column; a
// streaming CSV reader turns a file into a typed, consent-filtered Dataset with errors that
// name file, line and column (package dataset/parquet does the same for Parquet files,
// through the same RecordDecoder); FeatureStats are the federated sums from which every
// client derives the same standardisation; and an Encoder turns a Dataset into the model's
// input matrix identically on every client.
//
// Records whose consent does not grant the schema's purpose never enter a Dataset: they
// are only counted. Sensitive attributes are kept per row as group labels for fairness
// audits and are model inputs only when the schema says so.
//
// A missing value flows as follows. The reader keeps a missing numeric value whose column
// imputes as NaN; Stats leaves it out of that feature's sums and counts it in no
// FeatureStats.Observed entry, so the federated mean is the mean of the values present;
// the Encoder, holding the pinned standardisation, encodes it as 0, that mean. A missing
// categorical value becomes the level MissingCategory, a one-hot input of its own.
package dataset

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
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
	// Missing says, per column, what a missing value means: a value equal to one of
	// CSV.Missing, or a null in a Parquet file. A column not listed rejects missing values
	// (MissingReject). Absent, the schema's JSON is what it was before missing values existed.
	Missing map[string]MissingPolicy `yaml:"missing" json:",omitempty"`
	// Format is the file format: FormatCSV, FormatParquet, or "" to tell by the file's
	// extension (see FormatOf). The same schema describes a CSV file and its Parquet copy.
	Format FileFormat `yaml:"format" json:",omitempty"`
}

// MissingCategory is the level a missing categorical value becomes under MissingAsCategory,
// and the group of a sensitive attribute whose value is missing. The angle brackets keep it
// apart from any value a file holds, as for OtherCategory.
const MissingCategory = "<missing>"

// MissingPolicy says what the reader does with a missing value in one column.
type MissingPolicy string

// The missing-value policies.
const (
	// MissingReject makes a missing value an error naming file, line, column and column
	// name, never the value (the default for every column).
	MissingReject MissingPolicy = "reject"
	// MissingImpute, for numeric features only, keeps the row and records the value as NaN:
	// Stats leaves it out of the feature's sums and observed count, and the Encoder encodes
	// it as 0, the standardised value of the pinned mean, so the value is imputed by the
	// federated (or public) mean that no single client knows.
	MissingImpute MissingPolicy = "impute"
	// MissingAsCategory, for categorical features, makes a missing value the level
	// MissingCategory (declared in the vocabulary where its one-hot input should sit, or
	// appended to it by ParseSchema); for a sensitive attribute that is not a feature, it
	// makes the group MissingCategory.
	MissingAsCategory MissingPolicy = "category"
)

// FileFormat names a data file format.
type FileFormat string

// The file formats.
const (
	// FormatCSV is delimited text, described by Schema.CSV.
	FormatCSV FileFormat = "csv"
	// FormatParquet is Apache Parquet, read by package dataset/parquet: columns are found
	// by name, and Schema.CSV's trim_space and missing apply to its text values.
	FormatParquet FileFormat = "parquet"
)

// FormatOf returns the format of the data file at path: the schema's Format when set,
// otherwise FormatParquet for a name ending in ".parquet" (in any case) and FormatCSV for
// any other.
func FormatOf(s *Schema, path string) FileFormat {
	if s != nil && s.Format != "" {
		return s.Format
	}
	if strings.EqualFold(filepath.Ext(path), ".parquet") {
		return FormatParquet
	}
	return FormatCSV
}

// MissingPolicyOf returns the policy for missing values in column (MissingReject when the
// schema names none).
func (s *Schema) MissingPolicyOf(column string) MissingPolicy {
	if p, ok := s.Missing[column]; ok && p != "" {
		return p
	}
	return MissingReject
}

// Imputes reports whether some numeric feature imputes missing values. Such a schema's
// FeatureStats carry a count of observed values per feature (see FeatureStats.Observed),
// so that the federated means are means of the values present.
func (s *Schema) Imputes() bool {
	for _, c := range s.Numeric {
		if s.MissingPolicyOf(c) == MissingImpute {
			return true
		}
	}
	return false
}

// CSVFormat is the layout of a CSV file: delimiter and quoting, whether a header names the
// columns, lines to skip, white space and the tokens of missing values. In YAML an absent key
// takes the default of DefaultCSVFormat; in Go the zero value means comma-delimited,
// unquoted, with a header, nothing skipped or trimmed (but see TrimSpace) and no missing
// values. TrimSpace and Missing also apply to the text values of a Parquet file.
type CSVFormat struct {
	// Delimiter is the single-character field separator; "" means ",".
	Delimiter string `yaml:"delimiter"`
	// Quote is `"` for RFC 4180 quoting or "" for none (fields are split at every
	// delimiter, quotes are ordinary characters). No other quote character is supported.
	Quote string `yaml:"quote"`
	// Header says whether the first line (after SkipLines) names the columns; nil means
	// true. A file without a header (false) has its columns named, in order, by Columns.
	Header *bool `yaml:"header" json:",omitempty"`
	// Columns names the fields of every line, in order, when Header is false; it must be
	// empty otherwise (the header names them). Like a header, it must hold every column
	// the schema uses and only columns the schema uses or excludes.
	Columns []string `yaml:"columns" json:",omitempty"`
	// SkipLines is how many lines at the top of the file are dropped unread before the
	// header (or, without one, the first record), at most MaxSkipLines: a title or a junk
	// line such as UCI Adult's "|1x3 Cross validator". Every line counts, empty ones too,
	// and errors keep naming lines of the whole file.
	SkipLines int `yaml:"skip_lines" json:",omitempty"`
	// Comment, when set, is a single ASCII character that makes a line beginning with it
	// (before any white space) a line to drop, wherever it appears: a junk line that only
	// some files of a data set have (UCI Adult's test file begins with "|1x3 Cross
	// validator", its training file does not), which SkipLines cannot tell apart.
	Comment string `yaml:"comment" json:",omitempty"`
	// TrimSpace removes leading and trailing white space from every field (header names,
	// label, categorical, consent and sensitive values, numbers) before it is matched, as
	// files written with ", " separators need; with quoting, a space before an opening
	// quote is allowed. When false, only numeric fields ignore surrounding white space, as
	// they always have, and every other value must match exactly.
	TrimSpace bool `yaml:"trim_space" json:",omitempty"`
	// Missing lists the tokens that mean a value is missing, such as "?", "NA" or "" (an
	// empty field), at most MaxMissingTokens. A field equal to one (after trimming, see
	// TrimSpace; a numeric field is always compared trimmed) is missing, and the column's
	// Schema.Missing policy says what that means. Empty, no value is missing in a CSV file.
	Missing []string `yaml:"missing" json:",omitempty"`
}

// MaxSkipLines bounds CSVFormat.SkipLines: a few title lines, not a way to skip data.
const MaxSkipLines = 1000

// MaxMissingTokens bounds the number of CSVFormat.Missing tokens.
const MaxMissingTokens = 64

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

// HasHeader reports whether the file's first line (after SkipLines) names the columns.
func (f CSVFormat) HasHeader() bool { return f.Header == nil || *f.Header }

// IsMissing reports whether field is one of the missing-value tokens. The field is compared
// as it is: the reader trims it first where the format says so.
func (f CSVFormat) IsMissing(field string) bool { return slices.Contains(f.Missing, field) }

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
	if f.Comment != "" {
		c := f.Comment[0]
		switch {
		case len(f.Comment) != 1 || c >= utf8.RuneSelf:
			problems = append(problems, fmt.Sprintf("csv.comment %q must be a single ASCII character", f.Comment))
		case c == '\r' || c == '\n' || c == ' ' || c == '\t' || c == '"' || rune(c) == f.Comma():
			problems = append(problems, fmt.Sprintf("csv.comment %q cannot be used as a comment character", f.Comment))
		}
	}
	if f.SkipLines < 0 || f.SkipLines > MaxSkipLines {
		problems = append(problems, fmt.Sprintf("csv.skip_lines %d is outside [0, %d]", f.SkipLines, MaxSkipLines))
	}
	switch {
	case f.HasHeader() && len(f.Columns) > 0:
		problems = append(problems, "csv.columns is set but the file has a header: set header: false, or remove columns")
	case !f.HasHeader() && len(f.Columns) == 0:
		problems = append(problems, "csv.header is false but csv.columns is empty: list the file's columns in order")
	}
	seen := map[string]bool{}
	for i, c := range f.Columns {
		switch {
		case c == "":
			problems = append(problems, fmt.Sprintf("csv.columns[%d] is empty", i))
		case seen[c]:
			problems = append(problems, fmt.Sprintf("csv.columns[%d]: %q is listed twice", i, c))
		case f.TrimSpace && strings.TrimSpace(c) != c:
			problems = append(problems, fmt.Sprintf("csv.columns[%d]: %q has surrounding white space, which trim_space removes", i, c))
		}
		seen[c] = true
	}
	if len(f.Missing) > MaxMissingTokens {
		problems = append(problems, fmt.Sprintf("csv.missing has %d tokens, more than %d", len(f.Missing), MaxMissingTokens))
	}
	tokens := map[string]bool{}
	for i, m := range f.Missing {
		switch {
		case tokens[m]:
			problems = append(problems, fmt.Sprintf("csv.missing[%d]: %q is listed twice", i, m))
		case f.TrimSpace && strings.TrimSpace(m) != m:
			problems = append(problems, fmt.Sprintf("csv.missing[%d]: %q has surrounding white space, which trim_space removes from every field", i, m))
		}
		tokens[m] = true
	}
	return problems
}

// LabelSpec names the target column and the raw values that mean 1 and 0. In YAML,
// positive and negative each take one value or a list of values (UCI Adult's test file
// writes ">50K." where its training file writes ">50K").
type LabelSpec struct {
	// Column is the label's header name.
	Column string `yaml:"column"`
	// Positive is the value that means 1: the first of YAML's positive values, the one
	// WriteCSV writes and model cards and exports name as the target.
	Positive string `yaml:"positive"`
	// PositiveAliases are the further values that also mean 1 (the rest of YAML's list).
	// Absent, the schema's JSON is what it was before aliases existed.
	PositiveAliases []string `yaml:"-" json:",omitempty"`
	// Negative lists the values that mean 0; any other value is an error. WriteCSV writes
	// the first.
	Negative []string `yaml:"negative"`
}

// Positives returns every value that means 1: Positive, then PositiveAliases.
func (l LabelSpec) Positives() []string {
	return append([]string{l.Positive}, l.PositiveAliases...)
}

// UnmarshalYAML decodes a label whose positive and negative values are each a single value
// or a list.
func (l *LabelSpec) UnmarshalYAML(n *yaml.Node) error {
	var raw struct {
		Column   string    `yaml:"column"`
		Positive yaml.Node `yaml:"positive"`
		Negative yaml.Node `yaml:"negative"`
	}
	if err := n.Decode(&raw); err != nil {
		return err
	}
	positive, err := oneOrMany(&raw.Positive, "label.positive")
	if err != nil {
		return err
	}
	negative, err := oneOrMany(&raw.Negative, "label.negative")
	if err != nil {
		return err
	}
	*l = LabelSpec{Column: raw.Column, Negative: negative}
	if len(positive) > 0 {
		l.Positive = positive[0]
		if len(positive) > 1 {
			l.PositiveAliases = positive[1:]
		}
	}
	return nil
}

// oneOrMany decodes a YAML scalar as a list of one value and a sequence as a list; an absent
// or null node is an empty list.
func oneOrMany(n *yaml.Node, key string) ([]string, error) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch {
	case n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.Tag == "!!null"):
		return nil, nil
	case n.Kind == yaml.ScalarNode:
		var v string
		err := n.Decode(&v)
		return []string{v}, err
	case n.Kind == yaml.SequenceNode:
		var v []string
		err := n.Decode(&v)
		return v, err
	}
	return nil, fmt.Errorf("line %d: %s must be a value or a list of values", n.Line, key)
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
		// A missing level that the vocabulary does not place goes last, after the values
		// the file writes.
		c := &s.Categorical[i]
		if s.MissingPolicyOf(c.Column) == MissingAsCategory && !slices.Contains(c.Values, MissingCategory) {
			c.Values = append(slices.Clone(c.Values), MissingCategory)
		}
	}
	// An explicit header: true means the default; normalising it keeps the schema's JSON
	// (and hash) that of a schema which leaves it out.
	if s.CSV.Header != nil && *s.CSV.Header {
		s.CSV.Header = nil
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
	labelValues := map[string]bool{}
	for _, v := range s.Label.Positives() {
		if slices.Contains(s.Label.Negative, v) {
			add("label value %q is both positive and negative", v)
		} else if labelValues[v] && v != "" {
			add("label value %q is listed twice", v)
		}
		labelValues[v] = true
	}
	for i, v := range s.Label.PositiveAliases {
		if v == "" {
			add("label.positive[%d] is empty", i+1)
		}
	}
	for _, v := range s.Label.Negative {
		labelValues[v] = true
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
			if v == MissingCategory && s.MissingPolicyOf(c.Column) != MissingAsCategory {
				add("%s (%s): value %q is reserved for missing values: set missing.%s: %s, or remove it", key, c.Column, v, c.Column, MissingAsCategory)
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
	problems = append(problems, s.validateLayout(s.CSV, roles, labelValues)...)
	problems = append(problems, s.validateMissing(roles)...)
	switch s.Format {
	case "", FormatCSV, FormatParquet:
	default:
		add("format %q must be %q, %q or empty (by the file's extension)", s.Format, FormatCSV, FormatParquet)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidSchema, strings.Join(problems, "; "))
	}
	return nil
}

// validateLayout checks a CSV format against the schema (CSVFormat.validate checks it
// alone): the columns of a file without a header are those the schema uses or excludes,
// no missing-value token is also a value the schema gives a meaning, and under trim_space no
// such value has white space the trimming would remove. roles maps every used or excluded
// column to its key, labelValues holds the label's values.
func (s *Schema) validateLayout(f CSVFormat, roles map[string]string, labelValues map[string]bool) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if !f.HasHeader() && len(f.Columns) > 0 {
		for _, c := range s.Columns() {
			if !slices.Contains(f.Columns, c) {
				add("csv.columns does not list column %q, which the schema uses", c)
			}
		}
		for _, c := range f.Columns {
			if _, ok := roles[c]; !ok && !slices.ContainsFunc(s.Sensitive, func(sa SensitiveSpec) bool { return sa.Column == c }) {
				add("csv.columns lists %q, which the schema neither uses nor lists under exclude", c)
			}
		}
	}
	meaning := func(v string) string {
		switch {
		case labelValues[v]:
			return "a label value"
		case s.Consent.Tracked && slices.Contains(s.Consent.Grants, v):
			return "a consent grant"
		}
		for i, c := range s.Categorical {
			if slices.Contains(c.Values, v) {
				return fmt.Sprintf("a value of categorical[%d] (%s)", i, c.Column)
			}
		}
		for i, sa := range s.Sensitive {
			if slices.Contains(sa.BandLabels(), v) || slices.Contains(sa.Groups, v) {
				return fmt.Sprintf("a group of sensitive[%d] (%s)", i, sa.Column)
			}
		}
		return ""
	}
	for i, m := range f.Missing {
		if what := meaning(m); what != "" {
			add("csv.missing[%d]: %q is also %s: a value cannot both mean something and be missing", i, m, what)
		}
	}
	if f.TrimSpace {
		check := func(key, v string) {
			if strings.TrimSpace(v) != v {
				add("%s: %q has surrounding white space, which trim_space removes from every field", key, v)
			}
		}
		for v := range labelValues {
			check("label", v)
		}
		for i, c := range s.Categorical {
			for _, v := range c.Values {
				check(fmt.Sprintf("categorical[%d] (%s)", i, c.Column), v)
			}
		}
		for _, g := range s.Consent.Grants {
			check("consent.grants", g)
		}
		for i, sa := range s.Sensitive {
			for _, g := range sa.Groups {
				check(fmt.Sprintf("sensitive[%d] (%s) groups", i, sa.Column), g)
			}
		}
	}
	slices.Sort(problems) // labelValues is a map: a stable message
	return problems
}

// validateMissing checks each missing-value policy against its column's role: impute for a
// numeric feature, category for a categorical feature (whose vocabulary then holds
// MissingCategory) or a sensitive attribute that is no feature, reject for any of those.
func (s *Schema) validateMissing(roles map[string]string) []string {
	var problems []string
	for _, c := range slices.Sorted(maps.Keys(s.Missing)) {
		p := s.Missing[c]
		key := "missing." + c
		role, used := roles[c]
		isNumeric := used && strings.HasPrefix(role, "numeric[")
		isCategorical := used && strings.HasPrefix(role, "categorical[")
		sensitiveOnly := !used && slices.ContainsFunc(s.Sensitive, func(sa SensitiveSpec) bool { return sa.Column == c })
		switch {
		case !isNumeric && !isCategorical && !sensitiveOnly:
			what := "not a column of the schema"
			if used {
				what = "the " + role
			}
			problems = append(problems, fmt.Sprintf("%s: %q is %s: missing-value policies apply to features and sensitive attributes", key, c, what))
		case p == MissingReject:
		case p == MissingImpute && !isNumeric:
			problems = append(problems, fmt.Sprintf("%s: %s applies to numeric features only (use %s or %s)", key, p, MissingAsCategory, MissingReject))
		case p == MissingAsCategory && isNumeric:
			problems = append(problems, fmt.Sprintf("%s: %s applies to categorical features and sensitive attributes (use %s or %s)", key, p, MissingImpute, MissingReject))
		case p == MissingAsCategory && isCategorical:
			for _, spec := range s.Categorical {
				if spec.Column == c && !slices.Contains(spec.Values, MissingCategory) {
					problems = append(problems, fmt.Sprintf("%s: %s needs the level %q in the vocabulary of %s (ParseSchema appends it)", key, p, MissingCategory, role))
				}
			}
		case p != MissingImpute && p != MissingAsCategory:
			problems = append(problems, fmt.Sprintf("%s: %q must be %q, %q or %q", key, p, MissingImpute, MissingAsCategory, MissingReject))
		}
	}
	return problems
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
