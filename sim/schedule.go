package sim

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/task"
)

// chunk bounds how many tasks are computed before their results are submitted, so that memory
// stays bounded however many clients are asked at once (an evaluation of 100,000 app clients).
const chunk = 2048

// delayed is a straggler's answer, sent later.
type delayed struct {
	due    int64
	order  int
	t      task.Task
	result task.Result
}

// schedule runs the virtual clients against the coordinator's Server in simulated time. Each
// tick, every present client polls (one driver event for all: an idle client costs a map
// lookup, not a goroutine), the tasks run in parallel through the clients' agents, and the
// answers go through the in-memory network in client order, so that the floating-point sums,
// and so the run, repeat exactly. The failure model decides, from seeds, which clients join
// late, leave, drop an answer (it is never sent) or answer late (sent some ticks later).
func (d *driver) schedule(ctx context.Context) error {
	ids := make([]string, len(d.sessions))
	for i, s := range d.sessions {
		ids[i] = s.ID()
	}
	reliable := make([]bool, len(ids))
	for i, c := range d.world.Clients {
		reliable[i] = c.Branch
	}
	fm := newFailureModel(d.cfg, reliable)
	registered := make([]bool, len(ids))
	workers := d.cfg.Workers
	if workers == 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	var (
		pending []delayed
		present []string
		index   []int // present[k] is client index[k]
	)
	d.roundStart = time.Now()
	for {
		status, round, err := d.progress(ctx)
		if err != nil {
			return err
		}
		if status.Finished() {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		for i := range ids {
			if !registered[i] && fm.joins(i, round) {
				if err := d.agents[i].Register(ctx); err != nil {
					// A plaintext run refuses small clients (run.min_records_plaintext): the
					// simulation stops with the coordinator's reason rather than run without them.
					return fmt.Errorf("simulate: register %s: %w", ids[i], err)
				}
				registered[i] = true
				d.tracef("register %s", ids[i])
			}
		}
		if err := d.evaluateCommits(); err != nil {
			return err
		}
		// Stragglers whose answer is due now.
		var due []delayed
		pending = slices.DeleteFunc(pending, func(p delayed) bool {
			if p.due <= d.tick {
				due = append(due, p)
				return true
			}
			return false
		})
		slices.SortFunc(due, func(a, b delayed) int { return a.order - b.order })
		for _, p := range due {
			if err := d.send(ctx, p.order, p.t, p.result, client.Report{}, 0); err != nil {
				return err
			}
		}

		present, index = present[:0], index[:0]
		for i, id := range ids {
			if registered[i] && !fm.gone(i, round) {
				present = append(present, id)
				index = append(index, i)
			}
		}
		var jobs []job
		err = d.server.PollEach(ctx, present, func(k int, t task.Task) {
			if !d.answered[t.ID] {
				jobs = append(jobs, job{i: index[k], t: t})
				d.tracef("task %s", t.ID)
			}
		})
		if err != nil {
			return err
		}
		for start := 0; start < len(jobs); start += chunk {
			part := jobs[start:min(start+chunk, len(jobs))]
			d.compute(ctx, part, workers)
			for k := range part {
				j := &part[k]
				d.answered[j.t.ID] = true
				if j.err != nil {
					return fmt.Errorf("simulate: %w", j.err)
				}
				if j.report.Refused {
					d.refused++
				}
				d.count(j.i, j.t, j.result)
				fate := fm.fate(j.i, j.t)
				switch {
				case fate.drop:
					d.dropped++
					d.tracef("drop %s", j.t.ID)
					*j = job{} // its ciphertext is never sent: do not hold it to the end of the tick
					continue
				case fate.delay > 0:
					d.tracef("delay %s by %d ticks", j.t.ID, fate.delay)
					pending = append(pending, delayed{due: d.tick + fate.delay, order: j.i, t: j.t, result: j.result})
					continue
				}
				if err := d.send(ctx, j.i, j.t, j.result, j.report, j.seconds); err != nil {
					return err
				}
				// Drop the submitted result now: an evaluation of 100,000 clients must not
				// hold every result until the tick ends.
				*j = job{}
			}
		}
		if err := d.server.Tick(ctx); err != nil {
			return err
		}
		d.tick++
		if err := d.evaluateCommits(); err != nil {
			return err
		}
		if len(d.answered) > 4*chunk {
			// Task ids are unique per phase; forget answered ones of finished phases.
			clear(d.answered)
			for _, p := range pending {
				d.answered[p.result.TaskID] = true
			}
		}
	}
}

// clientRound names one client's work in one round.
type clientRound struct {
	client string
	round  int
}

// job is one client's task and, once computed, its answer.
type job struct {
	i       int
	t       task.Task
	result  task.Result
	report  client.Report
	seconds float64
	err     error
}

// compute has the jobs' agents answer their tasks on up to workers goroutines.
func (d *driver) compute(ctx context.Context, jobs []job, workers int) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(workers, len(jobs)) {
		wg.Go(func() {
			for k := range next {
				start := time.Now()
				j := &jobs[k]
				j.result, j.report, j.err = d.agents[j.i].Answer(ctx, j.t)
				j.seconds = time.Since(start).Seconds()
			}
		})
	}
	for k := range jobs {
		next <- k
	}
	close(next)
	wg.Wait()
}

// send has client i's agent submit its answer and accounts for its cost. An answer that
// arrives after its phase ended is counted as late, as the coordinator refuses it; one
// refused as outside the run's bounds is counted as rejected, and the round goes on without
// it, as it does for a client over the network.
func (d *driver) send(ctx context.Context, i int, t task.Task, r task.Result, rep client.Report, seconds float64) error {
	kind := t.Kind
	if kind == task.KindTrain {
		d.trainBytes += r.Sum.Bytes()
		d.trainTasks++
		d.trainRounds[clientRound{r.ClientID, r.Round}] = true
		if g := t.GBDT; g != nil && g.Step == task.GBDTHistograms && r.Sum.Ciphertext != nil && d.cts != nil {
			d.levelResults++
			d.levelCiphertexts += d.cts(r.Sum.Length)
		}
	}
	d.encSeconds += rep.EncryptSeconds
	if kind == task.KindDecrypt {
		d.decSeconds += seconds
	}
	if r.Refusal != "" {
		d.tracef("send %s (declined)", t.ID)
	} else {
		d.tracef("send %s", t.ID)
	}
	start := time.Now()
	if err := d.agents[i].Send(ctx, t, r, rep); err != nil {
		if errors.Is(err, task.ErrStale) {
			d.late++
			d.tracef("refused %s: stale", t.ID)
			return nil
		}
		if errors.Is(err, task.ErrInvalid) && (kind == task.KindStats || kind == task.KindTrain || kind == task.KindEvaluate) {
			d.rejected++
			d.tracef("refused %s: invalid", t.ID)
			d.opts.Logger.Warn("result refused by the coordinator", "client", r.ClientID, "kind", kind.String(), "round", r.Round, "err", err)
			return nil
		}
		return fmt.Errorf("simulate: %w", err)
	}
	// The submission that completes a decryption combines the shares.
	if kind == task.KindDecrypt {
		d.decSeconds += time.Since(start).Seconds()
	} else if kind != task.KindKeygen {
		d.aggSeconds += time.Since(start).Seconds()
	}
	return nil
}
