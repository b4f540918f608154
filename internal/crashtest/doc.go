// Package crashtest holds the coordinator's crash-consistency tests. They build the fedprop
// binary, run `fedprop coordinator` as a child process over a bbolt file or a PostgreSQL
// schema, connect in-process client agents to it over gRPC on 127.0.0.1, and kill it with
// SIGKILL at chosen points of its driver (FEDPROP_CRASH_POINT, see internal/crashpoint):
// while collecting results, when a result completes a phase's aggregate, just before and
// just after the store's commit. After each kill they check the store (no committed version
// lost, changed, skipped or duplicated), restart the coordinator, and check that the run
// completes with every version exactly once and the model a crash-free run gives.
//
// The same package holds the fail-over test (two replicas over one PostgreSQL database, the
// leader killed mid-run) and the client-crash test (a client killed in the middle of a task,
// whose retried result is accepted once).
//
// The package has no code outside its tests.
package crashtest
