package modelfile_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/release/modelfile"
)

// legacySchemaYAML uses every schema key of more than one word, the keys a Go field name
// spells otherwise than snake_case. testdata/model-go-names.json is a document over it,
// written by fedprop before model.json's schema had snake_case keys.
const legacySchemaYAML = `name: legacy
csv: {skip_lines: 1, trim_space: true}
label: {column: y, positive: ["1", "yes"], negative: ["0"]}
numeric: [income, age]
categorical: [{column: segment, values: [retail, private], unseen: other}]
consent: {tracked: true, column: consent, purpose: marketing, grants: ["Y"]}
sensitive: [{column: age, model_input: true, bands: [30, 60]}]
`

var snakeKey = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// objectKeys collects every object key in a decoded JSON value, with its path.
func objectKeys(path string, v any, out map[string]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			out[path+"."+k] = k
			objectKeys(path+"."+k, e, out)
		}
	case []any:
		for i, e := range v {
			objectKeys(fmt.Sprintf("%s[%d]", path, i), e, out)
		}
	}
}

// TestEmbeddedSchemaHasSnakeCaseKeys: model.json spells the schema and the standardization
// with snake_case keys, like the rest of the document and like the schema file, not with Go
// field names.
func TestEmbeddedSchemaHasSnakeCaseKeys(t *testing.T) {
	s, err := dataset.ParseSchema("legacy.yaml", []byte(legacySchemaYAML))
	require.NoError(t, err)
	doc := document(t)
	doc.Schema = s
	doc.Features = []string{"income", "age", "segment=retail", "segment=private", "segment=<other>"}
	require.NoError(t, doc.Validate())

	var tree map[string]any
	require.NoError(t, json.Unmarshal(encode(t, doc), &tree))
	keys := map[string]string{}
	objectKeys("", tree, keys)
	for path, key := range keys {
		assert.Regexp(t, snakeKey, key, "key %s", path)
	}
	for _, path := range []string{".schema.name", ".schema.csv", ".schema.csv.skip_lines", ".schema.csv.trim_space",
		".schema.label.positive_aliases", ".schema.categorical[0].values", ".schema.consent.grants",
		".schema.sensitive[0].model_input", ".standardization.mean", ".standardization.std"} {
		assert.Contains(t, keys, path)
	}
}

// TestEveryFieldOfTheSchemaRoundTrips fills every field of dataset.Schema and
// dataset.Standardization, including any added after this test: each one is written under a
// snake_case key and read back as it was.
func TestEveryFieldOfTheSchemaRoundTrips(t *testing.T) {
	var n int
	var s dataset.Schema
	fill(reflect.ValueOf(&s).Elem(), &n)
	var std dataset.Standardization
	fill(reflect.ValueOf(&std).Elem(), &n)
	want := &modelfile.Document{Format: modelfile.Format, Schema: &s, Standardization: std, Created: time.Unix(0, 0).UTC()}

	raw, err := json.Marshal(want)
	require.NoError(t, err)
	var tree map[string]any
	require.NoError(t, json.Unmarshal(raw, &tree))
	keys := map[string]string{}
	objectKeys("", tree, keys)
	for path, key := range keys {
		assert.Regexp(t, snakeKey, key, "key %s", path)
	}

	var got modelfile.Document
	require.NoError(t, json.Unmarshal(raw, &got))
	assert.Equal(t, want, &got)
}

// fill sets every exported field reachable from v to a value that is not its zero: strings,
// numbers and map keys distinct, one element in every list and map.
func fill(v reflect.Value, n *int) {
	*n++
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), n)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), n)
			}
		}
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		fill(s.Index(0), n)
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k, n)
		fill(e, n)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.String:
		v.SetString(fmt.Sprintf("v%d", *n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(*n))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(*n))
	case reflect.Float32, reflect.Float64:
		v.SetFloat(float64(*n) + 0.25)
	}
}

// TestDecodeReadsDocumentsWithGoNames: a model.json written before the schema's keys were
// snake_case (testdata/model-go-names.json: "Name", "CSV", "SkipLines", "Mean") still
// decodes, to the same document, and is written back in the new spelling.
func TestDecodeReadsDocumentsWithGoNames(t *testing.T) {
	old, err := os.ReadFile("testdata/model-go-names.json")
	require.NoError(t, err)
	require.Contains(t, string(old), `"SkipLines": 1`, "the fixture has the Go names")

	got, err := modelfile.Decode(bytes.NewReader(old), "model-go-names.json")
	require.NoError(t, err)
	want, err := dataset.ParseSchema("legacy.yaml", []byte(legacySchemaYAML))
	require.NoError(t, err)
	assert.Equal(t, want, got.Schema)
	assert.Equal(t, dataset.Standardization{Mean: []float64{45000, 40}, Std: []float64{20000, 12}}, got.Standardization)
	assert.Equal(t, 1, got.Schema.CSV.SkipLines)
	assert.Equal(t, []string{"yes"}, got.Schema.Label.PositiveAliases)
	assert.True(t, got.Schema.Sensitive[0].ModelInput)

	rewritten := encode(t, got)
	assert.NotContains(t, string(rewritten), `"SkipLines"`)
	assert.Contains(t, string(rewritten), `"skip_lines": 1`)
	again, err := modelfile.Decode(bytes.NewReader(rewritten), "model.json")
	require.NoError(t, err)
	assert.Equal(t, got, again)
}

// TestDecodeRefusesUnknownSchemaKeys: a key that is neither spelling of a field is refused,
// inside the schema as at the top.
func TestDecodeRefusesUnknownSchemaKeys(t *testing.T) {
	valid := string(encode(t, document(t)))
	for _, tc := range []struct{ old, new, key string }{
		{`"name": "small"`, `"name": "small", "nmae": "x"`, "nmae"},
		{`"mean": [`, `"means": [0], "mean": [`, "means"},
	} {
		_, err := modelfile.Decode(bytes.NewReader([]byte(replaceOnce(t, valid, tc.old, tc.new))), "m.json")
		require.Error(t, err)
		assert.Contains(t, err.Error(), `unknown field "`+tc.key+`"`)
	}
}

func replaceOnce(t *testing.T, s, old, new string) string {
	t.Helper()
	i := bytes.Index([]byte(s), []byte(old))
	require.GreaterOrEqual(t, i, 0, old)
	return s[:i] + new + s[i+len(old):]
}
