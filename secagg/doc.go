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
// The coordinator is honest-but-curious: it sees the public key, the CRS, the sealed boxes,
// ciphertexts, aggregates and decryption shares, none of which decrypts anything but the
// aggregates the committee agreed to decrypt. Up to T-1 committee members may collude. The
// contribution count of an aggregate is the coordinator's claim: members check it against
// their min_contributors, and the audit logs (share digests on both sides) make a lie visible
// afterwards. There is no verifiable secret sharing: a member that sends inconsistent Shamir
// shares makes decryption fail (noticed, not silent).
//
// # Parameters and precision
//
// DefaultParamsLiteral: LogN=12 (2,048 real slots per ciphertext), LogQ=[55,54] (log QP = 109,
// the 128-bit bound for N=4096 with a ternary secret), scale 2^62, float64 encoder, smudging
// sigma 2^20, decrypted values released rounded to multiples of 2^-30 (lattigo's DecodePublic
// rounding). A sum decodes correctly up to Params.MaxAbsValue (about 3.5e13); Encrypt refuses
// larger values, and callers clip each contribution to MaxAbsPerContribution.
//
// Measured (TestEndToEndMatchesPlaintextSum, TestDecryptionNoiseIsBelowTheReleaseGrid): before
// rounding, a sum of 100 encrypted vectors decrypted by T=6 members is off by 2.6e-11 rms
// (1.1e-10 max over 2,000 values), the smudging noise; after rounding to the 2^-30 grid the
// error is at most about 5.4e-10 absolute. For sums of 10 weighted updates of magnitude ~1e3
// that is ~1.3e-13 relative; for magnitudes near 1e9 and above the float64 decoding dominates
// (~5e-16 relative).
//
// # Randomness
//
// Member key material and encryption randomness come from an io.Reader the caller passes (nil
// means crypto/rand): a seeded source such as math/rand/v2's ChaCha8 makes simulations
// reproducible. Sealing is deterministic (synthetic nonces), so retried keygen tasks resend the
// same boxes. Two sources cannot be injected: the noise of public-key shares, drawn by lattigo
// v5's mhe.PublicKeyGenProtocol from its own crypto/rand-keyed PRNG, and the flooding noise of
// decryption shares, which FloodSampler keys from crypto/rand for every share (it protects the
// member's key, so nothing outside the member may choose it). Decrypted sums therefore repeat
// exactly only up to the release grid: the raw error (above) is ~1/9 of the grid, so a rounded
// value differs between runs only when the true sum lies within about 1e-10 of a grid
// midpoint.
//
// # Performance
//
// On the development VM (2 shared vCPUs; go test -run='^$' -bench=. ./secagg/; best runs, the
// machine was often loaded by other builds), for 100 clients x 2,000 values: Encrypt ~0.6 ms
// and 131,104 bytes per update (8.2x the float64 bytes); the coordinator's round (Reset, 100
// Adds, AppendBinary) ~0.3-0.4 ms, 8.5-10x a gonum float64 sum of the same vectors timed
// interleaved; six decryption shares plus combine and decode ~4.5 ms; an N=10, T=6 setup
// ~60-130 ms. A ciphertext is 8x the bytes of the vector it carries, so the sum cannot get
// much closer to the plaintext one than that: Add streams the wire bytes through one AVX2
// loop at memory speed.
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
