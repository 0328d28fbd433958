//! faultline's integration tests: one binary, one module per part.
//!
//! - `support`: job shapes, seeded inputs and a runner of one phase shared by the parts.
//! - `campaign`: generated scenarios — sweeps with every fault kind, phase coverage, replayed
//!   hashes, a broken sink caught, shrunk and replayed from its scenario file, and real
//!   process kills (rescaled cases included) telling the simulated story event for event.
//! - `case`: the one case runner — an engine assertion, a panicking model, a flooding operator
//!   and a sink that never settles each become a typed violation of their case (the campaign
//!   goes on); a rescaled case's phases add up to one judged run; user operators or a window
//!   operator the job does not use are errors naming them.
//! - `determinism`: the same seed gives the same trace hash; different seeds, other schedules.
//! - `restore`: restoring each retained checkpoint of a run equals the model at that checkpoint;
//!   runs with injected panics and kills pass the oracle.
//! - `alignment`: aligned barriers give exactly-once output; at-least-once mode duplicates
//!   only replays, and the oracle rejects any other duplicate.
//! - `at_least_once`: a detector whose alerts depend on its state passes at-least-once cases
//!   with fan-in, judged against the records each stage received; its broken twins are caught.
//! - `restart`: each restart strategy's delays and give-up rule on the virtual clock.
//! - `catalogue`: recovery bug classes — broken sinks and backends plugged in through the
//!   public seams — each caught by the `Harness`, shrunk, and named by the property it breaks
//!   (an operator keeping its timers in a field, a backend resetting TTL timestamps, and window
//!   operators built through the window seam that skip their cleanup after a restore or forget
//!   their watermark and fire again, among them).
//! - `coordinator`: checkpoint expiry against the tolerable-failure rule; concurrent
//!   checkpoints overlapping through kills, the minimum pause, late notifications.
//! - `unaligned`: unaligned checkpoints under back-pressure — channel state persisted and
//!   handed back before new input on every backend, the aligned-checkpoint timeout, a retained
//!   unaligned checkpoint resumed at another parallelism in both kill modes, the restore's
//!   broken twins caught, damaged channel state failing loudly, a channel-state file left
//!   behind reported by the audit, refused settings.
//! - `restore_modes`: a retained checkpoint resumed NO_CLAIM stays whole and unreferenced (the
//!   first checkpoint after it self-contained) in both kill modes; resumed CLAIM it becomes the
//!   job's, reused and subsumed; the twin that claims a NO_CLAIM checkpoint is caught.
//! - `operator_harness`: one operator driven step by step on every backend — snapshots through
//!   real files, restored split into two subtasks and merged back; wrong routing refused.
//! - `oracle`: a deliberately broken backend, plugged into the public seam, is caught and named;
//!   a backend reporting damage fails loudly only when it names the checkpoint file.
//! - `keygroups`: key-group assignment matches Flink's, from JVM-computed fixtures.
//! - `crash`: a simulated machine crash after every create, write, sync and rename of every
//!   checkpoint and savepoint write, with unsynced data lost, torn or kept: the restart restores
//!   the previous or the new snapshot, equal to the model, and output stays exactly once.
//! - `corruption`: a corrupt or truncated `_metadata` fails restore with the file named; a
//!   stale copy that would repair a file damaged before is no corruption.
//! - `examples`: each example of `examples/` run as a module under the harness.
//! - `typed`: a user's own record, key and state types end to end — reducing, aggregating and
//!   map state, a side output, the user's input strategy, typed scenario files — with a broken
//!   twin caught and a failing model reported as the case's violation.
//! - `time`: event-time watermarks per partition, combined by every task, idle partitions left
//!   out after their timeout, regenerated after a restore; the watermark judgement's broken
//!   twins (a real trace with one mark changed) caught.
//! - `timers`: keyed timers through the keyed context on every backend — deduplicated, deleted,
//!   fired in order by watermarks and the virtual clock, snapshotted and restored across
//!   backends and parallelisms; in the engine fired once the watermark passes them, never
//!   twice in an attempt, restored after a kill, overdue processing timers fired once, also
//!   after a clock jump; a timed model (the inactivity example) judging every firing along the
//!   events and catching an engine that forgets restored timers.
//! - `ttl`: state TTL on every backend — an expired value never visible before or after a
//!   restore, full snapshots and RocksDB's compaction filter dropping expired cells (and only
//!   those), a user's TTL operator passing campaigns, generated expiring sums failing on a
//!   backend that resets TTL timestamps on restore.
//! - `windows`: event-time tumbling, sliding and session windows (sum, count, max, allowed
//!   lateness) recovering from kills and panics on every backend, judged exactly along the
//!   events by the window models and, for tumbling ones, balanced against what each window
//!   received; sessions merged through a record between them; the model's broken twins (a result changed, a firing dropped or repeated, a record wrongly
//!   late) caught; the faults in time fire where they say; an engine that forgets restored
//!   timers caught; a rescaled window job restored twice from the first phase's savepoint
//!   passes; misplaced windows and clock jumps past a year refused.
//! - `fuzz_corpus`: every committed fuzz corpus file replayed through the fuzz targets' entry
//!   points; seeds regenerated from fresh checkpoints all accepted; truncations and hostile
//!   lengths rejected without a panic.
//! - `paths`: hostile roots (paths climbing out, linked directories, pipes) are refused by restore,
//!   retention and garbage collection, and a canary outside the root survives.
//! - `rocksdb`: incremental uploads, the shared-file audit under retention, savepoints (relocated,
//!   deleted, across backends and parallelisms), damage to each file kind, and native checkpoints
//!   opened with plain RocksDB.
//! - `scenarios`: the named scenarios of `fixtures/scenarios/` as trace snapshots; replay with a
//!   determinism check; explore shards merging into the whole campaign.
//! - `cli`: the binary's demos, a snapshot of the `demo recovery` story, and its errors for bad
//!   flags and malformed CSV.

mod alignment;
mod at_least_once;
mod campaign;
mod case;
mod catalogue;
mod cli;
mod coordinator;
mod corruption;
mod crash;
mod determinism;
mod examples;
mod fuzz_corpus;
mod keygroups;
mod operator_harness;
mod oracle;
mod paths;
mod restart;
mod restore;
mod restore_modes;
#[cfg(feature = "rocksdb")]
mod rocksdb;
mod scenarios;
mod support;
mod time;
mod timers;
mod ttl;
mod typed;
mod unaligned;
mod windows;
