package task_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/model/gbdt"
	"github.com/fedprop/fedprop/task"
)

// TestDecodeGBDTSpecRefusesWhatAClientCannotTrust: a tree step from the wire is decoded with
// its model validated; unknown fields, trailing data, invalid parameters and an inconsistent
// model are refused with ErrInvalid.
func TestDecodeGBDTSpecRefusesWhatAClientCannotTrust(t *testing.T) {
	good := task.GBDTSpec{Step: task.GBDTSketch, Params: gbdt.DefaultParams()}
	b, err := json.Marshal(good)
	require.NoError(t, err)
	got, err := task.DecodeGBDTSpec(b)
	require.NoError(t, err)
	assert.Equal(t, good, *got)
	pb, err := json.Marshal(gbdt.DefaultParams())
	require.NoError(t, err)
	params := string(pb)
	later := `{"step":2,"params":` + params + `,"levels":[[{"node":0,"left":1,"right":2}]],"nodes":[1],"model_sha256":"` + strings.Repeat("ab", 32) + `"}`
	got, err = task.DecodeGBDTSpec([]byte(later))
	require.NoError(t, err, "a later level names its model by digest")
	assert.Nil(t, got.Model)

	for name, doc := range map[string]string{
		"unknown field":                         `{"step":1,"params":{"trees":1,"max_depth":1,"learning_rate":0.1,"lambda":1,"min_child_weight":1,"bins":2,"subsample":1,"colsample":1},"extra":1}`,
		"trailing data":                         string(b) + `{}`,
		"bad parameters":                        `{"step":1,"params":{"trees":0}}`,
		"malformed model":                       `{"step":2,"params":{"trees":1,"max_depth":1,"learning_rate":0.1,"lambda":1,"min_child_weight":1,"bins":2,"subsample":1,"colsample":1},"model":{"format":"x"}}`,
		"not json":                              `{`,
		"a first level without its model":       `{"step":2,"params":` + params + `,"nodes":[0]}`,
		"a later level naming no model":         `{"step":2,"params":` + params + `,"levels":[[{"node":0,"left":1,"right":2}]],"nodes":[1]}`,
		"a later level naming a malformed hash": `{"step":2,"params":` + params + `,"levels":[[{"node":0,"left":1,"right":2}]],"nodes":[1],"model_sha256":"ABC"}`,
	} {
		_, err := task.DecodeGBDTSpec([]byte(doc))
		assert.ErrorIs(t, err, task.ErrInvalid, name)
	}
}

func FuzzDecodeGBDTSpec(f *testing.F) {
	b, _ := json.Marshal(task.GBDTSpec{Step: task.GBDTSketch, Params: gbdt.DefaultParams()})
	f.Add(b)
	f.Add([]byte(`{"step":2,"params":{},"model":null,"levels":[[{"node":0}]],"nodes":[1,2]}`))
	f.Add([]byte(`{"step":2,"params":{},"levels":[[{"node":0,"left":1,"right":2}]],"nodes":[1],"model_sha256":"` + strings.Repeat("0f", 32) + `"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := task.DecodeGBDTSpec(data)
		if err != nil {
			return
		}
		if _, err := task.GBDTResultLen(s, 3); err != nil {
			return
		}
	})
}
