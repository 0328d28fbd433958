//! A scenario: one whole case — job, input, backend, configuration, faults and seed — as a TOML
//! file. Campaigns generate scenarios, shrink failing ones and write them out; `faultline replay`
//! runs one; `fixtures/scenarios/` holds named ones whose traces are snapshot-tested.
//!
//! ```
//! use faultline::campaign::Scenario;
//!
//! let scenario = Scenario::from_toml(
//!     r#"
//! name = "one-panic"
//! seed = 7
//! backend = "memory"
//! checkpoint = { interval_ms = 5 }
//! restart = { kind = "fixed-delay", attempts = 3, delay_ms = 10 }
//! faults = [{ kind = "panic", stage = "sum", subtask = 0, attempt = 0, record_index = 4 }]
//!
//! [job]
//! name = "sum"
//! source = { parallelism = 1, emit_ms = 1 }
//! sink = { kind = "two-phase-commit" }
//! stages = [{ name = "sum", op = { kind = "sum" }, parallelism = 1 }]
//!
//! [input]
//! kind = "generated"
//! records = 20
//! keys = 3
//! min_value = 0
//! max_value = 100
//! "#,
//!     "doc example",
//! )?;
//! let dir = tempfile::tempdir()?;
//! let (report, fired) = scenario.run(dir.path(), None)?;
//! assert_eq!(fired.len(), 1, "the panic fired");
//! assert!(report.verdict.passed(), "{}", report.verdict);
//! assert_eq!(report.outcome.restores.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::Path;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{run_case_seams, CaseError, CaseReport, Seams};
use crate::check;
use crate::checkpoint::{CheckpointConfig, SavepointRequest};
use crate::engine::RunConfig;
use crate::engine::{JobStatus, RunOutcome};
use crate::fault::{Fault, FaultKind, FaultSchedule, FaultSite};
use crate::job::{ExternalStore, Input, InputRecord, JobSpec, RestartStrategy, SinkFactory};
use crate::sim::{RngStreams, StreamName};
use crate::state::SavepointFormat;
use crate::state::{BackendKind, StateBackendFactory};

/// Where a scenario's records come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum InputSpec {
    /// `records` records over `keys` keys (`k0`, `k1`, ...) with values in
    /// `min_value..=max_value`, drawn from the scenario seed's workload stream.
    Generated {
        /// Number of records.
        records: u32,
        /// Number of distinct keys.
        keys: u32,
        /// Smallest value.
        min_value: i64,
        /// Largest value.
        max_value: i64,
    },
    /// A transactions CSV (`transaction_id,account,amount`).
    Csv {
        /// The file.
        path: std::path::PathBuf,
    },
}

fn default_capacity() -> usize {
    4
}

fn default_true() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

/// One case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A name for reports.
    pub name: String,
    /// The root seed: scheduling, generated input, fault choices.
    pub seed: u64,
    /// The state backend.
    pub backend: BackendKind,
    /// Fault kinds this case's swarm configuration enabled (informational: logged at the start).
    #[serde(default)]
    pub swarm: Vec<String>,
    /// The job.
    pub job: JobSpec,
    /// Its input.
    pub input: InputSpec,
    /// Checkpointing.
    pub checkpoint: CheckpointConfig,
    /// Restart strategy.
    pub restart: RestartStrategy,
    /// Faults, each firing at most once.
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// Savepoints to take.
    #[serde(default)]
    pub savepoints: Vec<SavepointRequest>,
    /// Channel capacity (default 4).
    #[serde(default = "default_capacity")]
    pub channel_capacity: usize,
    /// Stop with a savepoint and resume at another parallelism. Default none.
    #[serde(default)]
    pub rescale: Option<Rescale>,
    /// The engine checks restored files against their recorded checksums before the backend
    /// reads them (default true; see [`RunConfig::verify_restored_files`]).
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub verify_restored_files: bool,
}

/// A restore at another parallelism, in the middle of a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rescale {
    /// When the job is stopped with a canonical savepoint.
    pub at_ms: u64,
    /// The new parallelism of each operator stage, in order (extra entries are ignored).
    pub parallelism: Vec<u16>,
}

/// A scenario file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// Not readable.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Not valid TOML for a scenario.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What the parser said, with the line.
        message: String,
    },
    /// Valid TOML, but not a runnable scenario.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
}

impl Scenario {
    /// Parses and validates a scenario; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ScenarioError> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        let invalid = |message: String| ScenarioError::Invalid {
            path: origin.to_string(),
            message,
        };
        scenario
            .job
            .validate()
            .map_err(|e| invalid(e.to_string()))?;
        scenario.restart.validate().map_err(invalid)?;
        if let Some(rescale) = &scenario.rescale {
            let mut job = scenario.job.clone();
            for (stage, parallelism) in job.stages.iter_mut().zip(&rescale.parallelism) {
                stage.parallelism = *parallelism;
            }
            job.validate()
                .map_err(|e| invalid(format!("rescale: {e}")))?;
        }
        if let InputSpec::Generated {
            records,
            keys,
            min_value,
            max_value,
        } = &scenario.input
        {
            if *keys == 0 || *records > 1_000_000 || min_value > max_value {
                return Err(invalid(format!("generated input needs keys >= 1, records <= 1000000 and min_value <= max_value (keys {keys}, records {records}, {min_value}..={max_value})")));
            }
        }
        if scenario.checkpoint.interval_ms == 0 || scenario.channel_capacity == 0 {
            return Err(invalid(
                "checkpoint.interval_ms and channel_capacity must be positive".into(),
            ));
        }
        Ok(scenario)
    }

    /// Reads a scenario file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// The scenario as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a scenario always serializes")
    }

    /// The input records, partitioned as the job's source expects.
    pub fn input(&self) -> Result<Input, ScenarioError> {
        let records = match &self.input {
            InputSpec::Generated {
                records,
                keys,
                min_value,
                max_value,
            } => {
                let mut rng = RngStreams::new(self.seed).stream(StreamName::Workload);
                (0..*records)
                    .map(|i| InputRecord {
                        id: format!("r{i}"),
                        key: format!("k{}", rng.random_range(0..*keys)),
                        value: rng.random_range(*min_value..=*max_value),
                    })
                    .collect()
            }
            InputSpec::Csv { path } => {
                let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                crate::job::csv::parse_transactions(&text)
                    .map_err(|e| ScenarioError::Invalid {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    })?
                    .records
            }
        };
        Ok(Input::partitioned(
            &records,
            self.job.source.partition_count(),
        ))
    }

    /// The run configuration (storage audits on).
    pub fn run_config(&self) -> RunConfig {
        let mut config = RunConfig::new(self.seed, self.checkpoint.clone(), self.restart.clone());
        config.channel_capacity = self.channel_capacity;
        config.savepoints = self.savepoints.clone();
        config.audit_storage = true;
        config.verify_restored_files = self.verify_restored_files;
        config
    }

    /// Runs the scenario in `dir` (optionally with a user's sink) and checks it; also returns
    /// the faults that fired, as (kind, point). With a rescale, the job is stopped with a
    /// canonical savepoint and resumed at the new parallelism on the same checkpoint root and
    /// external store; one fault schedule spans both phases and the oracle judges them as one
    /// run.
    pub fn run(
        &self,
        dir: &Path,
        sink: Option<&SinkFactory>,
    ) -> Result<(CaseReport, Vec<(FaultKind, FaultSite)>), CaseError> {
        self.run_with(
            dir,
            Seams {
                sink,
                ..Seams::default()
            },
        )
    }

    /// [`Scenario::run`] with a user's sink and state backend in place of the built-in ones.
    pub fn run_with(
        &self,
        dir: &Path,
        seams: Seams<'_>,
    ) -> Result<(CaseReport, Vec<(FaultKind, FaultSite)>), CaseError> {
        let input = self
            .input()
            .map_err(|e| CaseError::Scenario(e.to_string()))?;
        let built_in;
        let backends: &dyn StateBackendFactory = match seams.backend {
            Some(user) => user,
            None => {
                built_in = self.backend.factory().map_err(CaseError::Scenario)?;
                built_in.as_ref()
            }
        };
        let mut faults = FaultSchedule::with_seed(self.faults.clone(), self.seed);
        let mut first = self.run_config();
        if let Some(rescale) = &self.rescale {
            first.savepoints.push(SavepointRequest {
                at_ms: rescale.at_ms,
                name: "rescale".into(),
                format: SavepointFormat::Canonical,
                stop: true,
            });
        }
        let before = run_case_seams(
            &self.job,
            &input,
            &first,
            backends,
            &mut faults,
            dir,
            ExternalStore::new(),
            seams,
        )?;
        let rescale = match &self.rescale {
            Some(rescale) if matches!(&before.outcome.status, JobStatus::Stopped { savepoint } if savepoint == "rescale") => {
                rescale
            }
            // No rescale, or finished before the rescale point, or failed: the first phase is
            // the whole case.
            _ => return Ok((before, faults.fired().to_vec())),
        };
        let mut job = self.job.clone();
        for (stage, parallelism) in job.stages.iter_mut().zip(&rescale.parallelism) {
            stage.parallelism = *parallelism;
        }
        let mut second = self.run_config();
        // Attempt numbers and time continue, so faults keyed by attempt fire once overall.
        second.first_attempt = before.outcome.stats.attempts;
        second.start_ms = before.outcome.stats.time_ms;
        let store = before.outcome.store.clone();
        let after = run_case_seams(
            &job,
            &input,
            &second,
            backends,
            &mut faults,
            dir,
            store,
            seams,
        )?;
        let partitions = input.partitions().len();
        let (mut trace, first_end) = before.outcome.into_parts();
        let (second_trace, mut end) = after.outcome.into_parts();
        trace.extend(second_trace);
        if end.final_state_error.is_none() {
            end.final_state_error = first_end.final_state_error;
        }
        let mut outcome = RunOutcome::from_trace(trace, end, partitions);
        // The restored state is judged by the stage names it has in both phases; the final
        // state and output are those of the whole input.
        let verdict = super::judge(&mut outcome, seams, |outcome| {
            check::check_rescaled_run_with(
                &self.job,
                &job,
                &input,
                self.checkpoint.mode,
                self.seed,
                outcome,
                seams.operators,
            )
        })?;
        let trace_hash = outcome.trace.hash();
        Ok((
            CaseReport {
                outcome,
                verdict,
                trace_hash,
            },
            faults.fired().to_vec(),
        ))
    }
}
