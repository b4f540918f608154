package privacy

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// runReplay is the composition sequence of a client-level DP run under secure aggregation, as
// the coordinator performs it (configs/sim-app-he.yaml): rounds of q=0.01 at the planned z=1,
// most of which lose about a tenth of their expected 1,000 contributors and are accounted at
// the achieved noise rounded down to a 1/64-octave grid, and an evaluation release (q=1,
// z about 65) every 25 rounds.
type runReplay struct {
	q, z, zEval float64
	budget      Budget
	rng         *rand.Rand
}

func newRunReplay() *runReplay {
	return &runReplay{q: 0.01, z: 1, zEval: 65, budget: Budget{Epsilon: 10, Delta: 1e-6, Conversion: PLD},
		rng: rand.New(rand.NewPCG(3, 10))}
}

// round does what the coordinator does for round r: the budget check before it (one more
// round at the planned noise, then its evaluation when it has one), the round composed at the
// noise present, its epsilon recorded, and then the evaluation's.
func (p *runReplay) round(acc *Accountant, r int) error {
	evaluated := r%25 == 0
	next := acc.Clone()
	q, z := p.q, p.z
	if evaluated {
		if err := next.Compose(q, z, 1); err != nil {
			return err
		}
		q, z = 1, p.zEval
	}
	if _, _, err := next.WouldExceed(q, z, 1, p.budget); err != nil {
		return err
	}
	achieved := p.z
	if arrived := int(math.Round(900 + 30*p.rng.NormFloat64())); arrived < 1000 {
		achieved = NoiseGridFloor(p.z * math.Sqrt(float64(arrived)/1000))
	}
	if err := acc.Compose(p.q, achieved, 1); err != nil {
		return err
	}
	if _, _, err := acc.Epsilon(p.budget.Delta, PLD); err != nil {
		return err
	}
	if !evaluated {
		return nil
	}
	zEval := p.zEval * math.Sqrt(float64(900+p.rng.IntN(60))/1000)
	if err := acc.Compose(1, zEval, 1); err != nil {
		return err
	}
	_, _, err := acc.Epsilon(p.budget.Delta, PLD)
	return err
}

// BenchmarkAccountingRound is the coordinator's privacy accounting of one round (budget
// check, composition, epsilon, and the evaluation's every 25 rounds) after a history of 100
// or 300 rounds, with the process-wide caches as a run leaves them: each iteration starts
// from empty caches (of the production sizes), replays the history untimed, and times its
// last 10 rounds.
//
//	go test ./privacy/ -run '^$' -bench AccountingRound -benchtime 3x
func BenchmarkAccountingRound(b *testing.B) {
	const timed = 10
	for _, rounds := range []int{100, 300} {
		b.Run(fmt.Sprintf("rounds=%d", rounds), func(b *testing.B) {
			var total float64
			for b.Loop() {
				b.StopTimer()
				pldCaches = newPLDCaches() // as a run starts: empty, production sizes
				replay, acc := newRunReplay(), NewAccountant(nil)
				for r := 1; r <= rounds-timed; r++ {
					if err := replay.round(acc, r); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				for r := rounds - timed + 1; r <= rounds; r++ {
					if err := replay.round(acc, r); err != nil {
						b.Fatal(err)
					}
				}
				total += timed
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/total/1e6, "ms/round")
		})
	}
}
