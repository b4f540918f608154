package sim

import (
	"math"
	"slices"

	"gonum.org/v1/gonum/stat"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/task"
)

// PersonalizationConfig asks every client, after the run, to fine-tune the global model for
// Epochs local epochs on its own training rows, and compares both on its held-out rows.
type PersonalizationConfig struct {
	Epochs int `yaml:"epochs" json:"epochs,omitempty"`
}

// PersonalizedClient is one client's comparison; an AUC is null where its held-out rows hold
// one class only.
type PersonalizedClient struct {
	Client          string   `json:"client"`
	TestRows        int      `json:"test_rows"`
	GlobalAUC       *float64 `json:"global_auc"`
	PersonalizedAUC *float64 `json:"personalized_auc"`
}

// Distribution summarises per-client AUCs.
type Distribution struct {
	Clients int     `json:"clients"`
	Mean    float64 `json:"mean"`
	P25     float64 `json:"p25"`
	Median  float64 `json:"median"`
	P75     float64 `json:"p75"`
	Min     float64 `json:"min"`
	Max     float64 `json:"max"`
}

// Personalization is the summary's personalization report.
type Personalization struct {
	Epochs       int                  `json:"epochs"`
	Clients      []PersonalizedClient `json:"clients"`
	Global       Distribution         `json:"global"`
	Personalized Distribution         `json:"personalized"`
	// Improved counts the clients whose personalized AUC beats the global model's.
	Improved int `json:"improved"`
}

// personalize runs every client's fine-tuning with the production client code.
func personalize(cfg Config, sessions []*client.Session, global []float64, enc task.Encoding) (*Personalization, error) {
	p := cfg.Run.Train
	p.Epochs = cfg.Personalization.Epochs
	out := &Personalization{Epochs: p.Epochs}
	var globals, personals []float64
	for i, s := range sessions {
		r, err := s.Personalize(global, enc, p, cfg.Seed^uint64(i))
		if err != nil {
			return nil, err
		}
		pc := PersonalizedClient{Client: r.Client, TestRows: r.TestRows}
		if !math.IsNaN(r.GlobalAUC) && !math.IsNaN(r.PersonalizedAUC) {
			g, q := r.GlobalAUC, r.PersonalizedAUC
			pc.GlobalAUC, pc.PersonalizedAUC = &g, &q
			globals, personals = append(globals, g), append(personals, q)
			if q > g {
				out.Improved++
			}
		}
		out.Clients = append(out.Clients, pc)
	}
	out.Global, out.Personalized = distribution(globals), distribution(personals)
	return out, nil
}

func distribution(x []float64) Distribution {
	if len(x) == 0 {
		return Distribution{}
	}
	s := slices.Clone(x)
	slices.Sort(s)
	q := func(p float64) float64 { return stat.Quantile(p, stat.LinInterp, s, nil) }
	return Distribution{Clients: len(s), Mean: stat.Mean(s, nil), P25: q(0.25), Median: q(0.5), P75: q(0.75), Min: s[0], Max: s[len(s)-1]}
}
