//! A scenario: one whole case — job, input, backend, configuration, faults and seed — as a TOML
//! file. Campaigns generate scenarios, shrink failing ones and write them out; `faultline replay`
//! runs one; `fixtures/scenarios/` holds named ones whose traces are snapshot-tested.
//!
//! ```
//! use faultline::campaign::{Case, KillMode, Scenario, Seams};
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
//! let report = Case::new(scenario, Seams::default()).run(dir.path(), &KillMode::Sim)?;
//! assert_eq!(report.fired().len(), 1, "the panic fired");
//! assert!(report.verdict.passed(), "{}", report.verdict);
//! assert_eq!(report.outcome.restores.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::Path;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{CheckpointConfig, SavepointRequest};
use crate::engine::{RunConfig, Sabotage};
use crate::fault::Fault;
use crate::job::{Input, InputRecord, JobSpec, RestartStrategy};
use crate::sim::{RngStreams, StreamName};
use crate::state::{BackendKind, RestoreMode, SavepointFormat};

/// Where a scenario's records come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum InputSpec {
    /// `records` [`Transaction`](crate::job::Transaction)s over `keys` accounts (`k0`, `k1`,
    /// ...), keyed by account, with amounts in `min_value..=max_value` cents, drawn from the
    /// scenario seed's workload stream, and event times with bounded disorder and some late
    /// records from its event-time stream ([`super::eventtime`]).
    Generated {
        /// Number of records.
        records: u32,
        /// Number of distinct keys.
        keys: u32,
        /// Smallest value.
        min_value: i64,
        /// Largest value.
        max_value: i64,
        /// Keys chosen to lie on both sides of every subtask range boundary at every parallelism
        /// a keyed stage runs at, and in the first and last key groups, rather than drawn
        /// freely (default false).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        boundary_keys: bool,
    },
    /// A transactions CSV (`transaction_id,account,amount`).
    Csv {
        /// The file.
        path: std::path::PathBuf,
    },
    /// A JSON Lines file of objects, keyed by one of their fields.
    JsonLines {
        /// The file.
        path: std::path::PathBuf,
        /// The field holding each record's key.
        key: String,
        /// The field holding each record's id (text); without one, ids are `r0`, `r1`, ...
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// These records, in order.
    Records {
        /// The records.
        records: Vec<InputRecord>,
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
    /// A savepoint or retained checkpoint directory the job starts from (NO_CLAIM; see
    /// [`RunConfig::initial_snapshot`]). Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_snapshot: Option<std::path::PathBuf>,
    /// Audit the whole checkpoint root after every completion and restore (default true; the
    /// demos, which tell a story, leave it off).
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub audit_storage: bool,
    /// Deliberate engine defects, for the harness's own tests (see [`RunConfig::sabotage`]).
    #[doc(hidden)]
    #[serde(default, skip_serializing_if = "Sabotage::is_none")]
    pub sabotage: Sabotage,
}

/// A restore at another parallelism, in the middle of a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rescale {
    /// When the job is stopped with a canonical savepoint, or (from a checkpoint) from when
    /// the next completed checkpoint cancels it.
    pub at_ms: u64,
    /// The new parallelism of each operator stage, in order (extra entries are ignored).
    pub parallelism: Vec<u16>,
    /// What the job resumes from (default a savepoint).
    #[serde(default, skip_serializing_if = "RescaleFrom::is_savepoint")]
    pub from: RescaleFrom,
    /// How the resumed job restores a retained checkpoint (`from = "checkpoint"`): `no-claim`
    /// (default, as in Flink) or `claim`. A savepoint is always restored NO_CLAIM.
    #[serde(default, skip_serializing_if = "is_no_claim")]
    pub restore_mode: RestoreMode,
}

fn is_no_claim(mode: &RestoreMode) -> bool {
    *mode == RestoreMode::NoClaim
}

/// What a rescaled job resumes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RescaleFrom {
    /// A stop-with-savepoint (canonical), always aligned.
    #[default]
    Savepoint,
    /// The retained checkpoint whose completion cancelled the job: unaligned, when
    /// checkpoints are, with the records in flight in its channel state.
    Checkpoint,
}

impl RescaleFrom {
    fn is_savepoint(&self) -> bool {
        *self == RescaleFrom::Savepoint
    }
}

/// A scenario file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// Valid TOML, but its restart strategy's parameters are out of range.
    #[error("{path}: {source}")]
    Restart {
        /// The file.
        path: String,
        /// What is out of range.
        source: crate::job::InvalidRestart,
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
        scenario
            .restart
            .validate()
            .map_err(|source| ScenarioError::Restart {
                path: origin.to_string(),
                source,
            })?;
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
            ..
        } = &scenario.input
        {
            if *keys == 0 || *records > 1_000_000 || min_value > max_value {
                return Err(invalid(format!("generated input needs keys >= 1, records <= 1000000 and min_value <= max_value (keys {keys}, records {records}, {min_value}..={max_value})")));
            }
        }
        if let Some(problem) = scenario.faults.iter().find_map(Fault::problem) {
            return Err(invalid(format!("faults: {problem}")));
        }
        if let Some(problem) = scenario.checkpoint.problem() {
            return Err(invalid(problem));
        }
        if scenario.channel_capacity == 0 {
            return Err(invalid("channel_capacity must be positive".into()));
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
        Ok(Input::partitioned(
            &self.input_records()?,
            self.job.source.partition_count(),
        ))
    }

    /// The input records in input order, before partitioning.
    pub fn input_records(&self) -> Result<Vec<InputRecord>, ScenarioError> {
        Ok(match &self.input {
            InputSpec::Generated {
                records,
                keys,
                min_value,
                max_value,
                boundary_keys,
            } => {
                let mut rng = RngStreams::new(self.seed).stream(StreamName::Workload);
                let pool = if *boundary_keys {
                    super::keyspace::boundary_keys(self, *keys)
                } else {
                    Vec::new()
                };
                let mut generated: Vec<InputRecord> = (0..*records)
                    .map(|i| {
                        let key = if pool.is_empty() {
                            format!("k{}", rng.random_range(0..*keys))
                        } else {
                            pool[rng.random_range(0..pool.len())].clone()
                        };
                        let amount = rng.random_range(*min_value..=*max_value);
                        InputRecord::transaction(&format!("r{i}"), &key, amount)
                    })
                    .collect();
                super::eventtime::assign(&mut generated, self.seed);
                generated
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
            InputSpec::JsonLines { path, key, id } => {
                let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                crate::job::jsonl::parse_values(&text, key, id.as_deref()).map_err(|e| {
                    ScenarioError::Invalid {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    }
                })?
            }
            InputSpec::Records { records } => records.clone(),
        })
    }

    /// The run configuration of the case's first phase.
    pub fn run_config(&self) -> RunConfig {
        let mut config = RunConfig::new(self.seed, self.checkpoint.clone(), self.restart.clone());
        config.channel_capacity = self.channel_capacity;
        config.savepoints = self.savepoints.clone();
        config.audit_storage = self.audit_storage;
        config.verify_restored_files = self.verify_restored_files;
        config.initial_snapshot = self.initial_snapshot.clone();
        config.sabotage = self.sabotage;
        config
    }

    /// The case's phases, in order: the job runs; with a rescale it is stopped with a
    /// canonical savepoint (or cancelled at a checkpoint's completion), and the second phase
    /// resumes it from there at the new parallelism on the same checkpoint root and external
    /// system. A later phase runs only if the one before ended as it had to.
    pub fn phases(&self) -> Vec<Phase> {
        let mut first = self.run_config();
        let Some(rescale) = &self.rescale else {
            return vec![Phase {
                job: self.job.clone(),
                config: first,
                then: None,
            }];
        };
        let then = match rescale.from {
            RescaleFrom::Savepoint => {
                first.savepoints.push(SavepointRequest {
                    at_ms: rescale.at_ms,
                    name: RESCALE_SAVEPOINT.into(),
                    format: SavepointFormat::Canonical,
                    stop: true,
                });
                PhaseEnding::Savepoint(RESCALE_SAVEPOINT.into())
            }
            RescaleFrom::Checkpoint => {
                first.cancel_after_ms = Some(rescale.at_ms);
                PhaseEnding::Cancelled
            }
        };
        let mut job = self.job.clone();
        for (stage, parallelism) in job.stages.iter_mut().zip(&rescale.parallelism) {
            stage.parallelism = *parallelism;
        }
        let mut second = self.run_config();
        // The resumed job restores from the rescale savepoint in its own root, not from where
        // the first phase started.
        second.initial_snapshot = None;
        second.restore_mode = rescale.restore_mode;
        vec![
            Phase {
                job: self.job.clone(),
                config: first,
                then: Some(then),
            },
            Phase {
                job,
                config: second,
                then: None,
            },
        ]
    }
}

/// The name of the stop-with-savepoint a rescale takes.
pub const RESCALE_SAVEPOINT: &str = "rescale";

/// One phase of a case: `job` runs with `config` (whose first attempt and start time the case
/// runner sets, continuing the phase before).
#[derive(Debug, Clone)]
pub struct Phase {
    /// The job, at this phase's parallelism.
    pub job: JobSpec,
    /// How it runs.
    pub config: RunConfig,
    /// How the phase must end for the next phase to run, if one follows.
    pub then: Option<PhaseEnding>,
}

/// How a phase must end for the next one to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhaseEnding {
    /// Stopped with the savepoint of this name.
    Savepoint(String),
    /// Cancelled at a checkpoint's completion.
    Cancelled,
}
