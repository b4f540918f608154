// Package coordinator is the coordinator's role: it runs a federated training run from the
// clients' registrations to committed, reviewable model versions, without reading a record or
// any single client's contribution.
//
// Core is the run's state machine in the shape of etcd raft's RawNode: registrations, polls,
// results and ticks in; Actions (persist this run record, commit this version, log these
// notes) out; no I/O, no goroutine, no clock. A run moves through phases (statistics, then
// per round train and evaluate; in he mode the committee's setup and each aggregate's
// decryption), each a collection of tasks to a cohort with a deadline, a quorum and retries,
// written once for every phase. What differs between phases is delegated:
//
//   - the train round (round.go) in Flower's shape: configure draws the cohort and fixes what
//     the tasks carry, combine sees each accepted result, finalize turns the sum into the mean
//     update, which strategy.Strategy folds into the model; differential privacy is a
//     decorator around it that samples, noises and accounts through package privacy;
//   - the secure-aggregation committee (committee.go): what each setup step asks and accepts,
//     which members decrypt an aggregate, and the combination of their shares (package
//     secagg); the members' own checks make a coordinator that lies about any of it fail;
//   - the contribution bounds (bounds.go) and the differencing rules of decryptions
//     (decryptions.go) that keep one client's values out of reach.
//
// Server is Core's driver: one loop that owns it, persists its actions through Records (the
// typed view of a store.Store) with the audit entries they imply, serves the client, model and
// admin calls the transports make, and drives the release gate (release/governance).
package coordinator
