//! Real kills. In process-kill mode a kill at a scheduler step really kills the process: it
//! writes down the harness's own state — where the seeded streams, the clock, the step count,
//! the restart strategy and the fault plan stand — and aborts itself (SIGABRT: no unwinding,
//! no flushing). Nothing of the job survives but what reached storage and the external
//! system. The next process reads the state back and carries on exactly as a simulated kill
//! would have: the same events follow, so a case's trace (and its hash) is the same in both
//! modes.

use std::path::Path;

use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::task::Failure;
use super::{RunError, RunStats, Runtime};
use crate::checkpoint::coordinator::CoordinatorState;
use crate::fault::InjectorState;
use crate::job::restart::RestartTracker;
use crate::sim::Scheduler;

/// What a process killed for real leaves for the next one to resume the run from: the
/// harness's state at the kill, never the job's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResumeState {
    /// The attempt the kill ended.
    pub attempt: u32,
    /// The kill, as the failure of that attempt.
    pub(super) failure: Failure,
    /// Virtual time at the kill.
    pub time_ms: u64,
    /// Events recorded before the kill, for the case's bound on events.
    pub events: u64,
    scheduler: Scheduler,
    jitter: ChaCha8Rng,
    restart: RestartTracker,
    storage: InjectorState,
    coordinator: CoordinatorState,
    stats: RunStats,
}

impl ResumeState {
    /// Reads the state a killed process left at `path`.
    pub fn read(path: &Path) -> Result<Self, RunError> {
        let failed = |reason: String| RunError::Resume {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| failed(e.to_string()))
    }
}

impl Runtime<'_> {
    /// The process dies, for real, at a kill that failed attempt `attempt`: the state to
    /// resume from is written where the runtime was told, then it aborts. It returns only when
    /// that state cannot be written (the harness's own directory failing, not a fault under
    /// test), with the error.
    pub(super) fn die(&mut self, attempt: u32, failure: Failure) -> RunError {
        let Some(path) = self.real_kills.clone() else {
            return RunError::Invalid("a kill to die of, but no real kills asked for".into());
        };
        // What storage did up to the kill is part of the story the next process continues.
        self.record_storage_events();
        let state = ResumeState {
            attempt,
            failure,
            time_ms: self.clock.now_ms(),
            events: self.events,
            scheduler: self.scheduler.clone(),
            jitter: self.jitter.clone(),
            restart: self.restart.clone(),
            storage: self.storage.save(),
            coordinator: self.coordinator.save(),
            stats: self.stats.clone(),
        };
        let failed = |reason: String| RunError::Resume {
            path: path.clone(),
            reason,
        };
        let bytes = match serde_json::to_vec(&state) {
            Ok(bytes) => bytes,
            Err(error) => return failed(error.to_string()),
        };
        if let Some(error) = self.log_error.take() {
            return RunError::EventLog(error);
        }
        // Written whole before the abort, by rename: the next process finds it or none.
        let temporary = path.with_extension("tmp");
        if let Err(error) =
            std::fs::write(&temporary, bytes).and_then(|()| std::fs::rename(&temporary, &path))
        {
            return failed(error.to_string());
        }
        // The real thing: no unwinding, no destructors, no flush.
        std::process::abort()
    }

    /// Takes up the harness's state a killed process left.
    pub(super) fn load(&mut self, state: &ResumeState) -> Result<(), RunError> {
        self.clock.advance_to_ms(state.time_ms);
        self.scheduler = state.scheduler.clone();
        self.jitter = state.jitter.clone();
        self.restart = state.restart.clone();
        self.storage
            .load(state.storage.clone())
            .map_err(|e| RunError::Invalid(format!("the resume state's fault plan: {e}")))?;
        self.coordinator.load(state.coordinator.clone());
        self.stats = state.stats.clone();
        self.events = state.events;
        Ok(())
    }
}
