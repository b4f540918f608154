// Package privacy is fedprop's differential-privacy library: clipping and Gaussian noise for
// client-level DP-FedAvg and record-level DP-SGD, adaptive clipping by quantile (Andrew et al.
// 2021), Poisson sampling, and two accountants for the Poisson-subsampled Gaussian mechanism,
// privacy loss distributions (the default) and Renyi DP (Mironov, Talwar and Zhang 2019), with
// budgets that a run must stay within.
//
// The package knows nothing about coordinators, clients or transports. Every function is pure
// apart from the randomness it draws from a caller-supplied *rand.Rand, so the same seed gives
// bit-for-bit the same noise.
//
// # Accounting
//
// [PLDEpsilon] composes privacy loss distributions under add/remove adjacency (pld.go): a
// pessimistic "connect the dots" discretisation, FFT composition and an exact hockey-stick
// conversion, so its epsilon is an upper bound that agrees with the closed-form Gaussian
// mechanism to 1e-4 over 10,000 steps. [SampledGaussianRDP] follows the RDP accountant of
// TensorFlow Privacy / Google's dp_accounting: integer orders by the binomial expansion,
// fractional orders by the signed two-sided series with erfc terms, all in log space.
// [EpsilonFromRDP] converts RDP to (epsilon, delta) with the bound of Balle et al. 2020
// ([Tight]) or the classic RDP(a) - log(delta)/(a-1) ([Classic]). The default conversion,
// [PLD], reports the smaller of the PLD and Tight bounds, so it never exceeds RDP's; RDP
// remains both an option and that cross-check. [Accountant] composes rounds with different
// sampling rates and noise multipliers (keeping the RDP curve and the history PLD needs) and
// refuses to go beyond a [Budget].
//
// # Planning record-level DP-SGD
//
// [PlanDPSGD] derives every DP-SGD setting from the budget and public facts of a run (the
// declared record count, the clients, the rounds, the schema's feature counts): the sampling
// rate from a target batch, the steps from a number of passes, the noise from the accountant,
// and the learning rate from [DPSGDLearningRate], which plans the noise the training leaves in
// a logit, on a step denominator shared by all clients (logreg.DPSGDParams.ReferenceRecords).
// None of them reads a record, so none needs privatising.
//
// # Who adds the noise, and the expected number of contributors m
//
// In plaintext aggregation the coordinator adds noise of standard deviation z*C to the sum. In
// `he` mode the coordinator must never decrypt an un-noised sum, so each of the m expected
// contributors adds a share of standard deviation z*C/sqrt(m) ([ClientNoiseStd]); k independent
// shares sum to standard deviation z*C*sqrt(k/m). With Poisson sampling of clients at rate q
// from a population of N, the number of contributors is random (Binomial(N, q)); m is its
// expectation q*N ([ExpectedContributors]), fixed before the round so that neither the noise
// share nor the denominator of the mean depends on who was actually sampled (that fixed
// denominator is what makes the sensitivity of the mean C/m under Poisson sampling). When only
// k < m contributions arrive, the noise present is lower: account for the round with
// [AchievedNoiseMultiplier] and log the shortfall. A cautious operator may pass a smaller m
// (for example the round's minimum contributor count), which makes every share larger.
package privacy
