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

// delayed is a result a straggler hands in later.
type delayed struct {
	due    int64
	order  int
	kind   task.Kind
	result task.Result
}

// loop steps the coordinator core and the client sessions in simulated time: each tick every
// present client polls, the tasks run in parallel, and the results are submitted in client
// order so that the floating-point sums, and so the run, repeat exactly. The failure model
// decides, from seeds, which clients join late, leave, drop a task or answer late.
func (d *driver) loop(ctx context.Context) error {
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
	var pending []delayed
	var tick int64
	d.roundStart = time.Now()
	for !d.core.Status().Status.Finished() {
		if err := ctx.Err(); err != nil {
			return err
		}
		round := d.core.Round()
		for i, id := range ids {
			if !registered[i] && fm.joins(i, round) {
				if err := d.core.Register(task.Registration{ClientID: id, IdentityKey: d.sessions[i].IdentityKey(), TrainRecords: d.sessions[i].TrainRows()}); err != nil {
					// A plaintext run refuses small clients (run.min_records_plaintext): the
					// simulation stops with the coordinator's reason rather than run without them.
					return fmt.Errorf("simulate: register %s: %w", id, err)
				}
				registered[i] = true
			}
		}
		if err := d.flush(ctx); err != nil {
			return err
		}
		// Stragglers whose answer is due now.
		var due []delayed
		pending = slices.DeleteFunc(pending, func(p delayed) bool {
			if p.due <= tick {
				due = append(due, p)
				return true
			}
			return false
		})
		slices.SortFunc(due, func(a, b delayed) int { return a.order - b.order })
		for _, p := range due {
			if err := d.submit(ctx, p.kind, p.result, client.Report{}, 0); err != nil {
				return err
			}
		}

		var jobs []job
		for i, id := range ids {
			if !registered[i] || fm.gone(i, round) {
				continue
			}
			t, ok, err := d.core.Poll(id)
			if err != nil {
				return err
			}
			if ok && !d.answered[t.ID] {
				jobs = append(jobs, job{i: i, t: t})
			}
		}
		for start := 0; start < len(jobs); start += chunk {
			part := jobs[start:min(start+chunk, len(jobs))]
			d.compute(ctx, part, workers)
			for k := range part {
				j := &part[k]
				d.answered[j.t.ID] = true
				if errors.Is(j.err, client.ErrDeclined) && j.t.Kind != task.KindKeygen && j.t.Kind != task.KindDecrypt ||
					errors.Is(j.err, client.ErrRefused) && j.t.Kind == task.KindDecrypt { // as the agent does
					j.result, j.err = client.Refusal(d.sessions[j.i].ID(), j.t, j.err), nil
					d.refused++
				}
				if j.err != nil {
					return fmt.Errorf("simulate: %w", j.err)
				}
				d.count(j.i, j.t, j.result)
				fate := fm.fate(j.i, j.t)
				switch {
				case fate.drop:
					d.dropped++
					*j = job{} // its ciphertext is never sent: do not hold it to the end of the tick
					continue
				case fate.delay > 0:
					pending = append(pending, delayed{due: tick + fate.delay, order: j.i, kind: j.t.Kind, result: j.result})
					continue
				}
				if err := d.submit(ctx, j.t.Kind, j.result, j.report, j.seconds); err != nil {
					return err
				}
				// Drop the submitted result now: an evaluation of 100,000 clients must not
				// hold every result until the tick ends.
				*j = job{}
			}
		}
		d.core.Tick()
		tick++
		if err := d.flush(ctx); err != nil {
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
	return nil
}

// job is one client's task and, once computed, its result.
type job struct {
	i       int
	t       task.Task
	result  task.Result
	report  client.Report
	seconds float64
	err     error
}

// compute runs the jobs' tasks on up to workers goroutines.
func (d *driver) compute(ctx context.Context, jobs []job, workers int) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(workers, len(jobs)) {
		wg.Go(func() {
			for k := range next {
				start := time.Now()
				j := &jobs[k]
				j.result, j.report, j.err = d.sessions[j.i].Handle(ctx, j.t)
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

// submit hands one result to the core and accounts for its cost. A result that arrives after
// its phase ended is counted as late, as the coordinator refuses it.
func (d *driver) submit(ctx context.Context, kind task.Kind, r task.Result, rep client.Report, seconds float64) error {
	if kind == task.KindTrain {
		d.trainBytes += r.Sum.Bytes()
		d.trainTasks++
	}
	d.encSeconds += rep.EncryptSeconds
	if kind == task.KindDecrypt {
		d.decSeconds += seconds
	}
	start := time.Now()
	if _, err := d.core.Submit(r); err != nil {
		if errors.Is(err, task.ErrStale) {
			d.late++
			return nil
		}
		if errors.Is(err, task.ErrInvalid) && (kind == task.KindStats || kind == task.KindTrain || kind == task.KindEvaluate) {
			// Refused by the coordinator (outside the run's bounds): the round goes on without
			// it, as it does for a client over the network.
			d.rejected++
			d.opts.Logger.Warn("result refused by the coordinator", "client", r.ClientID, "kind", kind.String(), "round", r.Round, "err", err)
			return nil
		}
		return fmt.Errorf("simulate: %w", err)
	}
	// The submit that completes a decryption combines the shares.
	if kind == task.KindDecrypt {
		d.decSeconds += time.Since(start).Seconds()
	} else if kind != task.KindKeygen {
		d.aggSeconds += time.Since(start).Seconds()
	}
	return d.flush(ctx)
}
