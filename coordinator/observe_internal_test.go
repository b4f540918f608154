package coordinator

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestEveryPhaseHasItsOwnName: Progress.Phase labels a gauge, whose series are made from
// Phases before any run; a phase missing from it, or two with one name, would hide where a run
// stands.
func TestEveryPhaseHasItsOwnName(t *testing.T) {
	seen := map[string]phase{}
	for p := phaseWaiting; p <= phaseDone; p++ {
		name := phaseName(p)
		assert.Contains(t, Phases, name, "phase %d", p)
		if prev, dup := seen[name]; dup {
			t.Errorf("phases %d and %d are both %q", prev, p, name)
		}
		seen[name] = p
	}
	assert.Len(t, seen, len(Phases), "every name in Phases is a phase")
}
