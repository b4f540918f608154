package coordinator_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/task"
)

// minRecordsConfig is tinyConfig with min_records_plaintext set (nil: unset) in the given
// secure-aggregation mode.
func minRecordsConfig(mode string, least *int) coordinator.RunConfig {
	rc := tinyConfig()
	rc.MinRecordsPlaintext = least
	if mode == coordinator.SecAggHE {
		rc.SecureAggregation = coordinator.SecureAggregationConfig{Mode: coordinator.SecAggHE, Committee: []string{"m1", "m2", "m3"},
			Threshold: 2, MinContributors: 2}
	}
	return rc.WithDefaults()
}

func intPtr(n int) *int { return &n }

// TestPlaintextRunRefusesSmallClients: a coordinator that aggregates in plaintext reads each
// client's own sums, so it refuses the registration of a client below min_records_plaintext
// (default 100), naming the setting and secure aggregation as the fix. In he mode the setting
// does not apply, and 0 is the explicit research opt-out.
func TestPlaintextRunRefusesSmallClients(t *testing.T) {
	cases := []struct {
		name    string
		mode    string
		least   *int
		records int
		refused bool
	}{
		{"plaintext, default, below", coordinator.SecAggNone, nil, 99, true},
		{"plaintext, default, at the threshold", coordinator.SecAggNone, nil, 100, false},
		{"plaintext, default, nothing announced", coordinator.SecAggNone, nil, 0, true},
		{"plaintext, 500, below", coordinator.SecAggNone, intPtr(500), 499, true},
		{"plaintext, 500, at the threshold", coordinator.SecAggNone, intPtr(500), 500, false},
		{"plaintext, opt-out 0, ten records", coordinator.SecAggNone, intPtr(0), 10, false},
		{"plaintext, opt-out 0, nothing announced", coordinator.SecAggNone, intPtr(0), 0, false},
		{"he, default, ten records", coordinator.SecAggHE, nil, 10, false},
		{"he, 500, nothing announced", coordinator.SecAggHE, intPtr(500), 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, minRecordsConfig(tc.mode, tc.least), nil, nil)
			err := h.core.Register(task.Registration{ClientID: "app-7", TrainRecords: tc.records})
			notes := h.core.Ready().Notes
			h.flush()
			if !tc.refused {
				require.NoError(t, err)
				assert.Equal(t, 1, h.core.Registered())
				return
			}
			require.ErrorIs(t, err, coordinator.ErrTooFewRecords)
			var perr *coordinator.ProtocolError
			require.ErrorAs(t, err, &perr)
			assert.Equal(t, "train_records", perr.Field)
			assert.Equal(t, "app-7", perr.Client)
			assert.Contains(t, err.Error(), "run.min_records_plaintext")
			assert.Contains(t, err.Error(), "secure_aggregation.mode he")
			assert.Equal(t, 0, h.core.Registered())
			_, _, err = h.core.Poll("app-7")
			require.ErrorIs(t, err, coordinator.ErrUnknownClient, "a refused client gets no task")
			require.NotEmpty(t, notes)
			assert.Equal(t, "registration refused: too few records for plaintext aggregation", notes[len(notes)-1].Msg)
		})
	}
}

// TestReRegisteringBelowTheMinimumLeavesThePlaintextRun: a client whose records fell below the
// minimum (consent withdrawn) is forgotten, not kept with its old registration.
func TestReRegisteringBelowTheMinimumLeavesThePlaintextRun(t *testing.T) {
	h := newHarness(t, minRecordsConfig(coordinator.SecAggNone, nil), nil, nil)
	require.NoError(t, h.core.Register(task.Registration{ClientID: "a", TrainRecords: 150}))
	require.NoError(t, h.core.Register(task.Registration{ClientID: "b", TrainRecords: 150}))
	h.flush()
	require.ErrorIs(t, h.core.Register(task.Registration{ClientID: "a", TrainRecords: 60}), coordinator.ErrTooFewRecords)
	h.flush()
	assert.Equal(t, 1, h.core.Registered())
	_, _, err := h.core.Poll("a")
	require.ErrorIs(t, err, coordinator.ErrUnknownClient)
}

// TestPlaintextOptOutIsLogged: min_records_plaintext 0 in a plaintext run is a research
// setting; the coordinator's log says so at its first registration, and only then.
func TestPlaintextOptOutIsLogged(t *testing.T) {
	const msg = "research opt-out: run.min_records_plaintext is 0 in a plaintext run, so clients of any size register and the coordinator reads their own sums; use secure_aggregation.mode he for small clients"
	optOut := func(t *testing.T, mode string, least *int) []string {
		h := newHarness(t, minRecordsConfig(mode, least), nil, nil)
		var msgs []string
		for _, id := range []string{"a", "b", "a"} {
			require.NoError(t, h.core.Register(task.Registration{ClientID: id, TrainRecords: 200}))
			for _, n := range h.core.Ready().Notes {
				msgs = append(msgs, n.Msg)
			}
			h.flush()
		}
		return msgs
	}
	count := func(msgs []string) int {
		n := 0
		for _, m := range msgs {
			if m == msg {
				n++
			}
		}
		return n
	}
	assert.Equal(t, 1, count(optOut(t, coordinator.SecAggNone, intPtr(0))), "flagged once")
	assert.Zero(t, count(optOut(t, coordinator.SecAggNone, nil)), "the default is not an opt-out")
	assert.Zero(t, count(optOut(t, coordinator.SecAggHE, intPtr(0))), "in he mode the setting does not apply")

	assert.True(t, minRecordsConfig(coordinator.SecAggNone, intPtr(0)).SmallClientsInPlaintext())
	assert.False(t, minRecordsConfig(coordinator.SecAggNone, nil).SmallClientsInPlaintext())
	assert.False(t, minRecordsConfig(coordinator.SecAggHE, intPtr(0)).SmallClientsInPlaintext())
}

func TestMinRecordsPlaintextDefaultAndValidation(t *testing.T) {
	rc := coordinator.RunConfig{}.WithDefaults()
	require.NotNil(t, rc.MinRecordsPlaintext)
	assert.Equal(t, coordinator.DefaultMinRecordsPlaintext, *rc.MinRecordsPlaintext)
	assert.Equal(t, 100, coordinator.DefaultMinRecordsPlaintext)
	assert.Equal(t, 100, coordinator.RunConfig{}.MinRecords(), "unset fails closed even without WithDefaults")

	rc = minRecordsConfig(coordinator.SecAggNone, intPtr(0))
	require.NoError(t, rc.Validate(), "0 is the research opt-out")
	rc = minRecordsConfig(coordinator.SecAggNone, intPtr(-1))
	err := rc.Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "run.min_records_plaintext")
}
