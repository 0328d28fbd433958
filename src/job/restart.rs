//! Restart strategies on the virtual clock: fixed-delay, failure-rate, exponential-delay (with
//! seeded jitter) and none, with Flink's semantics. A strategy decides, at each failure, whether
//! the job restarts and after how long.
//!
//! ```
//! use faultline::job::{RestartDecision, RestartStrategy, RestartTracker};
//! use faultline::sim::{RngStreams, StreamName};
//!
//! let mut jitter = RngStreams::new(1).stream(StreamName::RestartJitter);
//! let mut tracker = RestartTracker::new(RestartStrategy::FixedDelay {
//!     attempts: 1,
//!     delay_ms: 10,
//! });
//! assert_eq!(
//!     tracker.on_failure(100, &mut jitter),
//!     RestartDecision::Restart { delay_ms: 10, restart: 1 }
//! );
//! assert!(matches!(
//!     tracker.on_failure(200, &mut jitter),
//!     RestartDecision::GiveUp { .. }
//! ));
//! ```

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// How a failed job is restarted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum RestartStrategy {
    /// Never restart: the first failure fails the job.
    None,
    /// Restart up to `attempts` times, `delay_ms` after each failure.
    FixedDelay {
        /// Restarts allowed.
        attempts: u32,
        /// Delay before each restart.
        delay_ms: u64,
    },
    /// Restart after `delay_ms` unless more than `max_failures` failures fall within the last
    /// `interval_ms`.
    FailureRate {
        /// Failures tolerated per interval.
        max_failures: u32,
        /// The sliding interval.
        interval_ms: u64,
        /// Delay before each restart.
        delay_ms: u64,
    },
    /// Restart after a backoff that starts at `initial_ms` and is multiplied by `multiplier` per
    /// failure up to `max_ms`; it resets once the job ran `reset_threshold_ms` without failing.
    /// Each delay is jittered by up to ±`jitter` of itself, drawn from the case's seed.
    ExponentialDelay {
        /// The first backoff.
        initial_ms: u64,
        /// The largest backoff.
        max_ms: u64,
        /// Growth per failure (at least 1).
        multiplier: f64,
        /// Failure-free running time that resets the backoff.
        reset_threshold_ms: u64,
        /// Jitter as a fraction of the backoff, 0..=1.
        jitter: f64,
        /// Restarts allowed between resets (`attempts-before-reset-backoff`); unbounded if absent.
        attempts: Option<u32>,
    },
}

impl fmt::Display for RestartStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartStrategy::None => write!(f, "none"),
            RestartStrategy::FixedDelay { attempts, delay_ms } => {
                write!(f, "fixed-delay({attempts} attempts, {delay_ms} ms)")
            }
            RestartStrategy::FailureRate {
                max_failures,
                interval_ms,
                delay_ms,
            } => write!(
                f,
                "failure-rate({max_failures} failures per {interval_ms} ms, {delay_ms} ms)"
            ),
            RestartStrategy::ExponentialDelay {
                initial_ms,
                max_ms,
                multiplier,
                reset_threshold_ms,
                jitter,
                attempts,
            } => {
                write!(f, "exponential-delay({initial_ms}..{max_ms} ms x{multiplier}, reset after {reset_threshold_ms} ms, jitter {jitter}")?;
                if let Some(attempts) = attempts {
                    write!(f, ", {attempts} attempts")?;
                }
                write!(f, ")")
            }
        }
    }
}

/// A restart strategy string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("restart strategy {input:?}: {reason}. Forms: none | fixed-delay:ATTEMPTS:DELAY_MS | failure-rate:MAX_FAILURES:INTERVAL_MS:DELAY_MS | exponential-delay:INITIAL_MS:MAX_MS:MULTIPLIER:RESET_MS:JITTER[:ATTEMPTS]")]
pub struct RestartParseError {
    input: String,
    reason: String,
}

impl FromStr for RestartStrategy {
    type Err = RestartParseError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| RestartParseError {
            input: input.to_string(),
            reason,
        };
        let parts: Vec<&str> = input.split(':').collect();
        let int = |index: usize, name: &str| -> Result<u64, RestartParseError> {
            parts[index]
                .trim()
                .parse::<u64>()
                .map_err(|_| fail(format!("{name} {:?} is not a whole number", parts[index])))
        };
        let fraction = |index: usize, name: &str| -> Result<f64, RestartParseError> {
            parts[index]
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| fail(format!("{name} {:?} is not a number", parts[index])))
        };
        let arity = |expected: &[usize]| {
            if expected.contains(&parts.len()) {
                Ok(())
            } else {
                Err(fail(format!(
                    "{} takes {} fields after the name",
                    parts[0],
                    expected[0] - 1
                )))
            }
        };
        let to_u32 = |value: u64, name: &str| {
            u32::try_from(value).map_err(|_| fail(format!("{name} {value} is too large")))
        };
        let strategy = match parts[0].trim() {
            "none" => {
                arity(&[1])?;
                RestartStrategy::None
            }
            "fixed-delay" => {
                arity(&[3])?;
                RestartStrategy::FixedDelay {
                    attempts: to_u32(int(1, "attempts")?, "attempts")?,
                    delay_ms: int(2, "delay")?,
                }
            }
            "failure-rate" => {
                arity(&[4])?;
                RestartStrategy::FailureRate {
                    max_failures: to_u32(int(1, "max failures")?, "max failures")?,
                    interval_ms: int(2, "interval")?,
                    delay_ms: int(3, "delay")?,
                }
            }
            "exponential-delay" => {
                arity(&[6, 7])?;
                let attempts = if parts.len() == 7 {
                    Some(to_u32(int(6, "attempts")?, "attempts")?)
                } else {
                    None
                };
                RestartStrategy::ExponentialDelay {
                    initial_ms: int(1, "initial backoff")?,
                    max_ms: int(2, "max backoff")?,
                    multiplier: fraction(3, "multiplier")?,
                    reset_threshold_ms: int(4, "reset threshold")?,
                    jitter: fraction(5, "jitter")?,
                    attempts,
                }
            }
            other => return Err(fail(format!("unknown strategy {other:?}"))),
        };
        strategy
            .validate()
            .map_err(|error| fail(error.to_string()))?;
        Ok(strategy)
    }
}

/// A restart strategy whose parameters are out of range (see [`RestartStrategy::validate`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidRestart {
    /// A failure-rate strategy over an empty interval.
    #[error("the interval must be positive")]
    ZeroInterval,
    /// An exponential delay whose first backoff exceeds its largest.
    #[error("initial backoff {initial_ms} exceeds max backoff {max_ms}")]
    InitialAboveMax {
        /// The first backoff.
        initial_ms: u64,
        /// The largest backoff.
        max_ms: u64,
    },
    /// An exponential delay that would shrink (or is not a number).
    #[error("multiplier {multiplier} is below 1")]
    MultiplierBelowOne {
        /// The multiplier.
        multiplier: f64,
    },
    /// Jitter that is not a fraction of the backoff.
    #[error("jitter {jitter} is outside 0..=1")]
    JitterOutOfRange {
        /// The jitter.
        jitter: f64,
    },
}

impl RestartStrategy {
    /// Checks the parameters' ranges.
    pub fn validate(&self) -> Result<(), InvalidRestart> {
        match *self {
            RestartStrategy::FailureRate { interval_ms: 0, .. } => {
                Err(InvalidRestart::ZeroInterval)
            }
            RestartStrategy::ExponentialDelay {
                initial_ms,
                max_ms,
                multiplier,
                jitter,
                ..
            } => {
                if initial_ms > max_ms {
                    Err(InvalidRestart::InitialAboveMax { initial_ms, max_ms })
                } else if multiplier.is_nan() || multiplier < 1.0 {
                    Err(InvalidRestart::MultiplierBelowOne { multiplier })
                } else if !(0.0..=1.0).contains(&jitter) {
                    Err(InvalidRestart::JitterOutOfRange { jitter })
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }
}

/// What the strategy decided about a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestartDecision {
    /// Restart after `delay_ms`; `restart` counts restarts since the job started.
    Restart {
        /// Delay before the restart.
        delay_ms: u64,
        /// 1 for the first restart.
        restart: u32,
    },
    /// Give up: the job fails for good, for `reason`.
    GiveUp {
        /// Why, naming the strategy.
        reason: String,
    },
}

/// The state a strategy keeps across failures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestartTracker {
    strategy: RestartStrategy,
    restarts: u32,
    failure_times_ms: Vec<u64>,
    backoff_ms: Option<u64>,
    attempts_since_reset: u32,
    last_restart_ms: Option<u64>,
}

impl RestartTracker {
    /// A tracker for `strategy`, before any failure.
    pub fn new(strategy: RestartStrategy) -> Self {
        Self {
            strategy,
            restarts: 0,
            failure_times_ms: Vec::new(),
            backoff_ms: None,
            attempts_since_reset: 0,
            last_restart_ms: None,
        }
    }

    /// The strategy.
    pub fn strategy(&self) -> &RestartStrategy {
        &self.strategy
    }

    /// Decides what follows a failure at `now_ms`; `jitter_rng` is the case's jitter stream.
    pub fn on_failure(&mut self, now_ms: u64, jitter_rng: &mut ChaCha8Rng) -> RestartDecision {
        self.failure_times_ms.push(now_ms);
        let strategy = self.strategy.clone();
        let delay = match strategy {
            RestartStrategy::None => {
                return self.give_up("the restart strategy is none".into());
            }
            RestartStrategy::FixedDelay { attempts, delay_ms } => {
                if self.restarts >= attempts {
                    return self.give_up(format!("{attempts} restarts used"));
                }
                delay_ms
            }
            RestartStrategy::FailureRate {
                max_failures,
                interval_ms,
                delay_ms,
            } => {
                // The window is (now - interval, now]: a failure exactly `interval_ms` ago has
                // left it.
                let recent = self
                    .failure_times_ms
                    .iter()
                    .filter(|t| now_ms - **t < interval_ms)
                    .count();
                if recent > max_failures as usize {
                    return self.give_up(format!("{recent} failures within {interval_ms} ms"));
                }
                delay_ms
            }
            RestartStrategy::ExponentialDelay {
                initial_ms,
                max_ms,
                multiplier,
                reset_threshold_ms,
                jitter,
                attempts,
            } => {
                let ran_ms = self
                    .last_restart_ms
                    .map(|restart| now_ms.saturating_sub(restart));
                if ran_ms.is_some_and(|ran| ran >= reset_threshold_ms) {
                    self.backoff_ms = None;
                    self.attempts_since_reset = 0;
                }
                if attempts.is_some_and(|limit| self.attempts_since_reset >= limit) {
                    return self.give_up(format!(
                        "{} restarts since the backoff last reset",
                        self.attempts_since_reset
                    ));
                }
                let backoff = match self.backoff_ms {
                    None => initial_ms,
                    Some(previous) => ((previous as f64 * multiplier).round() as u64).min(max_ms),
                };
                self.backoff_ms = Some(backoff);
                self.attempts_since_reset += 1;
                let spread = (backoff as f64 * jitter).round() as u64;
                if spread == 0 {
                    backoff
                } else {
                    // Seeded jitter, uniform in backoff ± spread, never below zero.
                    let offset = jitter_rng.random_range(0..=2 * spread);
                    (backoff + offset).saturating_sub(spread)
                }
            }
        };
        self.restarts += 1;
        self.last_restart_ms = Some(now_ms + delay);
        RestartDecision::Restart {
            delay_ms: delay,
            restart: self.restarts,
        }
    }

    fn give_up(&self, why: String) -> RestartDecision {
        RestartDecision::GiveUp {
            reason: format!("recovery suppressed by {}: {why}", self.strategy),
        }
    }
}
