package crashtest_test

import (
	"fmt"
	"testing"

	"github.com/fedprop/fedprop/store/postgres/pgtest"
)

// crashRuns is how many crash runs each store gets.
const crashRuns = 50

// crashPoints are where the coordinator is killed, with how many times each point is
// reached in one run.
//
// TODO(secagg): add "result.decrypt" (a decryption share accepted) once this harness runs
// he-mode federations with in-process committee members; the driver already names the
// point, since every accepted result reports "result." and its kind.
var crashPoints = []struct {
	point string
	count int
}{
	{"result", resultsPerRun},       // while collecting: after the k-th accepted result
	{"aggregate", aggregatesPerRun}, // a result has just completed its phase's aggregate
	{"commit", rounds},              // during the commit, before the store write
	{"committed", rounds},           // during the commit, after the store write
	{"result.stats", branchCount},   // while collecting the feature statistics
	{"result.train", rounds * branchCount},
	{"result.evaluate", rounds * branchCount},
}

// crashPlan is run i's crash points: one, and for every third run a second one on the
// restarted coordinator (which may come too late to be reached, if the run completes first).
func crashPlan(i int) []string {
	p := crashPoints[i%len(crashPoints)]
	plan := []string{fmt.Sprintf("%s:%d", p.point, (i/len(crashPoints))%p.count+1)}
	if i%3 == 2 {
		q := crashPoints[(i+3)%len(crashPoints)]
		plan = append(plan, fmt.Sprintf("%s:1", q.point))
	}
	return plan
}

func testCrashes(t *testing.T, b backend) {
	f := newFixture(t)
	reference := f.crashRun(t, boltBackend(), nil)
	for i := range crashRuns {
		plan := crashPlan(i)
		t.Run(fmt.Sprintf("%02d %v", i, plan), func(t *testing.T) {
			got := f.crashRun(t, b, plan)
			assertSameModel(t, reference, got)
		})
	}
}

func TestCoordinatorCrashesBolt(t *testing.T) {
	testCrashes(t, boltBackend())
}

func TestCoordinatorCrashesPostgres(t *testing.T) {
	pgtest.ServerDSN(t) // skip at once, not 50 times, when there is no server
	testCrashes(t, postgresBackend())
}
