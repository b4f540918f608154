package dataset_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/internal/sharedtest"
)

// testSchemaYAML is a small schema exercising every feature: quoting, consent, an
// "other" bucket, a banded sensitive feature and a sensitive column that is no feature.
const testSchemaYAML = `
name: test
csv:
  delimiter: ";"
label:
  column: y
  positive: "yes"
  negative: ["no"]
numeric: [age, balance]
categorical:
  - column: job
    values: [admin, blue]
  - column: region
    values: [north, south]
    unseen: other
exclude: [duration]
consent:
  tracked: true
  column: consent
  grants: [all, propensity-modeling]
sensitive:
  - column: age
    model_input: true
    bands: [30, 60]
  - column: gender
`

func testSchema(t *testing.T) *dataset.Schema {
	t.Helper()
	s, err := dataset.ParseSchema("test.yaml", []byte(testSchemaYAML))
	require.NoError(t, err)
	return s
}

func TestParseSchemaFillsDefaults(t *testing.T) {
	s := testSchema(t)
	assert.Equal(t, dataset.CSVFormat{Delimiter: ";", Quote: `"`}, s.CSV)
	assert.Equal(t, dataset.DefaultPurpose, s.Consent.Purpose)
	assert.Equal(t, dataset.UnseenError, s.Categorical[0].Unseen)
	assert.Equal(t, dataset.UnseenOther, s.Categorical[1].Unseen)
	assert.Equal(t, []string{"y", "age", "balance", "job", "region", "consent", "gender"}, s.Columns())
}

func TestParseSchemaErrors(t *testing.T) {
	base := testSchemaYAML
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error
	}{
		{"empty", "", []string{"test.yaml", "empty"}},
		{"not a mapping", "- a\n- b\n", []string{"must be a YAML mapping"}},
		{"syntax", "name: [", []string{"test.yaml"}},
		{"unknown top-level key", base + "labels: {}\n", []string{"test.yaml:26:1", `unknown key "labels" at the top level`, "known keys: name, csv, label"}},
		{"unknown nested key", strings.Replace(base, "  tracked: true", "  trackd: true", 1), []string{`unknown key "trackd" in consent`}},
		{"unknown key in list item", strings.Replace(base, "    unseen: other", "    unsen: other", 1), []string{`unknown key "unsen" in categorical[1]`}},
		{"tracked missing", strings.Replace(base, "  tracked: true\n", "", 1), []string{"consent.tracked is missing", "`tracked: false` explicitly"}},
		{"tracked null", strings.Replace(base, "  tracked: true", "  tracked:", 1), []string{"consent.tracked is missing"}},
		{"consent missing", strings.Replace(base, "consent:\n  tracked: true\n  column: consent\n  grants: [all, propensity-modeling]\n", "", 1), []string{"consent.tracked is missing"}},
		{"tracked not a bool", strings.Replace(base, "  tracked: true", "  tracked: maybe", 1), []string{"test.yaml", "maybe"}},
		{"sensitive feature without model_input", strings.Replace(base, "    model_input: true\n", "", 1), []string{"sensitive[0] (age)", "set model_input: true"}},
		{"model_input on a non-feature", strings.Replace(base, "  - column: gender", "  - column: gender\n    model_input: true", 1), []string{"sensitive[1] (gender)", "not a numeric or categorical feature"}},
		{"column listed twice", strings.Replace(base, "exclude: [duration]", "exclude: [duration, balance]", 1), []string{`column "balance" is listed twice: as numeric[1] and as exclude[1]`}},
		{"label is a feature", strings.Replace(base, "numeric: [age, balance]", "numeric: [age, balance, y]", 1), []string{`column "y" is listed twice: as label.column and as numeric[2]`}},
		{"tracked without grants", strings.Replace(base, "  grants: [all, propensity-modeling]\n", "", 1), []string{"consent.grants is empty"}},
		{"untracked with a column", strings.Replace(base, "  tracked: true", "  tracked: false", 1), []string{"consent.tracked is false"}},
		{"bad delimiter", strings.Replace(base, `delimiter: ";"`, `delimiter: ";;"`, 1), []string{"single character"}},
		{"bad quote", strings.Replace(base, `delimiter: ";"`, "delimiter: \";\"\n  quote: \"'\"", 1), []string{"csv.quote"}},
		{"empty vocabulary", strings.Replace(base, "values: [admin, blue]", "values: []", 1), []string{"categorical[0] (job): values is empty"}},
		{"duplicate value", strings.Replace(base, "values: [admin, blue]", "values: [admin, admin]", 1), []string{`value "admin" is listed twice`}},
		{"bad policy", strings.Replace(base, "unseen: other", "unseen: ignore", 1), []string{`unseen "ignore"`}},
		{"bands not increasing", strings.Replace(base, "bands: [30, 60]", "bands: [60, 30]", 1), []string{"strictly increasing"}},
		{"bands not finite", strings.Replace(base, "bands: [30, 60]", "bands: [30, .nan]", 1), []string{"not a finite number"}},
		{"label positive is negative", strings.Replace(base, `negative: ["no"]`, `negative: ["no", "yes"]`, 1), []string{`"yes" is both positive and negative`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := dataset.ParseSchema("test.yaml", []byte(tt.yaml))
			require.Error(t, err)
			require.ErrorIs(t, err, dataset.ErrInvalidSchema)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestLoadSchemaNamesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(path, []byte("name: x\nfoo: 1\n"), 0o600))
	_, err := dataset.LoadSchema(path)
	require.ErrorIs(t, err, dataset.ErrInvalidSchema)
	assert.Contains(t, err.Error(), path+":2:1")
	assert.Contains(t, err.Error(), `"foo"`)

	_, err = dataset.LoadSchema(filepath.Join(t.TempDir(), "absent.yaml"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestBands(t *testing.T) {
	s := dataset.SensitiveSpec{Column: "age", Bands: []float64{30, 60}}
	labels := s.BandLabels()
	assert.Equal(t, []string{"<30", "30-60", ">=60"}, labels)
	for v, want := range map[float64]string{-5: "<30", 29.9: "<30", 30: "30-60", 59: "30-60", 60: ">=60", 99: ">=60"} {
		assert.Equal(t, want, labels[s.Band(v)], "age %v", v)
	}
	assert.Nil(t, dataset.SensitiveSpec{Column: "gender"}.BandLabels())
	assert.Equal(t, []string{"<0.5", ">=0.5"}, dataset.SensitiveSpec{Bands: []float64{0.5}}.BandLabels())
}

func TestValidateGoValue(t *testing.T) {
	s := &dataset.Schema{
		Label:   dataset.LabelSpec{Column: "y", Positive: "1", Negative: []string{"0"}},
		Numeric: []string{"x"},
	}
	require.NoError(t, s.Validate())
	assert.Equal(t, ',', s.CSV.Comma())
	assert.False(t, s.CSV.Quoted())

	var nilSchema *dataset.Schema
	require.ErrorIs(t, nilSchema.Validate(), dataset.ErrInvalidSchema)

	s.Numeric = nil
	err := s.Validate()
	require.ErrorIs(t, err, dataset.ErrInvalidSchema)
	assert.Contains(t, err.Error(), "no features")
}

func TestBankSchemaFile(t *testing.T) {
	s, err := dataset.LoadSchema(bankSchemaPath(t))
	require.NoError(t, err)
	assert.Equal(t, ';', s.CSV.Comma())
	assert.Contains(t, s.Exclude, "duration")
	assert.False(t, s.Consent.Tracked)
	require.Len(t, s.Sensitive, 2)
	assert.Equal(t, []float64{30, 60}, s.Sensitive[0].Bands)
	assert.True(t, s.Sensitive[0].ModelInput)
	assert.Equal(t, "marital", s.Sensitive[1].Column)
}

// bankSchemaPath returns configs/schema-bank.yaml of this repository.
func bankSchemaPath(t *testing.T) string {
	t.Helper()
	root, err := sharedtest.ModuleRoot()
	require.NoError(t, err)
	return filepath.Join(root, "configs", "schema-bank.yaml")
}

func TestSchemaBoundsPinAStandardisationWithoutData(t *testing.T) {
	s, err := dataset.ParseSchema("test.yaml", []byte(testSchemaYAML+"bounds:\n  age: [18, 100]\n  balance: [-5000, 45000]\n"))
	require.NoError(t, err)
	std, err := s.PublicStandardization()
	require.NoError(t, err)
	assert.Equal(t, []float64{59, 20000}, std.Mean, "the middle of each range")
	assert.Equal(t, []float64{41, 25000}, std.Std, "half its width: a value in range encodes within [-1, 1]")
	enc, err := dataset.NewEncoder(s, std)
	require.NoError(t, err)
	ds := &dataset.Dataset{Schema: s, Numeric: [][]float64{{18, 45000}}, Category: [][]int32{{0, 0}}, Label: []float64{0}, Groups: [][]string{{"<30", "x"}}}
	x := enc.Encode(ds)
	assert.InDelta(t, -1, x.At(0, 0), 1e-12)
	assert.InDelta(t, 1, x.At(0, 1), 1e-12)
}

func TestPublicStandardizationNamesEveryUnboundedFeature(t *testing.T) {
	s, err := dataset.ParseSchema("test.yaml", []byte(testSchemaYAML+"bounds:\n  balance: [0, 1]\n"))
	require.NoError(t, err)
	assert.Equal(t, []string{"age"}, s.Unbounded())
	_, err = s.PublicStandardization()
	require.ErrorIs(t, err, dataset.ErrNoBounds)
	assert.Contains(t, err.Error(), "age")
	assert.Contains(t, err.Error(), "`age: [min, max]`")
	assert.NotContains(t, err.Error(), "balance")

	s = testSchema(t)
	assert.Equal(t, []string{"age", "balance"}, s.Unbounded())
}

func TestSchemaBoundsErrors(t *testing.T) {
	for _, tc := range []struct {
		name, bounds, want string
	}{
		{"a categorical column", "  job: [0, 1]\n", `bounds.job: "job" is not a numeric feature`},
		{"an unknown column", "  income: [0, 1]\n", `bounds.income: "income" is not a numeric feature`},
		{"three values", "  age: [18, 60, 100]\n", "bounds.age: want [min, max], got 3 values"},
		{"not finite", "  age: [18, .inf]\n", "bounds.age: [18, +Inf] is not a pair of finite numbers"},
		{"NaN", "  age: [.nan, 100]\n", "is not a pair of finite numbers"},
		{"min above max", "  age: [100, 18]\n", "bounds.age: min 100 must be below max 18"},
		{"empty range", "  age: [18, 18]\n", "bounds.age: min 18 must be below max 18"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := dataset.ParseSchema("test.yaml", []byte(testSchemaYAML+"bounds:\n"+tc.bounds))
			require.ErrorIs(t, err, dataset.ErrInvalidSchema)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// TestSchemaJSONWithoutBoundsIsUnchanged: schema hashes are taken over the schema's JSON, so a
// schema without bounds must encode exactly as before bounds existed (every run and model
// pinned to such a hash keeps it), and one with bounds must not.
func TestSchemaJSONWithoutBoundsIsUnchanged(t *testing.T) {
	s := testSchema(t)
	b, err := json.Marshal(s)
	require.NoError(t, err)
	assert.NotContains(t, string(b), "Bounds")
	assert.True(t, strings.HasSuffix(string(b), `"Sensitive":[{"Column":"age","ModelInput":true,"Bands":[30,60],"Groups":null},{"Column":"gender","ModelInput":false,"Bands":null,"Groups":null}]}`))

	bounded, err := dataset.ParseSchema("test.yaml", []byte(testSchemaYAML+"bounds:\n  age: [18, 100]\n"))
	require.NoError(t, err)
	b, err = json.Marshal(bounded)
	require.NoError(t, err)
	assert.Contains(t, string(b), `"Bounds":{"age":[18,100]}`)
}

func TestBankSchemaBoundsEveryNumericFeature(t *testing.T) {
	s, err := dataset.LoadSchema(bankSchemaPath(t))
	require.NoError(t, err)
	assert.Empty(t, s.Unbounded())
	std, err := s.PublicStandardization()
	require.NoError(t, err)
	for i, c := range s.Numeric {
		assert.Positive(t, std.Std[i], c)
	}
}
