package gbdt_test

import (
	"errors"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/model/gbdt"
)

func TestDefaultParamsAreValid(t *testing.T) {
	require.NoError(t, gbdt.DefaultParams().Validate())
}

func TestValidateNamesTheSetting(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*gbdt.Params)
		key    string
	}{
		{"no trees", func(p *gbdt.Params) { p.Trees = 0 }, "trees"},
		{"too many trees", func(p *gbdt.Params) { p.Trees = gbdt.MaxTrees + 1 }, "trees"},
		{"depth 0", func(p *gbdt.Params) { p.MaxDepth = 0 }, "max_depth"},
		{"too deep", func(p *gbdt.Params) { p.MaxDepth = gbdt.MaxDepthCap + 1 }, "max_depth"},
		{"learning rate 0", func(p *gbdt.Params) { p.LearningRate = 0 }, "learning_rate"},
		{"learning rate above 1", func(p *gbdt.Params) { p.LearningRate = 1.5 }, "learning_rate"},
		{"learning rate NaN", func(p *gbdt.Params) { p.LearningRate = math.NaN() }, "learning_rate"},
		{"negative lambda", func(p *gbdt.Params) { p.Lambda = -1 }, "lambda"},
		{"infinite lambda", func(p *gbdt.Params) { p.Lambda = math.Inf(1) }, "lambda"},
		{"negative min child weight", func(p *gbdt.Params) { p.MinChildWeight = -0.1 }, "min_child_weight"},
		{"NaN gamma", func(p *gbdt.Params) { p.Gamma = math.NaN() }, "gamma"},
		{"one bin", func(p *gbdt.Params) { p.Bins = 1 }, "bins"},
		{"more bins than grid cells", func(p *gbdt.Params) { p.Bins = gbdt.GridCells + 1 }, "bins"},
		{"subsample 0", func(p *gbdt.Params) { p.Subsample = 0 }, "subsample"},
		{"colsample above 1", func(p *gbdt.Params) { p.Colsample = 1.01 }, "colsample"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := gbdt.DefaultParams()
			tt.mutate(&p)
			err := p.Validate()
			require.ErrorIs(t, err, gbdt.ErrInvalidParams)
			var pe *gbdt.ParamError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, tt.key, pe.Key)
			assert.Contains(t, err.Error(), tt.key)
		})
	}
}

func TestValidateReportsEverySetting(t *testing.T) {
	err := gbdt.Params{}.Validate()
	var keys []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var pe *gbdt.ParamError
		require.True(t, errors.As(e, &pe))
		keys = append(keys, pe.Key)
	}
	// Lambda, MinChildWeight and Gamma may be 0.
	assert.Equal(t, []string{"trees", "max_depth", "learning_rate", "bins", "subsample", "colsample"}, keys)
}
