//! The seeded scheduler: among the tasks that can make progress, picks the one that runs next,
//! and bounds the number of steps a case may take.
//!
//! ```
//! use faultline::sim::{RngStreams, Scheduler, StreamName};
//!
//! let picks = |seed| {
//!     let rng = RngStreams::new(seed).stream(StreamName::Scheduler);
//!     let mut scheduler = Scheduler::new(rng, seed, 100);
//!     (0..10).map(|_| scheduler.pick(&[0, 1, 2]).unwrap()).collect::<Vec<_>>()
//! };
//! // The same seed picks the same tasks in the same order.
//! assert_eq!(picks(3), picks(3));
//!
//! let mut bounded = Scheduler::new(RngStreams::new(3).stream(StreamName::Scheduler), 3, 2);
//! assert!(bounded.tick().is_ok());
//! assert!(bounded.tick().is_ok());
//! assert!(bounded.tick().is_err(), "the step bound ends a case that would run forever");
//! ```

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// A run hit its step bound: the job neither finished nor failed for good. The seed is named so
/// the run can be replayed under a debugger.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("seed {seed}: no end after {steps} steps (the step bound); replay with --seed {seed}")]
pub struct StepLimit {
    /// The root seed of the case.
    pub seed: u64,
    /// Steps taken when the bound was hit.
    pub steps: u64,
}

/// Picks the next task from the runnable set, with its own random stream. Serializable, so a
/// process killed for real can leave it for the next one to carry on exactly where it was.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Scheduler {
    rng: ChaCha8Rng,
    seed: u64,
    steps: u64,
    steps_max: u64,
}

impl Scheduler {
    /// A scheduler drawing from `rng` that allows at most `steps_max` steps.
    pub fn new(rng: ChaCha8Rng, seed: u64, steps_max: u64) -> Self {
        assert!(steps_max > 0, "a step bound of zero runs nothing");
        Self {
            rng,
            seed,
            steps: 0,
            steps_max,
        }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Counts one step, or fails when the bound is reached.
    pub fn tick(&mut self) -> Result<u64, StepLimit> {
        if self.steps >= self.steps_max {
            return Err(StepLimit {
                seed: self.seed,
                steps: self.steps,
            });
        }
        self.steps += 1;
        Ok(self.steps)
    }

    /// Picks one of `candidates` uniformly. `candidates` must be in a deterministic order (the
    /// caller builds it by walking tasks in id order), or the pick would not replay.
    pub fn pick<T: Copy>(&mut self, candidates: &[T]) -> Option<T> {
        match candidates.len() {
            0 => None,
            // One candidate still draws, so that the stream position depends only on the number
            // of decisions taken, not on how many of them happened to be forced.
            len => Some(candidates[self.rng.random_range(0..len)]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{RngStreams, StreamName};

    #[test]
    fn the_step_bound_names_the_seed() {
        let rng = RngStreams::new(9).stream(StreamName::Scheduler);
        let mut scheduler = Scheduler::new(rng, 9, 2);
        assert_eq!(scheduler.tick(), Ok(1));
        assert_eq!(scheduler.tick(), Ok(2));
        let error = scheduler.tick().unwrap_err();
        assert_eq!(error, StepLimit { seed: 9, steps: 2 });
        assert!(error.to_string().contains("--seed 9"));
    }

    #[test]
    fn pick_is_none_only_for_no_candidates() {
        let rng = RngStreams::new(1).stream(StreamName::Scheduler);
        let mut scheduler = Scheduler::new(rng, 1, 10);
        assert_eq!(scheduler.pick::<u32>(&[]), None);
        assert_eq!(scheduler.pick(&[5]), Some(5));
        let picked = scheduler.pick(&[1, 2, 3]).unwrap();
        assert!((1..=3).contains(&picked));
    }
}
