package synth

import (
	"fmt"
	"io"

	"github.com/fedprop/fedprop/dataset"
)

// WriteShard writes a branch file as a real branch would hold it: the consenting
// customers and, spread evenly among them, the customers who opted out, with varied
// consent values ("all" or "propensity-modeling" for the former, "none" or
// "marketing-only" for the latter). Reading the file with Schema(cfg) gives back the
// consenting rows, in order, and counts the others in ExcludedNoConsent.
func WriteShard(w io.Writer, consenting, optedOut *dataset.Dataset) error {
	cw, err := dataset.NewCSVWriter(w, consenting.Schema)
	if err != nil {
		return fmt.Errorf("write shard: %w", err)
	}
	if err := cw.WriteHeader(); err != nil {
		return fmt.Errorf("write shard: %w", err)
	}
	n, m := consenting.Len(), optedOut.Len()
	i, j := 0, 0
	for i < n || j < m {
		// Spread the opted-out rows evenly: the j-th (0-based) goes after about
		// (j+1)·n/(m+1) consenting rows.
		if j < m && i*(m+1) >= (j+1)*n {
			err = cw.WriteRowWithConsent(optedOut, j, refusingConsent[j%len(refusingConsent)])
			j++
		} else {
			err = cw.WriteRowWithConsent(consenting, i, grantingConsent[i%len(grantingConsent)])
			i++
		}
		if err != nil {
			return fmt.Errorf("write shard: %w", err)
		}
	}
	if err := cw.Flush(); err != nil {
		return fmt.Errorf("write shard: %w", err)
	}
	return nil
}
