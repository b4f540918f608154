// Package secagg is fedprop's secure aggregation: threshold multiparty CKKS on lattigo v5
// (he/hefloat, mhe). A committee of N branch clients jointly holds the decryption key, any T of
// them can decrypt and no T-1 can; any client encrypts under the committee's collective public
// key; the coordinator adds ciphertexts and only ever sees decrypted sums. It is the only
// fedprop package that imports lattigo, so a move to lattigo v6 (where mhe is multiparty)
// touches nothing else.
//
// The package does local operations only: no network, no goroutines, no clock. Every value that
// crosses the protocol seam is a byte string with a versioned, fixed-size layout (see wire.go);
// every decoder checks sizes and coefficient ranges before lattigo sees anything, and returns
// errors wrapping the sentinels in errors.go.
//
// # Protocol
//
// Setup round 1 (keygen, step 1): the coordinator publishes a fresh CRS seed; every member makes
// a Member (its Shamir point 1..N, an RLWE secret s_i, an X25519 identity key) and returns
// Member.PublicKeyShare; the coordinator folds them in a PublicKeyAggregator and publishes the
// collective public key for s = sum s_i.
//
// Setup round 2 (steps 2 and 3): each member sends Member.SealedThresholdShares, its Shamir
// shares f_i(j) of s_i sealed for each other member j (X25519 + HKDF + XChaCha20-Poly1305,
// bound to the setup, threshold, sender and recipient; see seal.go). The coordinator relays
// the boxes without being able to open or forge them; each member opens its own with
// Member.CombineThresholdShares and keeps tsk_i = sum_j f_j(i), persisted with SaveFile.
//
// Aggregation: clients encrypt with an Encryptor (vectors longer than Params.Slots span several
// ciphertexts); the coordinator adds each result to a Sum as it arrives (Add for updates, Merge
// for partial sums from regional aggregators) and marshals the aggregate.
//
// Decryption: the coordinator fixes and orders an active set of exactly T members; each checks
// the task (InspectAggregate gives the contribution count; Digest is what it logs) and returns
// Member.DecryptionShare (mhe.Combiner.GenAdditiveShare, then mhe.KeySwitchProtocol towards the
// zero key, plus flooding noise of sigma SmudgingSigma from FloodSampler, not from lattigo's
// Gaussian sampler, whose ziggurat outputs fall on grids: see flood.go and its tests); the
// coordinator combines them with a Decryptor. A
// member that drops out costs a new active set, not the round.
//
// # Threat model
//
// The coordinator sees the public key, the CRS, the sealed boxes, ciphertexts, aggregates and
// every decryption share, and may deviate from the protocol; up to T-1 committee members may
// collude with it. What holds:
//
//   - It cannot learn the collective key or any single contribution from decryption shares:
//     flooding noise sized by the bound below makes the shares simulatable from the decrypted
//     sums (simulation set) or bounds key recovery (key-recovery set).
//   - It cannot decrypt more, or larger, aggregates than the bound allows: members count the
//     ciphertexts they help decrypt (Params.DecryptionBudget, persisted with the member) and
//     refuse aggregates of more than Params.MaxContributors contributions (ErrBeyondBound).
//   - Everything above the package (client and coordinator roles) adds: endorsed identity keys
//     and collective keys, a one-way keygen, members that verify every aggregate is the sum of
//     client-signed contributions, and refusals of differencing; see the client package.
//
// What does not hold: a coordinator colluding with one certified client (or an operator who
// runs both the coordinator and the CA, and so can mint client certificates) can submit a
// malformed "ciphertext" whose c1 is chosen, and so put c1*s into a decryption: there is no
// proof that a contribution is a well-formed encryption (zero-knowledge proofs of short u, e0,
// e1 are the step that would close this). Client-level differential privacy is what still
// protects each client then. There is no verifiable secret sharing: a member that sends
// inconsistent Shamir shares makes decryption fail (noticed, not silent). The coordinator can
// always deny service.
//
// # Flooding noise
//
// A decryption share is c1*lambda_i*s_i + E_i; combined, the shares give m + e + sum E_i, where
// e = sum over contributions (u*e_pk + e0 + e1*s) depends on the secret. The coordinator holds
// every share and the unrounded phase (rounding to the release grid happens after combining,
// and the imaginary parts of the decoded slots are the noise itself), so only E_i can hide e.
// The worst case is one honest member among the T: its E (sigma per coefficient) must hide e.
//
// The bound (bound.go). For K contributions under the key of an n-member committee, ring
// degree N, fresh error sigma_e = 3.2 and ternary secrets (variance 2/3), each coefficient of e
// has variance K*sigma_e^2*(1 + (4/3)*N*n), so E||e||^2 = N times that; the bound B takes twice
// the expectation (TestNoiseNormBoundHolds measures ||e|| at 0.7 B for K = 1, 10 and 100). Over
// M decrypted ciphertexts, each with ||e_j|| <= B:
//
//   - Simulation: KL(E + e_j || E) = ||e_j||^2/(2 sigma^2), adding up over independent
//     decryptions; by Pinsker the statistical distance between real and simulated shares is
//     at most sqrt(M)*B/(2 sigma). SimulationParamsLiteral takes K = 2^14, n = 32, M = 2^16:
//     B = 2^24.9, so sigma >= 2^71.9 for 2^-40; it uses 2^72.
//   - Key recovery: the Rényi divergence of order 2 is exp(M*B^2/sigma^2); at most 2 for
//     sigma >= B*sqrt(M/ln 2), and then any key-recovery attack that succeeds with probability
//     p against RLWE alone succeeds with at most sqrt(2p) (probability preservation): about
//     2^-63.5 for p = 2^-128. KeyRecoveryParamsLiteral: N = 2^12, B = 2^23.9, sigma 2^33.
//
// Assumptions: the flooding samples are an ideal discrete Gaussian (FloodSampler is a float64
// construction that passes the tests in flood_test.go but is not proven exact; an exact
// sampler such as Karney's is what would make the bound unconditional); RLWE at the
// HomomorphicEncryption.org 128-bit parameters; members enforce K and M (they do).
//
// The noise must still stay below the release grid: T shares put sigma*sqrt(T*N/2)/scale of
// noise into each slot, and NewParams requires that to be 2^3.5 below half a grid step. With
// sigma 2^72 that needs a scale of 2^115 for a 2^-30 grid, so log Q = 165 (3 x 55 bits), beyond
// the 128-bit bound for N = 4096 (109): the simulation set needs N = 8192.
//
// # CKKS or an exact scheme (BGV/BFV)
//
// With threshold BGV/BFV (lattigo's heint with mhe) decryption rounds the noise away, so the
// flooding noise only has to stay below Q/(2t) rather than below the CKKS scale. On the same
// bound that is the same budget: the sum needs max|sum|/grid distinct values, so t >= 2^78
// (sums to 2^48 on a 2^-30 grid), and Q > 2*t*sigma*sqrt(T)*tail = 2^78+72+3.5+3, about 2^157:
// again N = 8192 and three moduli. An exact scheme buys nothing in size. What it would buy,
// exact sums, this package gets too: encryptors round every input to the release grid, so a
// decrypted sum is a grid point plus noise far below half a step, and rounding recovers it
// exactly (TestEndToEndMatchesPlaintextSum). Staying on CKKS keeps the encoder, decoder and
// accumulator fast paths and the wire format; fedprop stays on CKKS.
//
// # Parameters and precision
//
// Two sets (ParamsLiteral, PresetLiteral):
//
//   - simulation (default): LogN=13 (4,096 real slots per ciphertext), LogQ=[55,55,55]
//     (log QP = 165 of the 218 allowed), scale 2^115, sigma 2^72, sums up to 2^48 (MaxAbsValue),
//     released on a 2^-30 grid;
//   - key-recovery: LogN=12 (2,048 slots), LogQ=[55,54] (log QP = 109, the bound), scale 2^67,
//     sigma 2^33, sums up to 2^40, released on a 2^-20 grid.
//
// Encrypt refuses values beyond MaxAbsValue, and callers clip each contribution to
// MaxAbsPerContribution. A released sum is exact for inputs on the grid; the raw decryption
// error before rounding (TestDecryptionNoiseIsBelowTheReleaseGrid) is about 2^-35.7 rms for the
// simulation set, far below its grid.
//
// # Randomness
//
// Member key material and encryption randomness come from an io.Reader the caller passes (nil
// means crypto/rand): a seeded source such as math/rand/v2's ChaCha8 makes simulations
// reproducible. Sealing is deterministic (synthetic nonces), so retried keygen tasks resend the
// same boxes. Two sources cannot be injected: the noise of public-key shares, drawn by lattigo
// v5's mhe.PublicKeyGenProtocol from its own crypto/rand-keyed PRNG, and the flooding noise of
// decryption shares, which FloodSampler keys from crypto/rand for every share (it protects the
// member's key, so nothing outside the member may choose it). Released sums are nevertheless
// reproducible: inputs are rounded to the release grid, and the noise stays far below half a
// step.
//
// # Performance
//
// On the development VM (2 shared vCPUs, load about 1; go test -run='^$' -bench=. ./secagg/),
// for 100 clients x 2,000 values, simulation set / key-recovery set: Encrypt 1.7 / 0.60 ms and
// 393,248 / 131,104 bytes per update (24.6x / 8.2x the float64 bytes); the coordinator's round
// (Reset, 100 Adds, AppendBinary) 2.1 / 0.39 ms, 43x / 12.7x a gonum float64 sum of the same
// vectors timed interleaved; six decryption shares plus combine and decode 13.9 / 5.3 ms; an
// N=10, T=6 setup 135 / 59 ms. A ciphertext of the simulation set carries 4,096 values, so
// per value it costs 96 bytes against the key-recovery set's 64: the price of simulation
// security for short vectors is the ring, not the flooding. Add streams the wire bytes
// through one AVX2 loop at memory speed.
//
// Four places replace a lattigo step with an equivalent faster one, each documented where it
// is: the RNS conversion of the encoder (encode.go) and of the decoder (decode.go), public-key
// encryption with samplers fed by an injectable AES-CTR stream instead of lattigo's internal
// blake2b PRNG (encrypt.go, prng.go), and the lazily reduced, AVX2-assisted accumulator of Sum
// (sum.go, addwords_amd64.s; the build tag purego selects plain Go). Tests check each against
// lattigo, exact arithmetic, or a full decryption.
//
// Objects that hold buffers (Encryptor, Sum, Decryptor, PublicKeyAggregator, Member) are not
// safe for concurrent use; make one per goroutine. Params values are immutable and shared.
package secagg
