package dataset

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// ValueKind says what a Value holds.
type ValueKind uint8

// The kinds of Value.
const (
	// KindText is a field as the file writes it (every CSV field, a Parquet string).
	KindText ValueKind = iota
	// KindNumber is a number from a typed column (a Parquet integer or float). Its Text,
	// when not empty, is the number's exact decimal form; otherwise a text is formatted
	// from Num wherever one is needed (a categorical value, a label).
	KindNumber
	// KindNull is an absent value (a Parquet null): missing, whatever csv.missing says.
	KindNull
)

// Value is one field of a record handed to a RecordDecoder.
type Value struct {
	// Kind says which of Text and Num holds the value.
	Kind ValueKind
	// Text is the field's text (KindText) or a number's exact decimal form (KindNumber).
	Text string
	// Num is the number of a KindNumber value.
	Num float64
}

// TextValue is a field as written.
func TextValue(s string) Value { return Value{Kind: KindText, Text: s} }

// NumberValue is a number from a typed column; text is its exact decimal form, or "" to
// format it from v when a text is needed.
func NumberValue(v float64, text string) Value { return Value{Kind: KindNumber, Num: v, Text: text} }

// NullValue is an absent value.
func NullValue() Value { return Value{Kind: KindNull} }

// RecordDecoder turns records, one Value per column, into the rows of a Dataset by the
// rules of a schema: consent, label values, numbers, vocabularies, sensitive groups and
// missing values. The CSV reader uses it and so does every other format's reader (package
// dataset/parquet), so that the same records give the same Dataset and the same errors
// whatever file they came in. A RecordDecoder is not safe for concurrent use.
type RecordDecoder struct {
	schema *Schema
	name   string
	format CSVFormat
	p      *plan

	b          *Builder
	num        []float64
	cat        []int32
	groups     []string
	intern     map[string]string
	excluded   int
	numPolicy  []MissingPolicy // per numeric feature
	missingCat []int32         // per categorical feature: the index of MissingCategory, or -1
	sensPolicy []MissingPolicy // per sensitive attribute that is no feature; "" for a feature
	asNumber   []bool          // per field: a numeric feature, whose missing values are found on the trimmed text
}

// NewRecordDecoder returns a decoder for records whose fields are the given columns, in
// order, read from the input called name (for errors). line is where the column names are
// written (a CSV header's line), 0 when they come from elsewhere (csv.columns, a Parquet
// schema). The columns must hold every column the schema uses (the label may be absent
// under opts.LabelOptional) and only columns it uses or excludes, each once; a problem is
// an *InputError. opts.Format, when set, replaces the schema's CSV format, whose TrimSpace
// and Missing the decoder applies; MaxLineBytes is the reader's business.
func NewRecordDecoder(schema *Schema, name string, columns []string, line int, opts ReadOptions) (*RecordDecoder, error) {
	if err := schema.Validate(); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	format := schema.CSV
	if opts.Format != nil {
		format = *opts.Format
		with := *schema
		with.CSV = format
		if err := with.Validate(); err != nil {
			return nil, fmt.Errorf("read %s: csv format: %w", name, err)
		}
	}
	d := &RecordDecoder{schema: schema, name: name, format: format, intern: map[string]string{}}
	p, err := newPlan(schema, columns, opts.LabelOptional, func(field int, column string, err error) error {
		return d.fail(line, field, column, err)
	})
	if err != nil {
		return nil, err
	}
	d.p = p
	d.b = newBuilder(schema, name, 0)
	d.num = make([]float64, len(schema.Numeric))
	d.cat = make([]int32, len(schema.Categorical))
	d.groups = make([]string, len(schema.Sensitive))
	d.asNumber = make([]bool, p.fields)
	for i, c := range schema.Numeric {
		d.numPolicy = append(d.numPolicy, schema.MissingPolicyOf(c))
		d.asNumber[p.numeric[i]] = true
	}
	for _, c := range schema.Categorical {
		idx := int32(-1)
		if schema.MissingPolicyOf(c.Column) == MissingAsCategory {
			idx = int32(slices.Index(c.Values, MissingCategory))
		}
		d.missingCat = append(d.missingCat, idx)
	}
	for _, sa := range schema.Sensitive {
		var policy MissingPolicy
		if !slices.Contains(schema.Numeric, sa.Column) && !slices.ContainsFunc(schema.Categorical, func(c CategoricalSpec) bool { return c.Column == sa.Column }) {
			policy = schema.MissingPolicyOf(sa.Column)
		}
		d.sensPolicy = append(d.sensPolicy, policy)
	}
	return d, nil
}

// Fields returns the number of fields a record must have.
func (d *RecordDecoder) Fields() int { return d.p.fields }

// Used reports whether the decoder reads field i; a reader may pass any Value for a field
// it does not (an excluded column), and skip reading it.
func (d *RecordDecoder) Used(i int) bool { return d.p.used[i] }

func (d *RecordDecoder) fail(line, field int, column string, err error) error {
	return &InputError{File: d.name, Line: line, Column: field, ColumnName: clipName(column), Err: err}
}

// Decode adds the record at line (a CSV line, a Parquet row number) to the Dataset, or counts
// it when its consent does not grant the schema's purpose. A problem is an *InputError naming
// the input, line, field and column; the record is then not added, and the caller stops.
func (d *RecordDecoder) Decode(line int, rec []Value) error {
	p, s := d.p, d.schema
	if len(rec) != p.fields {
		source := "the header has"
		if !d.format.HasHeader() {
			source = "csv.columns lists"
		}
		return d.fail(line, 0, "", reason(ErrBadRow, "the row has %d fields, %s %d", len(rec), source, p.fields))
	}
	at := func(field int, err error) error { return d.fail(line, field+1, p.header[field], err) }

	if p.consent >= 0 {
		// No recorded consent grants nothing: a missing consent value leaves the record out.
		v, missing := d.text(rec[p.consent])
		if missing || !s.Consent.Granted(v) {
			d.excluded++
			return nil
		}
	}
	label := math.NaN() // scoring data without a label column
	if p.label >= 0 {
		v, missing := d.text(rec[p.label])
		if missing {
			return at(p.label, &reasonError{msg: "the label is missing: every row needs one", sentinel: ErrMissingValue, cause: ErrBadLabel})
		}
		var err error
		if label, err = parseLabel(s.Label, v, p.hidden[p.label]); err != nil {
			return at(p.label, err)
		}
	}
	for i, f := range p.numeric {
		v, missing, err := d.number(rec[f], p.hidden[f])
		if err != nil {
			return at(f, err)
		}
		if missing {
			if d.numPolicy[i] != MissingImpute {
				return at(f, d.rejected(rec[f], p.header[f], MissingImpute))
			}
			// NaN marks the value for Stats (which skips it) and the Encoder (which
			// encodes the pinned mean): the mean is federated, no client knows it here.
			v = math.NaN()
		}
		d.num[i] = v
	}
	for j, f := range p.categorical {
		v, missing := d.text(rec[f])
		if missing {
			if d.missingCat[j] < 0 {
				return at(f, d.rejected(rec[f], p.header[f], MissingAsCategory))
			}
			d.cat[j] = d.missingCat[j]
			continue
		}
		idx, ok := p.vocab[j][v]
		if !ok {
			spec := s.Categorical[j]
			if spec.Policy() != UnseenOther {
				return at(f, reason(ErrUnseenCategory, "unseen category %s: not one of the %d values in the schema's vocabulary (unseen: other would bucket it)", shown(v, p.hidden[f]), len(spec.Values)))
			}
			idx = int32(len(spec.Values))
		}
		d.cat[j] = idx
	}
	for k, f := range p.sensitive {
		g, err := d.group(k, f, rec[f])
		if err != nil {
			return at(f, err)
		}
		d.groups[k] = g
	}
	d.b.Append(d.num, d.cat, d.groups, label, line)
	return nil
}

// group is the group of sensitive attribute k for value v of field f.
func (d *RecordDecoder) group(k, f int, v Value) (string, error) {
	spec := d.schema.Sensitive[k]
	column, hidden := d.p.header[f], d.p.hidden[f]
	if len(spec.Bands) == 0 {
		raw, missing := d.text(v)
		if d.asNumber[f] {
			// A numeric feature decided above whether the value is missing, comparing it
			// trimmed; the group follows that decision.
			_, missing, _ = d.number(v, hidden)
		}
		if missing {
			return d.missingGroup(k, v, column)
		}
		g, ok := d.intern[raw]
		if !ok {
			g = strings.Clone(raw) // raw may be a view into the reader's buffer
			d.intern[g] = g
		}
		return g, nil
	}
	labels := d.p.bands[k]
	x, missing, err := d.number(v, hidden)
	switch {
	case missing:
		return d.missingGroup(k, v, column)
	case err == nil:
		return labels[spec.Band(x)], nil
	}
	// A value banded before export; a numeric feature column would have failed to parse
	// in Decode, so this is a sensitive-only column.
	if raw, _ := d.text(v); slices.Contains(labels, raw) {
		return labels[slices.Index(labels, raw)], nil
	}
	return "", err
}

// missingGroup is the group of a missing value of sensitive attribute k: MissingCategory when
// its feature kept the row, or, for an attribute that is no feature, when its policy says so.
func (d *RecordDecoder) missingGroup(k int, v Value, column string) (string, error) {
	if p := d.sensPolicy[k]; p != "" && p != MissingAsCategory {
		return "", d.rejected(v, column, MissingAsCategory)
	}
	return MissingCategory, nil
}

// rejected is the error for a missing value under MissingReject. It never quotes the field:
// the token is known from the schema, and naming it would be the first step to quoting
// customer values.
func (d *RecordDecoder) rejected(v Value, column string, keep MissingPolicy) error {
	what := "one of csv.missing"
	if v.Kind == KindNull {
		what = "a null"
	}
	return reason(ErrMissingValue, "the value is missing (%s) and missing.%s is %s: set it to %s to keep such rows", what, clipName(column), MissingReject, keep)
}

// Dataset returns the rows decoded so far, with the number of records left out for lack of
// consent; the decoder must not be used afterwards.
func (d *RecordDecoder) Dataset() *Dataset {
	out := d.b.finish()
	out.ExcludedNoConsent = d.excluded
	return out
}

// text is v as text, trimmed under trim_space, and whether it is missing.
func (d *RecordDecoder) text(v Value) (string, bool) {
	switch v.Kind {
	case KindNull:
		return "", true
	case KindNumber:
		t := numberText(v)
		return t, d.format.IsMissing(t)
	}
	t := v.Text
	if d.format.TrimSpace {
		t = strings.TrimSpace(t)
	}
	return t, d.format.IsMissing(t)
}

// number is v as a finite number, or whether it is missing; numeric text is compared with
// the missing-value tokens trimmed, as numbers have always been parsed. An error quotes the
// value unless it is hidden.
func (d *RecordDecoder) number(v Value, hidden bool) (float64, bool, error) {
	switch v.Kind {
	case KindNull:
		return 0, true, nil
	case KindNumber:
		if math.IsNaN(v.Num) || math.IsInf(v.Num, 0) {
			t := numberText(v)
			if d.format.IsMissing(t) {
				return 0, true, nil
			}
			return 0, false, reason(ErrBadNumber, "%s is not a finite number", shown(t, hidden))
		}
		return v.Num, false, nil
	}
	t := v.Text
	if d.format.TrimSpace {
		t = strings.TrimSpace(t) // so that an error quotes the field as it was matched
	}
	if d.format.IsMissing(strings.TrimSpace(t)) {
		return 0, true, nil
	}
	x, err := parseNumber(t, hidden)
	return x, false, err
}

// numberText is the text of a KindNumber value.
func numberText(v Value) string {
	if v.Text != "" {
		return v.Text
	}
	return strconv.FormatFloat(v.Num, 'g', -1, 64)
}
