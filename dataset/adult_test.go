package dataset_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/internal/sharedtest"
)

// adultSnippet is shaped like UCI Adult as published: adult.test's junk first line, no
// header, ", " separators, "?" for missing values, labels with and without the trailing ".",
// and the empty line both files end with. The rows are adult.test's first five and
// adult.data's first, and one row with a missing country.
const adultSnippet = `|1x3 Cross validator
25, Private, 226802, 11th, 7, Never-married, Machine-op-inspct, Own-child, Black, Male, 0, 0, 40, United-States, <=50K.
38, Private, 89814, HS-grad, 9, Married-civ-spouse, Farming-fishing, Husband, White, Male, 0, 0, 50, United-States, <=50K.
28, Local-gov, 336951, Assoc-acdm, 12, Married-civ-spouse, Protective-serv, Husband, White, Male, 0, 0, 40, United-States, >50K.
44, Private, 160323, Some-college, 10, Married-civ-spouse, Machine-op-inspct, Husband, Black, Male, 7688, 0, 40, United-States, >50K.
18, ?, 103497, Some-college, 10, Never-married, ?, Own-child, White, Female, 0, 0, 30, United-States, <=50K.
39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, United-States, <=50K
52, Self-emp-inc, 287927, HS-grad, 9, Married-civ-spouse, Exec-managerial, Wife, White, Female, 15024, 0, 40, ?, >50K

`

// adultSchema loads configs/schema-adult.yaml of this repository.
func adultSchema(t *testing.T) *dataset.Schema {
	t.Helper()
	root, err := sharedtest.ModuleRoot()
	require.NoError(t, err)
	s, err := dataset.LoadSchema(filepath.Join(root, "configs", "schema-adult.yaml"))
	require.NoError(t, err)
	return s
}

func TestReadAdultSnippetWithTheSchemaAlone(t *testing.T) {
	s := adultSchema(t)
	d, err := dataset.ReadCSVFrom(context.Background(), strings.NewReader(adultSnippet), "adult.test", s)
	require.NoError(t, err)
	require.Equal(t, 7, d.Len())
	assert.Equal(t, []float64{0, 0, 1, 1, 0, 0, 1}, d.Label, "with and without the trailing dot")
	assert.Equal(t, []int{2, 3, 4, 5, 6, 7, 8}, d.Line, "the junk line is line 1")

	// numeric: age, education-num, capital-gain, capital-loss, hours-per-week
	assert.Equal(t, []float64{25, 7, 0, 0, 40}, d.Numeric[0])
	assert.Equal(t, []float64{44, 10, 7688, 0, 40}, d.Numeric[3])

	missing := func(column string) int32 {
		for _, c := range s.Categorical {
			if c.Column == column {
				require.Equal(t, dataset.MissingCategory, c.Values[len(c.Values)-1], "the level is appended")
				return int32(len(c.Values) - 1)
			}
		}
		t.Fatalf("no column %s", column)
		return 0
	}
	// categorical: workclass, marital-status, occupation, relationship, native-country
	assert.Equal(t, []int32{0, 2, 7, 1, 0}, d.Category[0], "Private, Never-married, Machine-op-inspct, Own-child, United-States")
	assert.Equal(t, []int32{missing("workclass"), 2, missing("occupation"), 1, 0}, d.Category[4], `"?" is the missing level`)
	assert.Equal(t, missing("native-country"), d.Category[6][4])

	// sensitive: age (banded), marital-status, sex, race
	assert.Equal(t, []string{"<30", "Never-married", "Male", "Black"}, d.Groups[0])
	assert.Equal(t, []string{"30-60", "Married-civ-spouse", "Female", "White"}, d.Groups[6])

	st, err := d.Stats().Standardization()
	require.NoError(t, err)
	e, err := dataset.NewEncoder(s, st)
	require.NoError(t, err)
	assert.Equal(t, 5+(8+1)+7+(14+1)+6+(41+1), e.Dim())
	assert.Contains(t, e.FeatureNames(), "occupation=<missing>")
}

func TestReadAdultErrorsNameLineAndColumn(t *testing.T) {
	s := adultSchema(t)
	tests := []struct {
		name       string
		line       string
		sentinel   error
		col        int
		columnName string
		never      string
	}{
		{"a label in neither list", "25, Private, 1, 11th, 7, Never-married, Sales, Own-child, Black, Male, 0, 0, 40, United-States, 50K", dataset.ErrBadLabel, 15, "income", ""},
		{"a missing age", "?, Private, 1, 11th, 7, Never-married, Sales, Own-child, Black, Male, 0, 0, 40, United-States, >50K", dataset.ErrMissingValue, 1, "age", "?"},
		{"a missing sex", "25, Private, 1, 11th, 7, Never-married, Sales, Own-child, Black, ?, 0, 0, 40, United-States, >50K", dataset.ErrMissingValue, 10, "sex", "?"},
		{"a shifted row", "25, Private, 11th, 7, Never-married, Sales, Own-child, Black, Male, 0, 0, 40, United-States, >50K", dataset.ErrBadRow, 0, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := dataset.ReadCSVFrom(context.Background(), strings.NewReader("|1x3 Cross validator\n"+tt.line+"\n"), "adult.test", s)
			require.ErrorIs(t, err, tt.sentinel)
			var ie *dataset.InputError
			require.ErrorAs(t, err, &ie)
			assert.Equal(t, "adult.test", ie.File)
			assert.Equal(t, 2, ie.Line)
			assert.Equal(t, tt.col, ie.Column)
			assert.Equal(t, tt.columnName, ie.ColumnName)
			if tt.never != "" {
				assert.NotContains(t, err.Error(), tt.never)
			}
		})
	}
}

func TestAdultSchemaFile(t *testing.T) {
	s := adultSchema(t)
	assert.Equal(t, "uci-adult", s.Name)
	assert.False(t, s.CSV.HasHeader())
	assert.Len(t, s.CSV.Columns, 15)
	assert.Equal(t, []string{">50K", ">50K."}, s.Label.Positives())
	assert.Equal(t, []string{"<=50K", "<=50K."}, s.Label.Negative)
	assert.False(t, s.Consent.Tracked)
	assert.ElementsMatch(t, []string{"fnlwgt", "education"}, s.Exclude)

	// Sex and race are audited, never model inputs; age and marital status are both.
	inputs := map[string]bool{}
	for _, sa := range s.Sensitive {
		inputs[sa.Column] = sa.ModelInput
	}
	assert.Equal(t, map[string]bool{"age": true, "marital-status": true, "sex": false, "race": false}, inputs)

	// Every numeric feature has public bounds, so a DP run needs no statistics.
	assert.Empty(t, s.Unbounded())
	std, err := s.PublicStandardization()
	require.NoError(t, err)
	for i, c := range s.Numeric {
		assert.Positive(t, std.Std[i], c)
	}
	assert.False(t, s.Imputes(), "no numeric feature of Adult has missing values: the stats keep their layout")
}
