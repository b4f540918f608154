package coordinator

// QuorumState says where a phase stands against its quorum.
type QuorumState int

// The states of a quorum.
const (
	// QuorumPending: too few results yet, but enough clients still owe one.
	QuorumPending QuorumState = iota
	// QuorumReached: enough results have arrived; the phase ends when the rest answer or the
	// deadline passes.
	QuorumReached
	// QuorumImpossible: even if every client still owing a result answered, the phase would
	// have too few: it fails now rather than at its deadline.
	QuorumImpossible
)

func (s QuorumState) String() string {
	switch s {
	case QuorumReached:
		return "reached"
	case QuorumImpossible:
		return "impossible"
	}
	return "pending"
}

// Quorum is the fewest results a phase needs against those it has and those still owed.
type Quorum struct {
	// Need is the fewest results that count (run.quorum; every member for a key setup).
	Need int
	// Got counts accepted results; Owed the tasks still outstanding.
	Got, Owed int
}

// State says whether the quorum is reached, still possible, or out of reach.
func (q Quorum) State() QuorumState {
	switch {
	case q.Got >= q.Need:
		return QuorumReached
	case q.Got+q.Owed < q.Need:
		return QuorumImpossible
	}
	return QuorumPending
}

// quorum is the current phase's quorum.
func (c *Core) quorum() Quorum {
	need := c.cfg.Quorum
	if c.phase == phaseKeygen {
		// Every member's secret is part of the collective key: setup needs all of them.
		need = len(c.cohort)
	}
	return Quorum{Need: need, Got: c.results, Owed: len(c.outstanding)}
}
