package sim

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/fedprop/fedprop/task"
)

// TestBranchClientsNeverFail: in a cross-device federation the failure model applies to the
// app clients only; the branches, which hold the committee's key shares, always answer.
func TestBranchClientsNeverFail(t *testing.T) {
	cfg := Config{Seed: 7, Failures: FailureConfig{Dropout: 0.9, Straggler: StragglerConfig{MedianTicks: 2, Sigma: 1},
		JoinLate: Cohort{Fraction: 0.9, Round: 5}, Leave: Cohort{Fraction: 0.9, Round: 2}}}
	reliable := []bool{true, true, false, false, false, false}
	fm := newFailureModel(cfg, reliable)
	failed := map[bool]int{}
	for round := range 10 {
		for i, r := range reliable {
			f := fm.fate(i, task.Task{Seed: uint64(round*100 + i)})
			if f.drop || f.delay > 0 || !fm.joins(i, 0) || fm.gone(i, round) {
				failed[r]++
			}
		}
	}
	assert.Zero(t, failed[true], "branches never drop, straggle, join late or leave")
	assert.Positive(t, failed[false], "app clients do")
}
