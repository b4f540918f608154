package dataset_test

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
)

// layoutSchemaYAML is a headerless layout with every new option: trimming, missing-value
// tokens with a policy per column, an excluded column and label value lists.
const layoutSchemaYAML = `
name: layout
csv:
  delimiter: ","
  header: false
  columns: [id, age, job, gender, consent, y]
  trim_space: true
  missing: ["?", "NA", ""]
label:
  column: y
  positive: ["yes", "Y"]
  negative: ["no", "N"]
numeric: [age]
categorical:
  - column: job
    values: [admin, blue]
exclude: [id]
consent:
  tracked: true
  column: consent
  grants: [all]
sensitive:
  - column: gender
    groups: [f, m]
missing:
  age: impute
  job: category
  gender: category
`

// edited applies old, new replacement pairs to a schema text; each old must occur.
func edited(t *testing.T, yaml string, pairs ...string) string {
	t.Helper()
	require.Zero(t, len(pairs)%2, "replacements come in pairs")
	for i := 0; i < len(pairs); i += 2 {
		require.Contains(t, yaml, pairs[i], "replacement %d", i/2)
		yaml = strings.Replace(yaml, pairs[i], pairs[i+1], 1)
	}
	return yaml
}

// layoutSchema parses layoutSchemaYAML with the replacements applied.
func layoutSchema(t *testing.T, pairs ...string) *dataset.Schema {
	t.Helper()
	s, err := dataset.ParseSchema("layout.yaml", []byte(edited(t, layoutSchemaYAML, pairs...)))
	require.NoError(t, err)
	return s
}

// withHeader turns layoutSchemaYAML's headerless file into one with a header row.
var withHeader = []string{"  header: false\n  columns: [id, age, job, gender, consent, y]\n", ""}

func readLayout(s *dataset.Schema, in string) (*dataset.Dataset, error) {
	return dataset.ReadCSVFrom(context.Background(), strings.NewReader(in), "layout.csv", s)
}

func TestParseSchemaLayoutOptions(t *testing.T) {
	s := layoutSchema(t)
	assert.False(t, s.CSV.HasHeader())
	assert.Equal(t, []string{"id", "age", "job", "gender", "consent", "y"}, s.CSV.Columns)
	assert.True(t, s.CSV.TrimSpace)
	assert.Equal(t, []string{"?", "NA", ""}, s.CSV.Missing)
	assert.Equal(t, "yes", s.Label.Positive, "the first positive value is the one written and named")
	assert.Equal(t, []string{"Y"}, s.Label.PositiveAliases)
	assert.Equal(t, []string{"yes", "Y"}, s.Label.Positives())
	assert.Equal(t, []string{"no", "N"}, s.Label.Negative)
	assert.Equal(t, []string{"admin", "blue", dataset.MissingCategory}, s.Categorical[0].Values, "the missing level is appended")
	assert.Equal(t, dataset.MissingImpute, s.MissingPolicyOf("age"))
	assert.Equal(t, dataset.MissingReject, s.MissingPolicyOf("id"), "the default")
	assert.True(t, s.Imputes())
	assert.Equal(t, 4, dataset.StatsVectorLen(s), "count, sum, sum of squares and observed count of one feature")

	declared := layoutSchema(t, "values: [admin, blue]", `values: [admin, "<missing>", blue]`)
	assert.Equal(t, []string{"admin", dataset.MissingCategory, "blue"}, declared.Categorical[0].Values, "a declared missing level keeps its place")

	scalar := layoutSchema(t, `positive: ["yes", "Y"]`, `positive: "yes"`, `negative: ["no", "N"]`, `negative: "no"`)
	assert.Equal(t, "yes", scalar.Label.Positive)
	assert.Nil(t, scalar.Label.PositiveAliases)
	assert.Equal(t, []string{"no"}, scalar.Label.Negative)
}

func TestSchemaJSONIgnoresDefaultLayout(t *testing.T) {
	// Schema hashes are taken over the JSON: stating a default must not change it, and a
	// schema without the new keys encodes as before them (TestSchemaJSONWithoutBoundsIsUnchanged).
	plain, err := dataset.ParseSchema("t.yaml", []byte(testSchemaYAML))
	require.NoError(t, err)
	explicit, err := dataset.ParseSchema("t.yaml", []byte(strings.Replace(testSchemaYAML, `  delimiter: ";"`, "  delimiter: \";\"\n  header: true\n  skip_lines: 0\n  trim_space: false\n  missing: []", 1)))
	require.NoError(t, err)
	a, err := json.Marshal(plain)
	require.NoError(t, err)
	b, err := json.Marshal(explicit)
	require.NoError(t, err)
	assert.Equal(t, string(a), string(b))
	assert.Contains(t, string(a), `"CSV":{"Delimiter":";","Quote":"\""}`)
	assert.Contains(t, string(a), `"Label":{"Column":"y","Positive":"yes","Negative":["no"]}`)
}

func TestParseSchemaLayoutErrors(t *testing.T) {
	tests := []struct {
		name  string
		pairs []string
		want  string
	}{
		{"columns with a header", []string{"  header: false\n", ""}, "csv.columns is set but the file has a header"},
		{"no header without columns", []string{"  columns: [id, age, job, gender, consent, y]\n", ""}, "csv.header is false but csv.columns is empty"},
		{"columns miss a used column", []string{"columns: [id, age, job, gender, consent, y]", "columns: [id, age, job, consent, y]"}, `csv.columns does not list column "gender"`},
		{"columns list an undeclared column", []string{"columns: [id, age, job, gender, consent, y]", "columns: [id, age, job, gender, consent, y, extra]"}, `csv.columns lists "extra", which the schema neither uses nor lists under exclude`},
		{"a column twice", []string{"columns: [id, age, job, gender, consent, y]", "columns: [id, age, job, gender, consent, y, id]"}, `csv.columns[6]: "id" is listed twice`},
		{"an empty column name", []string{"columns: [id, age, job, gender, consent, y]", `columns: [id, age, job, gender, consent, y, ""]`}, "csv.columns[6] is empty"},
		{"negative skip_lines", []string{"  trim_space: true\n", "  trim_space: true\n  skip_lines: -1\n"}, "csv.skip_lines -1 is outside [0, 1000]"},
		{"too many skip_lines", []string{"  trim_space: true\n", "  trim_space: true\n  skip_lines: 1001\n"}, "csv.skip_lines 1001 is outside [0, 1000]"},
		{"a long comment", []string{"  trim_space: true\n", "  trim_space: true\n  comment: \"//\"\n"}, `csv.comment "//" must be a single ASCII character`},
		{"the delimiter as comment", []string{"  trim_space: true\n", "  trim_space: true\n  comment: \",\"\n"}, `csv.comment "," cannot be used`},
		{"a token twice", []string{`missing: ["?", "NA", ""]`, `missing: ["?", "NA", "?"]`}, `csv.missing[2]: "?" is listed twice`},
		{"a token that is a category", []string{`missing: ["?", "NA", ""]`, `missing: ["?", "blue"]`}, `csv.missing[1]: "blue" is also a value of categorical[0] (job)`},
		{"a token that is a label value", []string{`missing: ["?", "NA", ""]`, `missing: ["N"]`}, `csv.missing[0]: "N" is also a label value`},
		{"a token that is a consent grant", []string{`missing: ["?", "NA", ""]`, `missing: ["all"]`}, `csv.missing[0]: "all" is also a consent grant`},
		{"a token that is a group", []string{`missing: ["?", "NA", ""]`, `missing: ["f"]`}, `csv.missing[0]: "f" is also a group of sensitive[0] (gender)`},
		{"a token trimming removes", []string{`missing: ["?", "NA", ""]`, `missing: [" ?"]`}, `csv.missing[0]: " ?" has surrounding white space`},
		{"a value trimming removes", []string{"values: [admin, blue]", `values: [admin, "blue "]`}, `categorical[0] (job): "blue " has surrounding white space`},
		{"impute on a category", []string{"  job: category", "  job: impute"}, "missing.job: impute applies to numeric features only"},
		{"category on a number", []string{"  age: impute", "  age: category"}, "missing.age: category applies to categorical features and sensitive attributes"},
		{"impute on a sensitive attribute", []string{"  gender: category", "  gender: impute"}, "missing.gender: impute applies to numeric features only"},
		{"an unknown policy", []string{"  age: impute", "  age: mean"}, `missing.age: "mean" must be "impute", "category" or "reject"`},
		{"a policy for the label", []string{"  age: impute", "  age: impute\n  y: category"}, `missing.y: "y" is the label.column`},
		{"a policy for an excluded column", []string{"  age: impute", "  age: impute\n  id: reject"}, `missing.id: "id" is the exclude[0]`},
		{"a policy for an unknown column", []string{"  age: impute", "  age: impute\n  salary: impute"}, `missing.salary: "salary" is not a column of the schema`},
		{"the missing level without its policy", []string{"  job: category\n", "", "values: [admin, blue]", `values: [admin, blue, "<missing>"]`}, `value "<missing>" is reserved for missing values: set missing.job: category`},
		{"a positive value that is negative", []string{`positive: ["yes", "Y"]`, `positive: ["yes", "N"]`}, `label value "N" is both positive and negative`},
		{"a positive value twice", []string{`positive: ["yes", "Y"]`, `positive: ["yes", "yes"]`}, `label value "yes" is listed twice`},
		{"an empty positive alias", []string{`positive: ["yes", "Y"]`, `positive: ["yes", ""]`}, "label.positive[1] is empty"},
		{"positive as a mapping", []string{`positive: ["yes", "Y"]`, `positive: {a: b}`}, "label.positive must be a value or a list of values"},
		{"an unknown format", []string{"name: layout", "name: layout\nformat: xlsx"}, `format "xlsx" must be "csv", "parquet" or empty`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := dataset.ParseSchema("layout.yaml", []byte(edited(t, layoutSchemaYAML, tt.pairs...)))
			require.ErrorIs(t, err, dataset.ErrInvalidSchema)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestValidateGoValueNeedsTheMissingLevel(t *testing.T) {
	// Validate checks a Go value without changing it: only ParseSchema appends the level.
	s := &dataset.Schema{
		Label:       dataset.LabelSpec{Column: "y", Positive: "1", Negative: []string{"0"}},
		Categorical: []dataset.CategoricalSpec{{Column: "job", Values: []string{"a"}}},
		Missing:     map[string]dataset.MissingPolicy{"job": dataset.MissingAsCategory},
	}
	err := s.Validate()
	require.ErrorIs(t, err, dataset.ErrInvalidSchema)
	assert.Contains(t, err.Error(), `needs the level "<missing>" in the vocabulary of categorical[0]`)
	s.Categorical[0].Values = append(s.Categorical[0].Values, dataset.MissingCategory)
	require.NoError(t, s.Validate())
}

func TestFormatOf(t *testing.T) {
	s := testSchema(t)
	for _, tt := range []struct {
		path   string
		format dataset.FileFormat
		want   dataset.FileFormat
	}{
		{"bank.csv", "", dataset.FormatCSV},
		{"bank.txt", "", dataset.FormatCSV},
		{"shards/bank.parquet", "", dataset.FormatParquet},
		{"BANK.PARQUET", "", dataset.FormatParquet},
		{"bank.parquet", dataset.FormatCSV, dataset.FormatCSV},
		{"bank.data", dataset.FormatParquet, dataset.FormatParquet},
	} {
		with := *s
		with.Format = tt.format
		assert.Equal(t, tt.want, dataset.FormatOf(&with, tt.path), "%s with format %q", tt.path, tt.format)
	}
}

// row is one expected Dataset row: numbers as text ("NaN" for missing), then the rest.
type row struct {
	numeric  []string
	category []int32
	label    float64
	groups   []string
	line     int
}

func requireRows(t *testing.T, want []row, excluded int, d *dataset.Dataset) {
	t.Helper()
	require.Equal(t, len(want), d.Len(), "rows")
	numbers := numbersOf(d)
	for i, w := range want {
		assert.Equal(t, w.numeric, numbers[i], "row %d numbers", i)
		assert.Equal(t, w.category, d.Category[i], "row %d categories", i)
		assert.Equal(t, w.label, d.Label[i], "row %d label", i)
		assert.Equal(t, w.groups, d.Groups[i], "row %d groups", i)
		assert.Equal(t, w.line, d.Line[i], "row %d line", i)
	}
	assert.Equal(t, excluded, d.ExcludedNoConsent, "excluded for lack of consent")
}

func TestReadCSVLayoutOptions(t *testing.T) {
	const missing = 2 // the index of the appended missing level of job
	tests := []struct {
		name     string
		pairs    []string
		input    string
		want     []row
		excluded int
	}{
		{"headerless, trimmed, missing values kept by policy", nil,
			"1, 30, admin, f, all, yes\n" +
				"2, ?, blue , m, all, N\n" +
				"3, NA, ?, ?, all, Y\n" +
				"4, , ,, all , no\n" + // "" is a token: every value missing but the label
				"5, 31, admin, f, ?, no\n" + // missing consent: left out
				"6, 32, admin, f, none, no\n", // consent refused: left out
			[]row{
				{[]string{"30"}, []int32{0}, 1, []string{"f"}, 1},
				{[]string{"NaN"}, []int32{1}, 0, []string{"m"}, 2},
				{[]string{"NaN"}, []int32{missing}, 1, []string{dataset.MissingCategory}, 3},
				{[]string{"NaN"}, []int32{missing}, 0, []string{dataset.MissingCategory}, 4},
			}, 2},
		{"an excluded column is never read", nil,
			"?, 30, admin, f, all, yes\nnot a number, 31, blue, m, all, no\n",
			[]row{{[]string{"30"}, []int32{0}, 1, []string{"f"}, 1}, {[]string{"31"}, []int32{1}, 0, []string{"m"}, 2}}, 0},
		{"skip_lines drops junk, lines keep their numbers", []string{"  trim_space: true\n", "  trim_space: true\n  skip_lines: 2\n"},
			"|1x3 Cross validator, \"an odd quote\n\n1, 30, admin, f, all, yes\n",
			[]row{{[]string{"30"}, []int32{0}, 1, []string{"f"}, 3}}, 0},
		{"skip_lines before a header", append([]string{"  trim_space: true\n", "  trim_space: true\n  skip_lines: 1\n"}, withHeader...),
			"a title\nid, age, job, gender, consent, y\n1, 30, admin, f, all, yes\n",
			[]row{{[]string{"30"}, []int32{0}, 1, []string{"f"}, 3}}, 0},
		{"a comment line wherever it is", []string{"  trim_space: true\n", "  trim_space: true\n  comment: \"|\"\n"},
			"|1x3 Cross validator\n1, 30, admin, f, all, yes\n|again, \"odd\n2, 31, blue, m, all, no\n",
			[]row{{[]string{"30"}, []int32{0}, 1, []string{"f"}, 2}, {[]string{"31"}, []int32{1}, 0, []string{"m"}, 4}}, 0},
		{"a comment line, unquoted", []string{"  trim_space: true\n", "  trim_space: true\n  comment: \"|\"\n  quote: \"\"\n"},
			"|1x3 Cross validator\n1, 30, admin, f, all, yes\n",
			[]row{{[]string{"30"}, []int32{0}, 1, []string{"f"}, 2}}, 0},
		{"a header, trimmed", withHeader,
			" id , age,job ,gender,consent, y\n1, 30, admin, f, all, yes\n",
			[]row{{[]string{"30"}, []int32{0}, 1, []string{"f"}, 2}}, 0},
		{"trim_space allows a space before a quote", nil,
			"1, \"30\", \"admin\", f, all, \"yes\"\n",
			[]row{{[]string{"30"}, []int32{0}, 1, []string{"f"}, 1}}, 0},
		{"without trim_space numbers alone ignore spaces", []string{"  trim_space: true\n", ""},
			"1, 30 ,admin,f,all,yes\n2, ? ,blue,m,all,no\n",
			[]row{{[]string{"30"}, []int32{0}, 1, []string{"f"}, 1}, {[]string{"NaN"}, []int32{1}, 0, []string{"m"}, 2}}, 0},
		{"without trim_space a spaced token is no missing category", []string{"  trim_space: true\n", "", "    values: [admin, blue]\n", "    values: [admin, blue]\n    unseen: other\n"},
			"1,30, ?,f,all,yes\n",
			[]row{{[]string{"30"}, []int32{3}, 1, []string{"f"}, 1}}, 0},
		{"no missing tokens: nothing is missing", []string{`  missing: ["?", "NA", ""]` + "\n", "", "  age: impute\n  job: category\n  gender: category\n", "  age: impute\n"},
			"1,30,admin,,all,yes\n",
			[]row{{[]string{"30"}, []int32{0}, 1, []string{""}, 1}}, 0},
		{"an empty headerless file", nil, "", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := readLayout(layoutSchema(t, tt.pairs...), tt.input)
			require.NoError(t, err)
			requireRows(t, tt.want, tt.excluded, d)
		})
	}
}

func TestReadCSVLayoutErrors(t *testing.T) {
	tests := []struct {
		name       string
		pairs      []string
		input      string
		sentinels  []error
		line, col  int
		columnName string
		message    string
		never      []string // never in the message: the missing or bad value
	}{
		{"a missing number rejected", []string{"  age: impute\n", ""},
			"1, 30, admin, f, all, yes\n2, ?, admin, f, all, yes\n", []error{dataset.ErrMissingValue}, 2, 2, "age",
			`layout.csv:2:2 (column "age"): the value is missing (one of csv.missing) and missing.age is reject: set it to impute to keep such rows`, []string{"?"}},
		{"a missing category rejected", []string{"  job: category\n", "", `values: [admin, blue]`, `values: [admin, blue]`},
			"1, 30, NA, f, all, yes\n", []error{dataset.ErrMissingValue}, 1, 3, "job",
			"missing.job is reject: set it to category", []string{"NA"}},
		{"a missing sensitive attribute rejected", []string{"  gender: category\n", ""},
			"1, 30, admin, ?, all, yes\n", []error{dataset.ErrMissingValue}, 1, 4, "gender",
			"missing.gender is reject", []string{"?"}},
		{"a missing label", nil,
			"1, 30, admin, f, all, ?\n", []error{dataset.ErrMissingValue, dataset.ErrBadLabel}, 1, 6, "y",
			"the label is missing", []string{"?"}},
		{"a label in neither list", nil,
			"1, 30, admin, f, all, yes\n1, 30, admin, f, all, maybe\n", []error{dataset.ErrBadLabel}, 2, 6, "y",
			`layout.csv:2:6 (column "y"): cannot read "maybe" as a label: want one of ["yes" "Y"] (positive) or of ["no" "N"] (negative)`, nil},
		{"a label outside the lists after trimming", nil,
			"1, 30, admin, f, all, yes.\n", []error{dataset.ErrBadLabel}, 1, 6, "y", `cannot read "yes." as a label`, nil},
		{"too few fields without a header", nil,
			"1, 30, admin, f, all\n", []error{dataset.ErrBadRow}, 1, 0, "", "layout.csv:1: the row has 5 fields, csv.columns lists 6", nil},
		{"a bad number after skipped lines", []string{"  trim_space: true\n", "  trim_space: true\n  skip_lines: 2\n"},
			"junk\njunk\n1, 3x, admin, f, all, yes\n", []error{dataset.ErrBadNumber}, 3, 2, "age", `layout.csv:3:2 (column "age"): cannot parse "3x" as a number`, nil},
		{"broken quoting after skipped lines", []string{"  trim_space: true\n", "  trim_space: true\n  skip_lines: 1\n"},
			"junk\n1, 3\"0, admin, f, all, yes\n", []error{dataset.ErrBadRow}, 2, 0, "", "layout.csv:2: bare \"", nil},
		{"a bad number after skipped lines, unquoted", []string{"  trim_space: true\n", "  trim_space: true\n  skip_lines: 1\n  quote: \"\"\n"},
			"junk \"\n1, 3x, admin, f, all, yes\n", []error{dataset.ErrBadNumber}, 2, 2, "age", `layout.csv:2:2 (column "age")`, nil},
		{"without trim_space a spaced category is unseen", []string{"  trim_space: true\n", ""},
			"1,30, admin,f,all,yes\n", []error{dataset.ErrUnseenCategory}, 1, 3, "job", `unseen category " admin"`, nil},
		{"without trim_space a spaced label is bad", []string{"  trim_space: true\n", ""},
			"1,30,admin,f,all, yes\n", []error{dataset.ErrBadLabel}, 1, 6, "y", `cannot read " yes" as a label`, nil},
		{"a header missing a column", withHeader,
			"id, age, job, consent, y\n", []error{dataset.ErrMissingColumn}, 1, 0, "gender", "missing column", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readLayout(layoutSchema(t, tt.pairs...), tt.input)
			require.Error(t, err)
			for _, s := range tt.sentinels {
				require.ErrorIs(t, err, s)
			}
			var ie *dataset.InputError
			require.ErrorAs(t, err, &ie)
			assert.Equal(t, "layout.csv", ie.File)
			assert.Equal(t, tt.line, ie.Line, "line")
			assert.Equal(t, tt.col, ie.Column, "column")
			assert.Equal(t, tt.columnName, ie.ColumnName)
			assert.Contains(t, err.Error(), tt.message)
			for _, n := range tt.never {
				assert.NotContains(t, err.Error(), n)
			}
		})
	}
}

func TestReadCSVSkippedLinesAreBounded(t *testing.T) {
	s := layoutSchema(t, "  trim_space: true\n", "  trim_space: true\n  skip_lines: 2\n")
	in := "junk\n" + strings.Repeat("j", 500) + "\n1, 30, admin, f, all, yes\n"
	_, err := dataset.ReadCSVWith(context.Background(), strings.NewReader(in), "layout.csv", s, dataset.ReadOptions{MaxLineBytes: 100})
	require.ErrorIs(t, err, dataset.ErrLineTooLong)
	var ie *dataset.InputError
	require.ErrorAs(t, err, &ie)
	assert.Equal(t, 2, ie.Line, "the skipped line that was too long")
}

func TestReadCSVFormatOverrideIsCheckedAgainstTheSchema(t *testing.T) {
	s := layoutSchema(t)
	f := s.CSV
	f.Columns = []string{"id", "age"}
	_, err := dataset.ReadCSVWith(context.Background(), strings.NewReader(""), "layout.csv", s, dataset.ReadOptions{Format: &f})
	require.ErrorIs(t, err, dataset.ErrInvalidSchema)
	assert.Contains(t, err.Error(), `csv.columns does not list column "job"`)

	f = s.CSV
	f.SkipLines = 1
	d, err := dataset.ReadCSVWith(context.Background(), strings.NewReader("junk\n1, 30, admin, f, all, yes\n"), "layout.csv", s, dataset.ReadOptions{Format: &f})
	require.NoError(t, err)
	assert.Equal(t, []int{2}, d.Line, "the override's skip_lines applies")
}

func TestReadCSVByteOrderMarkWithoutHeader(t *testing.T) {
	d, err := readLayout(layoutSchema(t), "\ufeff1, 30, admin, f, all, yes\n")
	require.NoError(t, err)
	assert.Equal(t, 1, d.Len())
	assert.False(t, math.IsNaN(d.Numeric[0][0]))
}
