package crashtest_test

import (
	"fmt"
	"testing"

	"github.com/fedprop/fedprop/client"

	"github.com/fedprop/fedprop/store/postgres/pgtest"
)

// crashRuns is how many crash runs each store gets.
const crashRuns = 50

// crashPoints are where the coordinator is killed, with how many times each point is
// reached in one run. The runs while decrypting are TestCoordinatorCrashesWhileDecrypting's.
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

// TestCoordinatorCrashesWhileDecrypting kills an he-mode coordinator while the committee's
// decryption shares arrive (after the k-th share accepted) and while it combines them (the
// aggregate point): the restarted coordinator needs no new committee setup, recollects the
// phase, and the run completes with the crash-free run's model, every version once.
func TestCoordinatorCrashesWhileDecrypting(t *testing.T) {
	f := newFixture(t)
	f.he, f.members = true, map[string]*client.Member{}
	reference := f.crashRun(t, boltBackend(), nil)
	// T=2 shares per aggregate; stats, then train and evaluate in every round.
	shares := 2 * (1 + 2*rounds)
	for i, plan := range [][]string{
		{"result.decrypt:1"}, {"result.decrypt:2"}, {fmt.Sprintf("result.decrypt:%d", shares/2)},
		{fmt.Sprintf("result.decrypt:%d", shares-1)}, {"result.decrypt:3", "result.decrypt:2"}, {"aggregate:4"},
	} {
		t.Run(fmt.Sprintf("%02d %v", i, plan), func(t *testing.T) {
			got := f.crashRun(t, boltBackend(), plan)
			assertSameModel(t, reference, got)
		})
	}
}
