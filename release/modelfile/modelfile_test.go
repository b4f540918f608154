package modelfile_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/metrics"
	"github.com/fedprop/fedprop/model/logreg"
	"github.com/fedprop/fedprop/release/modelfile"
)

const schemaYAML = `name: small
label: {column: y, positive: "1", negative: ["0"]}
numeric: [income, age]
categorical: [{column: segment, values: [retail, private], unseen: other}]
consent: {tracked: false}
`

// document is a complete model document over schemaYAML: every section filled, as a
// coordinator writes one for a differentially private, securely aggregated run.
func document(t testing.TB) *modelfile.Document {
	t.Helper()
	s, err := dataset.ParseSchema("small.yaml", []byte(schemaYAML))
	require.NoError(t, err)
	std := dataset.Standardization{Mean: []float64{45000, 40}, Std: []float64{20000, 12}}
	enc, err := dataset.NewEncoder(s, std)
	require.NoError(t, err)
	return &modelfile.Document{
		Format: modelfile.Format, Version: 7, RunID: "run-1", Round: 12,
		Created:   time.Date(2025, 6, 1, 12, 30, 0, 0, time.UTC),
		Intercept: -1.25, Coefficients: []float64{0.5, -0.125, 1, -1, 0.1}, Features: enc.FeatureNames(),
		Schema: s, Standardization: std,
		Metrics:   &metrics.Summary{N: 500, AUC: 0.81, LogLoss: 0.33, Accuracy: 0.9, Brier: 0.08},
		TrainLoss: 0.31, Contributors: 5, Examples: 12345,
		ConsentTracked: true, ExcludedNoConsent: 42,
		Privacy: &modelfile.Privacy{
			Mechanism: "client", NoiseMultiplier: 1.1, ClipNorm: 0.5, ClipSchedule: []float64{0.5, 0.4},
			SamplingRate: 1, Steps: 12, EvaluationNoiseMultiplier: 2, EvaluationNoiseStd: 3.5,
			Epsilon: 2.5, Delta: 1e-6, Conversion: "pld", Budget: 4,
			Releases: []modelfile.Release{
				{Kind: modelfile.ReleaseStatistics, Mechanism: modelfile.MechanismPublicBounds},
				{Kind: modelfile.ReleaseTrain, Round: 1, Mechanism: modelfile.MechanismGaussian, NoiseMultiplier: 1.1, SamplingRate: 1, Steps: 1, Epsilon: 0.2, Cumulative: 0.2},
			},
		},
		SecureAggregation: modelfile.SecureAggregation{Mode: "he", CommitteeSize: 5, Threshold: 3, MinContributors: 3, Parameters: "N=2^13"},
	}
}

func encode(t testing.TB, d *modelfile.Document) []byte {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, d.Write(&buf))
	return buf.Bytes()
}

func TestDocumentRoundTrips(t *testing.T) {
	cases := []struct {
		name string
		edit func(d *modelfile.Document)
	}{
		{"every section", func(*modelfile.Document) {}},
		{"no privacy, no metrics, plaintext sums", func(d *modelfile.Document) {
			d.Privacy, d.Metrics, d.SecureAggregation = nil, nil, modelfile.SecureAggregation{Mode: "none"}
		}},
		{"extreme weights", func(d *modelfile.Document) {
			d.Intercept = math.SmallestNonzeroFloat64
			d.Coefficients = []float64{math.MaxFloat64, -math.MaxFloat64, 1e-300, 0.1 + 0.2, -0}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := document(t)
			tc.edit(want)
			got, err := modelfile.Decode(bytes.NewReader(encode(t, want)), "model.json")
			require.NoError(t, err)
			assert.Equal(t, want, got, "every field, every float bit for bit")
			assert.Equal(t, encode(t, want), encode(t, got), "and the same bytes again")
		})
	}
}

func TestDocumentWriteIsIndentedJSON(t *testing.T) {
	raw := encode(t, document(t))
	assert.True(t, json.Valid(raw))
	assert.True(t, strings.HasPrefix(string(raw), "{\n  \"format\": \"fedprop.model/v1\",\n  \"version\": 7,"), "%.60s", raw)
	assert.True(t, strings.HasSuffix(string(raw), "}\n"))
	var fields map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(raw, &fields))
	for _, key := range []string{"format", "version", "run_id", "round", "created", "intercept", "coefficients", "features", "schema",
		"standardization", "metrics", "train_loss", "contributors", "examples", "consent_tracked", "excluded_no_consent", "privacy", "secure_aggregation"} {
		assert.Contains(t, fields, key, "the documented key")
	}
	doc := document(t)
	doc.Privacy, doc.Metrics = nil, nil
	raw = encode(t, doc)
	assert.NotContains(t, string(raw), `"privacy"`, "a run without DP says nothing of privacy")
	assert.NotContains(t, string(raw), `"metrics"`)
}

// TestDecodeRefusesMalformedDocuments: what Decode refuses, with the typed error where the
// layer below has one (encoding/json, io, dataset.ErrInvalidSchema) and the words naming the
// problem, always prefixed by the document's name.
func TestDecodeRefusesMalformedDocuments(t *testing.T) {
	valid := string(encode(t, document(t)))
	edit := func(old, new string) string {
		require.Contains(t, valid, old)
		return strings.Replace(valid, old, new, 1)
	}
	doc := document(t)
	doc.Schema = nil
	noSchema := string(encode(t, doc))
	var syntax *json.SyntaxError
	var wrongType *json.UnmarshalTypeError
	cases := []struct {
		name string
		doc  string
		as   any   // a pointer to the error type the error must be, or nil
		is   error // a sentinel the error must wrap, or nil
		msg  string
	}{
		{"empty", "", nil, io.EOF, "EOF"},
		{"truncated", valid[:len(valid)/2], nil, io.ErrUnexpectedEOF, "unexpected EOF"},
		{"not JSON", "model: yes\n", &syntax, nil, "invalid character"},
		{"a JSON array", "[1, 2]", &wrongType, nil, "cannot unmarshal array"},
		{"a string for a number", edit(`"version": 7`, `"version": "7"`), &wrongType, nil, "version"},
		{"a negative version", edit(`"version": 7`, `"version": -7`), &wrongType, nil, "version"},
		{"a number beyond float64", edit(`"intercept": -1.25`, `"intercept": 1e400`), &wrongType, nil, "intercept"},
		{"an unknown field", edit(`"version": 7,`, `"version": 7, "weights": [1],`), nil, nil, `unknown field "weights"`},
		{"another format", edit(`"fedprop.model/v1"`, `"fedprop.model/v2"`), nil, nil, `format "fedprop.model/v2" is not "fedprop.model/v1"`},
		{"no format", edit(`"format": "fedprop.model/v1",`, ``), nil, nil, `format "" is not`},
		{"no schema", noSchema, nil, nil, "model document has no schema"},
		{"a coefficient short", edit(`"coefficients": [
    0.5,`, `"coefficients": [`), nil, nil, "4 coefficients for 5 features"},
		{"a schema that does not validate", edit(`"numeric": [
      "income",
      "age"
    ]`, `"numeric": [
      "income",
      "income"
    ]`), nil, dataset.ErrInvalidSchema, "income"},
		{"a standardization that does not fit", edit(`"std": [
      20000,
      12
    ]`, `"std": [
      20000
    ]`), nil, nil, "standardization has 2 means and 1 stds for 2 numeric features"},
		{"a second document after it", valid + valid, nil, modelfile.ErrInvalidDocument, "data after the document"},
		{"trailing garbage", valid + "x", nil, modelfile.ErrInvalidDocument, "data after the document"},
		{"larger than the limit", valid[:len(valid)-2] + `, "pad": "` + strings.Repeat("a", modelfile.MaxDocumentBytes) + `"}`, nil, modelfile.ErrInvalidDocument, "larger than"},
		{"a zero std", edit(`"std": [
      20000,
      12
    ]`, `"std": [
      20000,
      0
    ]`), nil, nil, `feature "age" has mean 40 and std 0`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := modelfile.Decode(strings.NewReader(tc.doc), "m.json")
			require.Error(t, err)
			assert.Nil(t, d)
			assert.True(t, strings.HasPrefix(err.Error(), "read model m.json: "), err.Error())
			assert.Contains(t, err.Error(), tc.msg)
			if tc.as != nil {
				assert.ErrorAs(t, err, tc.as)
			}
			if tc.is != nil {
				assert.ErrorIs(t, err, tc.is)
			}
		})
	}

}

func TestValidate(t *testing.T) {
	cases := []struct {
		name string
		edit func(d *modelfile.Document)
		msg  string // "" validates
	}{
		{"complete", func(*modelfile.Document) {}, ""},
		{"another format", func(d *modelfile.Document) { d.Format = "fedprop.model/v0" }, `format "fedprop.model/v0"`},
		{"no schema", func(d *modelfile.Document) { d.Schema = nil }, "no schema"},
		{"a feature short", func(d *modelfile.Document) { d.Features = d.Features[1:] }, "5 coefficients for 4 features"},
		{"a feature too many for the schema", func(d *modelfile.Document) {
			d.Features = append(d.Features, "extra")
			d.Coefficients = append(d.Coefficients, 0)
		}, "the weights have 6"},
		{"a std that is NaN", func(d *modelfile.Document) { d.Standardization.Std[0] = math.NaN() }, `feature "income"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := document(t)
			tc.edit(d)
			err := d.Validate()
			if tc.msg == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
}

func TestWeightsAndScore(t *testing.T) {
	d := document(t)
	assert.Equal(t, []float64{-1.25, 0.5, -0.125, 1, -1, 0.1}, d.Weights(), "the intercept, then the coefficients")
	w := d.Weights()
	w[0] = 99
	assert.Equal(t, -1.25, d.Intercept, "Weights is a copy")

	b := dataset.NewBuilder(d.Schema, "score", 3)
	b.Append([]float64{45000, 40}, []int32{0}, nil, 1, 2) // the mean customer, retail
	b.Append([]float64{65000, 28}, []int32{1}, nil, 0, 3) // one std richer, one younger, private
	b.Append([]float64{45000, 40}, []int32{2}, nil, 0, 4) // an unseen segment: the other bucket
	ds := b.Finish()
	scores, err := d.Score(ds)
	require.NoError(t, err)
	sigmoid := func(z float64) float64 { return 1 / (1 + math.Exp(-z)) }
	want := []float64{sigmoid(-1.25 + 1), sigmoid(-1.25 + 0.5 + 0.125 - 1), sigmoid(-1.25 + 0.1)}
	require.Len(t, scores, 3)
	for i := range want {
		assert.InDelta(t, want[i], scores[i], 1e-12, "row %d", i)
	}
	enc, err := d.Encoder()
	require.NoError(t, err)
	assert.Equal(t, logreg.PredictAll(d.Weights(), enc.Encode(ds), nil), scores, "as package model predicts")

	empty, err := d.Score(dataset.NewBuilder(d.Schema, "none", 0).Finish())
	require.NoError(t, err)
	assert.Empty(t, empty)
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.json")
	require.NoError(t, os.WriteFile(path, encode(t, document(t)), 0o600))
	d, err := modelfile.Load(path)
	require.NoError(t, err)
	assert.Equal(t, document(t), d)

	_, err = modelfile.Load(filepath.Join(dir, "missing.json"))
	require.ErrorIs(t, err, fs.ErrNotExist)
	assert.Contains(t, err.Error(), "missing.json")

	bad := filepath.Join(dir, "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte("{}"), 0o600))
	_, err = modelfile.Load(bad)
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), "read model "+bad+": "), "the path names the document: %v", err)
	assert.False(t, errors.Is(err, fs.ErrNotExist))
}

// FuzzDecode: Decode takes a document from the network or a file. No input panics it, and a
// document it accepts validates, has an encoder that fits its weights, and is a fixed point
// of writing and decoding again.
func FuzzDecode(f *testing.F) {
	valid := encode(f, document(f))
	f.Add(valid)
	plain := document(f)
	plain.Privacy, plain.Metrics = nil, nil
	f.Add(encode(f, plain))
	f.Add([]byte(`{"format":"fedprop.model/v1","schema":{}}`))
	f.Add([]byte(`{"format":"fedprop.model/v1","coefficients":[1],"features":["x"],"schema":{"Name":"s","Label":{"Column":"y","Positive":"1","Negative":["0"]},"Numeric":["x"]},"standardization":{"Mean":[0],"Std":[1]}}`))
	// Keys match whatever their case, trailing bytes are not read, and "metrics": {} is all
	// nulls, read as NaN: found by this target, when it compared values.
	f.Add([]byte(`{"formAt": "fedprop.model/v1","CoeffiCients": [0,0,0,0,0],"feAtures": ["","","","",""],"sChemA": {"LABel": {"Column": "0","Positive": "1","NegAtive": ["0"]},"NumeriC": ["1","2"],"CAtegoriCAl": [{"Column": "7","VAlues": ["","0"],"Unseen": "other"}]},"stAndArdiZAtion": {"MeAn": [0,0],"Std": [1,1]},"metriCs":{}}0`))
	f.Add([]byte(`[]`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := modelfile.Decode(bytes.NewReader(data), "fuzz")
		if err != nil {
			if d != nil {
				t.Fatal("a document and an error")
			}
			return
		}
		if err := d.Validate(); err != nil {
			t.Fatalf("accepted a document that does not validate: %v", err)
		}
		enc, err := d.Encoder()
		if err != nil {
			t.Fatalf("accepted a document without an encoder: %v", err)
		}
		if enc.Dim() != len(d.Weights())-1 {
			t.Fatalf("encoder of %d inputs for %d weights", enc.Dim(), len(d.Weights()))
		}
		var first, second bytes.Buffer
		if err := d.Write(&first); err != nil {
			t.Fatalf("an accepted document does not encode: %v", err)
		}
		again, err := modelfile.Decode(bytes.NewReader(first.Bytes()), "again")
		if err != nil {
			t.Fatalf("an accepted document, written, is refused: %v", err)
		}
		// Bytes, not values: a metric read as null is NaN, which equals nothing.
		if err := again.Write(&second); err != nil || !bytes.Equal(first.Bytes(), second.Bytes()) {
			t.Fatalf("written twice, the document changed (%v):\n%s\n%s", err, first.Bytes(), second.Bytes())
		}
	})
}
