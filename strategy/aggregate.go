package strategy

import "fmt"

// Aggregator is the aggregate half of a round in Flower's shape (configure a round, then
// aggregate its results): Combine sees each accepted client update, Finalize turns the round's
// sums into the mean update that Strategy.Apply folds into the model. Under secure aggregation
// the coordinator sees no single update: combining is adding ciphertexts, done by the secure
// sum, and Finalize runs once on the decrypted sum; only an aggregator that does not need the
// individual updates (Individual false) can serve there. A fresh Aggregator serves one round.
type Aggregator interface {
	// Individual reports whether Combine must see every update (robust aggregation): the mean
	// needs only the sums.
	Individual() bool
	// Combine takes one client's update delta_i (not multiplied by its weight) and its weight
	// n_i. It is called only when Individual is true.
	Combine(update []float64, weight float64) error
	// Finalize returns the round's mean update from the weighted sum sum_i n_i*delta_i and the
	// total weight sum_i n_i (under differential privacy, the noised sum and the expected
	// contributors).
	Finalize(weightedSum []float64, totalWeight float64) ([]float64, error)
}

// NewAggregator returns the aggregator of one round: the weighted mean, or the robust
// aggregator r names.
func NewAggregator(r RobustConfig) Aggregator {
	if !r.Enabled() {
		return meanAggregator{}
	}
	return &robustAggregator{cfg: r}
}

// meanAggregator is FedAvg's weighted mean: the sums are all it needs.
type meanAggregator struct{}

func (meanAggregator) Individual() bool { return false }

func (meanAggregator) Combine([]float64, float64) error {
	return fmt.Errorf("mean aggregator: %w: it combines sums, not single updates", ErrInvalidConfig)
}

func (meanAggregator) Finalize(weightedSum []float64, totalWeight float64) ([]float64, error) {
	return MeanUpdate(weightedSum, totalWeight)
}

// robustAggregator keeps the round's updates for a Byzantine-robust statistic.
type robustAggregator struct {
	cfg     RobustConfig
	updates [][]float64
	weights []float64
}

func (a *robustAggregator) Individual() bool { return true }

func (a *robustAggregator) Combine(update []float64, weight float64) error {
	a.updates = append(a.updates, update)
	a.weights = append(a.weights, weight)
	return nil
}

// Finalize ignores the sums: the robust statistic is of the individual updates.
func (a *robustAggregator) Finalize([]float64, float64) ([]float64, error) {
	return a.cfg.Aggregate(a.updates, a.weights)
}
