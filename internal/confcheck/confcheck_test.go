package confcheck_test

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/fedprop/fedprop/internal/confcheck"
)

type inner struct {
	Rate   float64            `yaml:"rate"`
	Bands  []float64          `yaml:"bands"`
	Limits map[string]float64 `yaml:"limits"`
}

type embedded struct {
	Share float64 `yaml:"share"`
}

type config struct {
	Tick     time.Duration `yaml:"tick"`
	Fraction float64       `yaml:"cohort_fraction"`
	Run      inner         `yaml:"run"`
	Policy   *inner        `yaml:"policy"`
	embedded `yaml:",inline"`
	Skipped  float64 `yaml:"-"`
	Untagged float32
	hidden   float64
}

func TestFloatsNamesEveryNonFiniteKey(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	tests := []struct {
		name string
		cfg  config
		want []string
	}{
		{"all finite", config{Fraction: 0.5, Run: inner{Rate: 1, Bands: []float64{1, 2}}}, nil},
		{"top-level NaN", config{Fraction: nan}, []string{"cohort_fraction: must be a finite number, got NaN"}},
		{"nested, listed and mapped", config{Run: inner{Rate: inf, Bands: []float64{1, nan}, Limits: map[string]float64{"gap": -inf}}},
			[]string{"run.rate: must be a finite number, got +Inf", "run.bands[1]: must be a finite number, got NaN", "run.limits.gap: must be a finite number, got -Inf"}},
		{"through a pointer", config{Policy: &inner{Rate: nan}}, []string{"policy.rate: must be a finite number, got NaN"}},
		{"inlined", config{embedded: embedded{Share: nan}}, []string{"share: must be a finite number, got NaN"}},
		{"untagged float32", config{Untagged: float32(math.Inf(-1))}, []string{"untagged: must be a finite number, got -Inf"}},
		{"skipped and unexported fields are not keys", config{Skipped: nan, hidden: nan}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, err := range confcheck.Floats("", tt.cfg) {
				got = append(got, err.Error())
			}
			assert.ElementsMatch(t, tt.want, got)
		})
	}
	errs := confcheck.Floats("run", &inner{Rate: nan})
	if assert.Len(t, errs, 1) {
		assert.EqualError(t, errs[0], "run.rate: must be a finite number, got NaN", "the prefix names the section")
	}
}

func TestDurationsMustBePositive(t *testing.T) {
	tests := []struct {
		name string
		tick time.Duration
		want []string
	}{
		{"positive", time.Second, nil},
		{"negative", -time.Second, []string{"tick: must be a positive duration, got -1s"}},
		{"zero", 0, []string{"tick: must be a positive duration, got 0s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, err := range confcheck.Durations("", config{Tick: tt.tick}) {
				got = append(got, err.Error())
			}
			assert.Equal(t, tt.want, got)
			assert.Empty(t, confcheck.Floats("", config{Tick: tt.tick}), "a duration is not a float")
		})
	}
}
