//! A run, attempt after attempt: it starts (or resumes after a real kill), runs attempts until
//! one finishes or stops with a savepoint, handles each failure — a kill's lost writes, the
//! restart strategy's decision — and ends with what its trace does not hold.

use super::attempt::{AttemptEnd, Halt};
use super::task::*;
use super::{PhaseEnd, Runtime};
use crate::checkpoint::registry;
use crate::engine::{JobStatus, RunError};
use crate::fault::{FaultKind, FaultSite};
use crate::job::restart::RestartDecision;
use crate::job::Positions;
use crate::state::StateView;
use crate::trace::{Event, JobStarted};

/// How an attempt came out.
enum Attempted {
    /// The job finished or stopped: the run is over.
    Ended {
        status: JobStatus,
        final_state: Option<StateView>,
        positions: Positions,
    },
    /// A failure ended the attempt.
    Failed(Failure),
    /// A bound ended the run.
    Halted(Halt),
}

impl Runtime<'_> {
    /// Runs attempts until the job ends, and returns how it ended.
    pub(super) fn execute(&mut self) -> Result<PhaseEnd, RunError> {
        let (mut attempt, mut failure) = match self.resume.take() {
            Some(state) => (state.attempt, Some(state.failure)),
            None => {
                self.start();
                (self.config.first_attempt, None)
            }
        };
        let mut end_positions = Positions::start(self.input.partitions().len());
        let (status, final_state) = loop {
            let failed = match failure.take() {
                Some(failure) => failure,
                None => match self.attempt(attempt)? {
                    Attempted::Ended {
                        status,
                        final_state,
                        positions,
                    } => {
                        end_positions = positions;
                        break (status, final_state);
                    }
                    // Every kill (at a step, a checkpoint phase, inside a write, a machine
                    // crash) kills this process for real when the run was told to.
                    Attempted::Failed(failure) if failure.killed() && self.real_kills.is_some() => {
                        return Err(self.die(attempt, failure));
                    }
                    Attempted::Failed(failure) => failure,
                    Attempted::Halted(halt) => break (self.halted(halt), None),
                },
            };
            match self.failed(attempt, failed) {
                Some(status) => break (status, None),
                None => attempt += 1,
            }
        };
        let end = self.finish(status, final_state, end_positions);
        match self.log_error.take() {
            Some(error) => Err(RunError::EventLog(error)),
            None => Ok(end),
        }
    }

    /// The run starts: where a continuing case left off (after a rescale), its ids after any
    /// checkpoint already in storage, so a run on a used root never overwrites one.
    fn start(&mut self) {
        let job = self.job;
        self.clock.advance_to_ms(self.config.start_ms);
        self.record(Event::JobStarted(JobStarted {
            job: job.name.clone(),
            seed: self.config.seed,
            backend: self.backends.name().to_string(),
            stages: job
                .stage_names()
                .into_iter()
                .zip(job.stage_parallelisms())
                .collect(),
            interval_ms: self.config.checkpoint.interval_ms,
            mode: self.config.checkpoint.mode,
            restart: self.config.restart.clone(),
        }));
        self.coordinator
            .ids_above(registry::highest_snapshot_id(&self.storage));
    }

    /// Runs attempt `attempt`: the machine comes back (corruption faults land first), the
    /// attempt is built and restored, and runs to its end.
    fn attempt(&mut self, attempt: u32) -> Result<Attempted, RunError> {
        self.stats.attempts += 1;
        if attempt > 0 {
            let jump_ms = self.storage.downtime_ms(attempt);
            if jump_ms > 0 {
                self.record(Event::FaultFired {
                    fault: FaultKind::ClockJump,
                    site: FaultSite::BeforeRestore,
                });
                self.clock.advance_ms(jump_ms);
                self.record(Event::ClockJumped {
                    by_ms: jump_ms,
                    now_ms: self.clock.now_ms(),
                });
            }
            for corruption in self.storage.restart(attempt) {
                self.record(Event::FaultFired {
                    fault: FaultKind::Corrupt,
                    site: FaultSite::BeforeRestore,
                });
                self.record(Event::Corrupted(corruption));
            }
        }
        // Every attempt consumes a step, so the step bound also bounds a restart loop that
        // never reaches a step (a strategy without a limit restoring a corrupt checkpoint).
        if let Err(limit) = self.scheduler.tick() {
            return Ok(Attempted::Halted(Halt::Steps(limit)));
        }
        let mut execution = match self.start_attempt(attempt) {
            Ok(execution) => execution,
            Err(failure) => return Ok(Attempted::Failed(failure)),
        };
        let status = match self.run_attempt(&mut execution) {
            Ok(AttemptEnd::Finished) => JobStatus::Finished,
            Ok(AttemptEnd::Stopped(savepoint)) => JobStatus::Stopped { savepoint },
            Ok(AttemptEnd::Cancelled(checkpoint)) => JobStatus::Cancelled { checkpoint },
            Ok(AttemptEnd::Failed(failure)) => return Ok(Attempted::Failed(failure)),
            Err(halt) => return Ok(Attempted::Halted(halt)),
        };
        // A finished job owes the whole input, whatever a user's reader read.
        let positions = match status {
            JobStatus::Finished => self.input.end_positions(),
            _ => execution.source_positions(self.input.partitions().len()),
        };
        let final_state = match self.dump_state(&execution) {
            Ok(state) => Some(state),
            // A backend holding cells it should not (a key in two subtasks): the oracle's to
            // report, with the run kept.
            Err(failure) => {
                let reason = format!("{}: {}", failure.task, failure.cause);
                self.record(Event::FinalStateUnreadable {
                    reason: reason.clone(),
                });
                self.final_state_error = Some(reason);
                None
            }
        };
        Ok(Attempted::Ended {
            status,
            final_state,
            positions,
        })
    }

    /// A failure ended attempt `attempt`: a kill loses or tears the writes no commit point made
    /// durable, then the restart strategy decides. Returns the job's status when it gives up.
    fn failed(&mut self, attempt: u32, failure: Failure) -> Option<JobStatus> {
        self.record(Event::Failure {
            attempt,
            task: failure.task.clone(),
            cause: failure.cause.clone(),
        });
        if failure.killed() {
            let lost = self.storage.kill();
            if lost.writes > 0 {
                self.record(Event::WritesLost {
                    writes: lost.writes,
                    lost: lost.lost,
                    torn: lost.torn,
                });
            }
        }
        let decision = self
            .restart
            .on_failure(self.clock.now_ms(), &mut self.jitter);
        let status = match decision {
            RestartDecision::GiveUp { reason } => {
                self.record(Event::JobFailed {
                    reason: reason.clone(),
                });
                Some(JobStatus::Failed {
                    reason: format!(
                        "{reason} (last failure: {}: {})",
                        failure.task, failure.cause
                    ),
                })
            }
            RestartDecision::Restart { delay_ms, restart } => {
                self.record(Event::Restarting {
                    restart,
                    delay_ms,
                    strategy: self.restart.strategy().clone(),
                });
                self.clock.advance_ms(delay_ms);
                None
            }
        };
        self.last_failure = Some(failure);
        status
    }

    /// A bound ended the run: a failure for the oracle to report (liveness for the step
    /// bound, resources for the others), with the trace so far, rather than an error that
    /// would lose the case.
    fn halted(&mut self, halt: Halt) -> JobStatus {
        let reason = match halt {
            Halt::Steps(limit) => {
                self.record(Event::JobFailed {
                    reason: limit.to_string(),
                });
                limit.to_string()
            }
            Halt::Resource { resource, limit } => {
                self.record(Event::ResourceExhausted { resource, limit });
                format!("{resource} exceeded the bound of {limit}")
            }
        };
        let last = self
            .last_failure
            .as_ref()
            .map_or("none".to_string(), |f| format!("{}: {}", f.task, f.cause));
        JobStatus::Failed {
            reason: format!("{reason} (last failure: {last})"),
        }
    }

    /// The run is over: says how, and gathers what its trace does not hold.
    fn finish(
        &mut self,
        status: JobStatus,
        final_state: Option<StateView>,
        end_positions: Positions,
    ) -> PhaseEnd {
        match &status {
            JobStatus::Finished => self.record(Event::JobFinished {
                visible: self.store.visible().len(),
            }),
            JobStatus::Stopped { savepoint } => self.record(Event::JobStopped {
                savepoint: savepoint.clone(),
            }),
            JobStatus::Cancelled { checkpoint } => self.record(Event::JobCancelled {
                checkpoint: *checkpoint,
            }),
            JobStatus::Failed { .. } => {}
        }
        self.stats.steps = self.scheduler.steps();
        self.stats.time_ms = self.clock.now_ms();
        PhaseEnd {
            status,
            final_state,
            final_state_error: self.final_state_error.take(),
            store: std::mem::take(&mut self.store),
            stats: self.stats.clone(),
            retained_checkpoints: self.coordinator.retained(),
            savepoints: self.coordinator.savepoints_taken().to_vec(),
            end_positions,
        }
    }
}
