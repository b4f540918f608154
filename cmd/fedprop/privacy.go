package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/fedprop/fedprop/privacy"
)

func newPrivacyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "privacy",
		Short: "Plan differential privacy: epsilon for a noise level, or the noise for a target epsilon",
		Long: `Renyi-DP accounting for the Poisson-subsampled Gaussian mechanism (Mironov, Talwar and
Zhang 2019), converted to (epsilon, delta) by the bound of Balle et al. 2020 (--conversion tight,
the default) or the classic RDP(a) - log(delta)/(a-1).`,
	}
	var (
		q, sigma, delta, epsilon float64
		steps                    int
		ordersFlag, convFlag     string
	)
	parse := func() ([]float64, privacy.Conversion, error) {
		conv, err := privacy.ParseConversion(convFlag)
		if err != nil {
			return nil, 0, usagef("--conversion: %v", err)
		}
		if ordersFlag == "" {
			return privacy.DefaultOrders(), conv, nil
		}
		orders, err := privacy.ParseOrders(ordersFlag)
		if err != nil {
			return nil, 0, usagef("--orders: %v", err)
		}
		return orders, conv, nil
	}
	eps := &cobra.Command{
		Use:   "epsilon",
		Short: "Print epsilon (and the best order) for q, sigma, steps and delta",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			orders, conv, err := parse()
			if err != nil {
				return err
			}
			e, order, err := privacy.Epsilon(q, sigma, steps, delta, orders, conv)
			if err != nil {
				return usagef("%v", err)
			}
			fmt.Fprintf(g.stdout, "epsilon %.10g (delta %g, order %g, %s conversion; q %g, sigma %g, %d steps)\n", e, delta, order, conv, q, sigma, steps)
			return nil
		},
	}
	sig := &cobra.Command{
		Use:   "sigma",
		Short: "Print the smallest noise multiplier that meets a target epsilon",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			orders, conv, err := parse()
			if err != nil {
				return err
			}
			s, err := privacy.SigmaFor(q, steps, delta, epsilon, orders, conv)
			if err != nil {
				return usagef("%v", err)
			}
			fmt.Fprintf(g.stdout, "sigma %.6g (meets epsilon %g at delta %g with q %g over %d steps, %s conversion)\n", s, epsilon, delta, q, steps, conv)
			return nil
		},
	}
	for _, c := range []*cobra.Command{eps, sig} {
		c.Flags().Float64Var(&q, "q", 0, "sampling rate per step (Poisson)")
		c.Flags().IntVar(&steps, "steps", 0, "number of steps (rounds)")
		c.Flags().Float64Var(&delta, "delta", 1e-5, "delta")
		c.Flags().StringVar(&ordersFlag, "orders", "", "comma-separated Renyi orders (default 1.1..10.9, 11..63, 128..1024)")
		c.Flags().StringVar(&convFlag, "conversion", "tight", "RDP to (epsilon, delta) conversion: tight or classic")
		_ = c.MarkFlagRequired("q")
		_ = c.MarkFlagRequired("steps")
	}
	eps.Flags().Float64Var(&sigma, "sigma", 0, "noise multiplier z")
	_ = eps.MarkFlagRequired("sigma")
	sig.Flags().Float64Var(&epsilon, "epsilon", 0, "target epsilon")
	_ = sig.MarkFlagRequired("epsilon")
	cmd.AddCommand(eps, sig)
	return cmd
}
