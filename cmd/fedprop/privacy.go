package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fedprop/fedprop/privacy"
)

func newPrivacyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "privacy",
		Short: "Plan differential privacy: epsilon for a noise level, or the noise for a target epsilon",
		Long: `Accounting for the Poisson-subsampled Gaussian mechanism under add/remove adjacency.

--accountant pld (the default) composes privacy loss distributions: an upper bound within about
1e-4 of the exact epsilon, and never above the Renyi-DP accountant's, which it prints beside it
as a cross-check. --accountant rdp is the Renyi-DP accountant (Mironov, Talwar and Zhang 2019),
converted to (epsilon, delta) by the bound of Balle et al. 2020 (--conversion tight, the
default) or the classic RDP(a) - log(delta)/(a-1) (--conversion classic); --conversion alone
implies --accountant rdp.`,
	}
	var (
		q, sigma, delta, epsilon          float64
		steps                             int
		ordersFlag, convFlag, accountFlag string
	)
	parse := func(cmd *cobra.Command) ([]float64, privacy.Conversion, error) {
		flags := cmd.Flags()
		account := strings.ToLower(strings.TrimSpace(accountFlag))
		if account != "pld" && account != "rdp" {
			return nil, 0, usagef("--accountant %q: want pld or rdp", accountFlag)
		}
		conv := privacy.PLD
		switch {
		case flags.Changed("conversion"):
			c, err := privacy.ParseConversion(convFlag)
			if err != nil {
				return nil, 0, usagef("--conversion: %v", err)
			}
			if c == privacy.PLD {
				return nil, 0, usagef("--conversion pld: that is --accountant pld; --conversion chooses how RDP is converted, tight or classic")
			}
			if flags.Changed("accountant") && account == "pld" {
				return nil, 0, usagef("--conversion %s applies to --accountant rdp, not pld", c)
			}
			conv = c
		case account == "rdp":
			conv = privacy.Tight
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
		Short: "Print epsilon for q, sigma, steps and delta",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			orders, conv, err := parse(cmd)
			if err != nil {
				return err
			}
			e, order, err := privacy.Epsilon(q, sigma, steps, delta, orders, conv)
			if err != nil {
				return usagef("%v", err)
			}
			if conv != privacy.PLD {
				fmt.Fprintf(g.stdout, "epsilon %.10g (delta %g, rdp accountant, order %g, %s conversion; q %g, sigma %g, %d steps)\n",
					e, delta, order, conv, q, sigma, steps)
				return nil
			}
			rdp, rdpOrder, err := privacy.Epsilon(q, sigma, steps, delta, orders, privacy.Tight)
			if err != nil {
				return usagef("%v", err)
			}
			fmt.Fprintf(g.stdout, "epsilon %.10g (delta %g, pld accountant; q %g, sigma %g, %d steps)\n", e, delta, q, sigma, steps)
			fmt.Fprintf(g.stdout, "rdp cross-check: epsilon %.10g (order %g, tight conversion)\n", rdp, rdpOrder)
			if order != 0 {
				fmt.Fprintln(g.stdout, "the rdp bound is the smaller here, so it is the one reported")
			}
			return nil
		},
	}
	sig := &cobra.Command{
		Use:   "sigma",
		Short: "Print the smallest noise multiplier that meets a target epsilon",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			orders, conv, err := parse(cmd)
			if err != nil {
				return err
			}
			s, err := privacy.SigmaFor(q, steps, delta, epsilon, orders, conv)
			if err != nil {
				return usagef("%v", err)
			}
			how := conv.Accountant() + " accountant"
			if conv != privacy.PLD {
				how += ", " + conv.String() + " conversion"
			}
			fmt.Fprintf(g.stdout, "sigma %.6g (meets epsilon %g at delta %g with q %g over %d steps, %s)\n", s, epsilon, delta, q, steps, how)
			return nil
		},
	}
	for _, c := range []*cobra.Command{eps, sig} {
		c.Flags().Float64Var(&q, "q", 0, "sampling rate per step (Poisson)")
		c.Flags().IntVar(&steps, "steps", 0, "number of steps (rounds)")
		c.Flags().Float64Var(&delta, "delta", 1e-5, "delta")
		c.Flags().StringVar(&accountFlag, "accountant", "pld", "pld (privacy loss distributions) or rdp (Renyi DP)")
		c.Flags().StringVar(&ordersFlag, "orders", "", "comma-separated Renyi orders for rdp and pld's rdp cross-check (default 1.1..10.9, 11..63, 128..1024)")
		c.Flags().StringVar(&convFlag, "conversion", "tight", "RDP to (epsilon, delta) conversion: tight or classic (implies --accountant rdp)")
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
