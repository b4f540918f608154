package task_test

import (
	"errors"
	"math"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/release/modelfile"
	"github.com/fedprop/fedprop/task"
)

func TestKindString(t *testing.T) {
	cases := []struct {
		kind task.Kind
		want string
	}{
		{task.KindUnspecified, "unspecified"},
		{task.KindStats, "stats"},
		{task.KindTrain, "train"},
		{task.KindEvaluate, "evaluate"},
		{task.KindKeygen, "keygen"},
		{task.KindDecrypt, "decrypt"},
		{task.KindDecrypt + 1, "kind(6)"},
		{task.Kind(-1), "kind(-1)"},
	}
	for _, tc := range cases {
		t.Run(tc.want, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.kind.String())
		})
	}
}

// TestTrainVectorLayout: a train result is the count, a delta per weight, and the loss last.
func TestTrainVectorLayout(t *testing.T) {
	for _, dim := range []int{1, 2, 19} {
		n := task.TrainVectorLen(dim)
		assert.Equal(t, dim+2, n, "dim %d", dim)
		assert.Equal(t, 0, task.TrainCountIndex)
		assert.Equal(t, task.TrainCountIndex+1, task.TrainDeltaStart, "the deltas follow the count")
		assert.Equal(t, n-1, task.TrainDeltaStart+dim, "dim %d: one place left after the deltas, for the loss", dim)
	}
}

func TestVectorLenAndBytes(t *testing.T) {
	cases := []struct {
		name  string
		v     task.Vector
		len   int
		bytes int
	}{
		{"empty", task.Vector{}, 0, 0},
		{"dense", task.Vector{Plain: []float64{1, 2, 3}}, 3, 24},
		{"sparse: its length, 12 bytes an entry", task.Vector{Plain: []float64{1, 2}, Index: []uint32{3, 90}, Length: 100}, 100, 24},
		{"sparse and empty", task.Vector{Plain: []float64{}, Index: []uint32{}, Length: 100}, 100, 0},
		{"encrypted: its length, the ciphertext's bytes", task.Vector{Ciphertext: make([]byte, 5000), Length: 40}, 40, 5000},
		{"dense with a stray length", task.Vector{Plain: []float64{1}, Length: 9}, 1, 8},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.len, tc.v.Len())
			assert.Equal(t, tc.bytes, tc.v.Bytes())
		})
	}
}

func TestVectorCheckFinite(t *testing.T) {
	cases := []struct {
		name string
		v    task.Vector
		msg  string // "" passes
	}{
		{"finite", task.Vector{Plain: []float64{0, -1, math.MaxFloat64, math.SmallestNonzeroFloat64}}, ""},
		{"empty", task.Vector{}, ""},
		{"NaN", task.Vector{Plain: []float64{0, 1, math.NaN()}}, "value 2 is NaN"},
		{"+Inf", task.Vector{Plain: []float64{math.Inf(1)}}, "value 0 is +Inf"},
		{"-Inf before NaN: the first is reported", task.Vector{Plain: []float64{1, math.Inf(-1), math.NaN()}}, "value 1 is -Inf"},
		{"sparse: the position, not the entry", task.Vector{Plain: []float64{1, math.NaN()}, Index: []uint32{4, 70}, Length: 100}, "value 70 is NaN"},
		{"sparse with fewer indices than values", task.Vector{Plain: []float64{1, math.NaN()}, Index: []uint32{4}, Length: 100}, "value 1 is NaN"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.v.CheckFinite()
			if tc.msg == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Equal(t, tc.msg, err.Error())
		})
	}
}

func TestVectorAddTo(t *testing.T) {
	cases := []struct {
		name   string
		v      task.Vector
		want   []float64 // dst after, from {1, 1, 1, 1}
		sparse bool      // the error wraps ErrSparse
		msg    string    // "" adds
	}{
		{"dense", task.Vector{Plain: []float64{1, 2, 3, 4}}, []float64{2, 3, 4, 5}, false, ""},
		{"sparse: only the listed positions", task.Vector{Plain: []float64{5, 7}, Index: []uint32{0, 3}, Length: 4}, []float64{6, 1, 1, 8}, false, ""},
		{"sparse and empty", task.Vector{Plain: []float64{}, Index: []uint32{}, Length: 4}, []float64{1, 1, 1, 1}, false, ""},
		{"dense of another length", task.Vector{Plain: []float64{1, 2}}, nil, false, "length 2, want 4"},
		{"sparse of another length", task.Vector{Plain: []float64{1}, Index: []uint32{0}, Length: 5}, nil, false, "length 5, want 4"},
		{"encrypted", task.Vector{Ciphertext: []byte{1}, Length: 4}, nil, false, "an encrypted vector has no plaintext"},
		{"an index per value", task.Vector{Plain: []float64{1, 2}, Index: []uint32{0}, Length: 4}, nil, true, "1 indices for 2 values"},
		{"an index beyond the length", task.Vector{Plain: []float64{1, 2}, Index: []uint32{0, 4}, Length: 4}, nil, true, "index 4 (entry 1)"},
		{"the largest index", task.Vector{Plain: []float64{1}, Index: []uint32{math.MaxUint32}, Length: 4}, nil, true, "index 4294967295 (entry 0)"},
		{"indices out of order", task.Vector{Plain: []float64{1, 2}, Index: []uint32{2, 1}, Length: 4}, nil, true, "index 1 (entry 1)"},
		{"an index twice", task.Vector{Plain: []float64{1, 2}, Index: []uint32{2, 2}, Length: 4}, nil, true, "index 2 (entry 1)"},
		{"a bad index after good ones changes nothing", task.Vector{Plain: []float64{9, 9, 9}, Index: []uint32{0, 1, 7}, Length: 4}, nil, true, "index 7 (entry 2)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dst := []float64{1, 1, 1, 1}
			err := tc.v.AddTo(dst)
			if tc.msg == "" {
				require.NoError(t, err)
				assert.Equal(t, tc.want, dst)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.msg)
			assert.Equal(t, tc.sparse, errors.Is(err, task.ErrSparse), "ErrSparse: %v", err)
			assert.Equal(t, []float64{1, 1, 1, 1}, dst, "a refused vector leaves dst unchanged")
		})
	}
}

// FuzzVectorAddTo: a sparse vector from the network is added only when its indices fit, and
// then exactly as its dense form would be; otherwise dst is untouched.
func FuzzVectorAddTo(f *testing.F) {
	f.Add([]byte{0, 3}, 4, 5)
	f.Add([]byte{2, 1}, 4, 2)
	f.Add([]byte{0, 0}, 1, 1)
	f.Add([]byte{}, 0, 0)
	f.Fuzz(func(t *testing.T, index []byte, length, values int) {
		if length < 0 || length > 1<<12 || values < 0 || values > 1<<8 || len(index) > 1<<8 {
			return
		}
		v := task.Vector{Index: make([]uint32, len(index)), Plain: make([]float64, values), Length: length}
		for k, b := range index {
			v.Index[k] = uint32(b)
		}
		for k := range v.Plain {
			v.Plain[k] = float64(k + 1)
		}
		dst := make([]float64, length)
		err := v.AddTo(dst)
		if err != nil {
			for i, x := range dst {
				if x != 0 {
					t.Fatalf("refused (%v), yet dst[%d] = %v", err, i, x)
				}
			}
			return
		}
		if len(index) != values {
			t.Fatalf("%d indices for %d values added", len(index), values)
		}
		want := make([]float64, length)
		for k, i := range v.Index {
			if k > 0 && i <= v.Index[k-1] {
				t.Fatalf("indices %v out of order added", v.Index)
			}
			want[i] = v.Plain[k]
		}
		assert.Equal(t, want, dst)
	})
}

// tinySchema is a schema as a file states it; variants below restate or change it.
const tinySchema = `name: tiny
label:
  column: y
  positive: "1"
  negative: ["0"]
numeric: [x, z]
categorical:
  - column: segment
    values: [retail, private]
consent:
  tracked: false
`

// tinySchemaHash pins SchemaHash of tinySchema. Every participant of a run compares hashes,
// so a change to how a schema is hashed (a new field of dataset.Schema without omitempty, a
// renamed one) makes clients of the old and the new version refuse each other's runs: if
// this fails, that change needs a decision, not a new constant.
const tinySchemaHash = "a673700113daaac19626c7a5360fe376f1b9ddf96baff63cbfa12ed1d32379b6"

func parseSchema(t *testing.T, doc string) *dataset.Schema {
	t.Helper()
	s, err := dataset.ParseSchema("schema.yaml", []byte(doc))
	require.NoError(t, err)
	return s
}

func TestSchemaHash(t *testing.T) {
	replace := func(old, new string) string {
		require.Contains(t, tinySchema, old)
		return strings.Replace(tinySchema, old, new, 1)
	}
	base := task.SchemaHash(parseSchema(t, tinySchema))
	assert.Regexp(t, regexp.MustCompile(`^[0-9a-f]{64}$`), base, "hex SHA-256")
	assert.Equal(t, tinySchemaHash, base)

	cases := []struct {
		name string
		doc  string
		same bool
	}{
		{"comments, flow style and another key order", `# the tiny schema
consent: {tracked: false}
numeric:
  - x   # first input
  - z
label: {negative: ['0'], positive: '1', column: "y"}
name: "tiny"
categorical: [{values: [retail, private], column: segment}]
`, true},
		{"the defaults stated", `name: tiny
csv: {delimiter: ",", quote: '"'}
label: {column: y, positive: "1", negative: ["0"]}
numeric: [x, z]
categorical: [{column: segment, values: [retail, private], unseen: error}]
consent: {tracked: false, purpose: propensity-modeling}
bounds: {}
`, true},
		{"empty lists stated", tinySchema + "exclude: []\nsensitive: []\n", true},
		{"another name", replace("name: tiny", "name: tiny2"), false},
		{"the numeric features in another order", replace("[x, z]", "[z, x]"), false},
		{"another numeric feature", replace("[x, z]", "[x, z, w]"), false},
		{"another positive label", replace(`positive: "1"`, `positive: "yes"`), false},
		{"another vocabulary order", replace("[retail, private]", "[private, retail]"), false},
		{"a column excluded", tinySchema + "exclude: [id]\n", false},
		{"another delimiter", tinySchema + "csv: {delimiter: \";\"}\n", false},
		{"bounds on a feature", tinySchema + "bounds: {x: [0, 10]}\n", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := task.SchemaHash(parseSchema(t, tc.doc))
			if tc.same {
				assert.Equal(t, base, got, "the same content")
			} else {
				assert.NotEqual(t, base, got, "other content")
			}
		})
	}

	s := parseSchema(t, tinySchema)
	s.Bounds = map[string][]float64{}
	assert.Equal(t, base, task.SchemaHash(s), "no bounds hash as they did before bounds existed")
	s.Exclude = []string{}
	assert.Equal(t, base, task.SchemaHash(s))
	assert.NotNil(t, s.Exclude, "the hashed schema is left as it was")
}

func TestModelDocument(t *testing.T) {
	s := parseSchema(t, tinySchema)
	enc := task.Encoding{SchemaHash: task.SchemaHash(s), Mean: []float64{1, 2}, Std: []float64{3, 4}}
	encoder, err := dataset.NewEncoder(s, dataset.Standardization{Mean: enc.Mean, Std: enc.Std})
	require.NoError(t, err)
	features := encoder.FeatureNames()
	weights := []float64{-1, 0.5, 0.25, 2, -2}
	require.Len(t, weights, len(features)+1)

	doc := task.ModelDocument(s, enc, features, weights)
	require.NoError(t, doc.Validate())
	assert.Equal(t, modelfile.Format, doc.Format)
	assert.Equal(t, -1.0, doc.Intercept)
	assert.Equal(t, []float64{0.5, 0.25, 2, -2}, doc.Coefficients)
	assert.Equal(t, weights, doc.Weights(), "the weights come back in model order")
	assert.Equal(t, features, doc.Features)
	assert.Equal(t, dataset.Standardization{Mean: []float64{1, 2}, Std: []float64{3, 4}}, doc.Standardization)
	assert.Same(t, s, doc.Schema)

	short := task.ModelDocument(s, enc, features, weights[:3])
	assert.Error(t, short.Validate(), "weights that do not fit the features do not validate")
}
