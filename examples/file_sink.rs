//! A user-written two-phase-commit sink to files, put under faultline's faults.
//!
//! `FileSink` keeps each transaction in its own file in the case's external directory
//! ([`ExternalStore::dir`], which outlives every restart as an external system does):
//! - records are appended to `<txn>.inprogress` as they arrive;
//! - at the barrier the file is synced and renamed `<txn>.pending` (pre-commit), and its name is
//!   stored in the checkpoint;
//! - when the checkpoint completes it is renamed `<txn>.committed`, and readers see it;
//! - on restore it commits what the checkpoint had pending (a rename that finds the committed
//!   file already there is a commit made before the failure) and deletes every other unfinished
//!   file of the subtasks whose state it restored (after a rescale, subtask 0 restores them
//!   all).
//!
//! [`read_output`] is how a reader of the directory sees it; the harness's oracle judges what it
//! reads, so the simulated store plays no part.
//!
//! ```sh
//! cargo run --release --example file_sink
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use faultline::harness::Harness;
use faultline::job::sink::{StoreError, TxnAbort, TxnEvent};
use faultline::job::{ExternalOutput, ExternalStore, Record, Sink};

/// Transactions renamed to committed, over every case (to show the sink was in the path).
pub static COMMITS: AtomicU64 = AtomicU64::new(0);

/// Where a transaction's file stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    InProgress,
    Pending,
    Committed,
}

impl Stage {
    const ALL: [Stage; 3] = [Stage::InProgress, Stage::Pending, Stage::Committed];

    fn extension(self) -> &'static str {
        match self {
            Stage::InProgress => "inprogress",
            Stage::Pending => "pending",
            Stage::Committed => "committed",
        }
    }
}

fn io(what: impl std::fmt::Display, error: std::io::Error) -> StoreError {
    StoreError::External(format!("{what}: {error}"))
}

/// The sink's directory in the external system.
fn files_dir(store: &ExternalStore) -> Result<PathBuf, StoreError> {
    let dir = store
        .dir()
        .ok_or_else(|| StoreError::External("the store has no directory".into()))?
        .join("files");
    std::fs::create_dir_all(&dir).map_err(|e| io(dir.display(), e))?;
    Ok(dir)
}

fn file(dir: &Path, txn: &str, stage: Stage) -> PathBuf {
    dir.join(format!("{txn}.{}", stage.extension()))
}

/// A transaction name: the owning subtask, then a number counting up per subtask. The padding
/// makes name order the order of (subtask, number).
fn txn_name(subtask: u16, number: u64) -> String {
    format!("s{subtask:05}-{number:010}")
}

/// Splits a file name into (owner, transaction, stage).
fn parse_file_name(name: &str) -> Option<(u16, &str, Stage)> {
    let (txn, extension) = name.rsplit_once('.')?;
    let stage = Stage::ALL
        .into_iter()
        .find(|stage| stage.extension() == extension)?;
    let owner = txn.strip_prefix('s')?.split_once('-')?.0.parse().ok()?;
    Some((owner, txn, stage))
}

/// The sink's files cannot be read: what [`read_output`] answers the oracle with.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A file or the directory cannot be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A line of a transaction file is not a record.
    #[error("{}: {source}", path.display())]
    Record {
        /// The transaction file.
        path: PathBuf,
        /// What the decoder said.
        source: serde_json::Error,
    },
}

fn read_error(path: &Path) -> impl Fn(std::io::Error) -> ReadError + '_ {
    move |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Every transaction file in `dir`, in name order.
fn transaction_files(dir: &Path) -> Result<Vec<(u16, String, Stage)>, ReadError> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_error(dir))? {
        let entry = entry.map_err(read_error(dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some((owner, txn, stage)) = parse_file_name(&name) {
            files.push((owner, txn.to_string(), stage));
        }
    }
    // Name order, whatever order the directory listed them in.
    files.sort_by(|a, b| (&a.1, a.2).cmp(&(&b.1, b.2)));
    Ok(files)
}

/// A checkpointed state: (owner, transaction in progress, pending transactions by checkpoint).
type SinkState = (u16, Option<String>, BTreeMap<u64, String>);

/// The exactly-once file sink of one subtask.
#[derive(Debug)]
pub struct FileSink {
    subtask: u16,
    /// The transaction records are appended to, once the first record arrived.
    current: Option<String>,
    /// Pre-committed transactions by checkpoint, waiting for its completion.
    pending: BTreeMap<u64, String>,
}

impl FileSink {
    /// The sink of `subtask`.
    pub fn new(subtask: u16) -> Self {
        Self {
            subtask,
            current: None,
            pending: BTreeMap::new(),
        }
    }

    /// Begins a transaction. Its number comes from a counter file in the external system, so
    /// a name is never used twice, across attempts and restores.
    fn begin(&self, dir: &Path) -> Result<String, StoreError> {
        let counter = dir.join(format!("s{:05}.next", self.subtask));
        let number = match std::fs::read_to_string(&counter) {
            Ok(text) => text
                .trim()
                .parse()
                .map_err(|e| StoreError::External(format!("{}: {e}", counter.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io(counter.display(), e)),
        };
        let temporary = counter.with_extension("next.tmp");
        std::fs::write(&temporary, (number + 1).to_string())
            .and_then(|()| std::fs::rename(&temporary, &counter))
            .map_err(|e| io(counter.display(), e))?;
        Ok(txn_name(self.subtask, number))
    }

    /// Renames a pending transaction committed; finding it committed already is fine.
    fn commit(dir: &Path, txn: String, checkpoint: u64) -> Result<TxnEvent, StoreError> {
        let committed = file(dir, &txn, Stage::Committed);
        match std::fs::rename(file(dir, &txn, Stage::Pending), &committed) {
            Ok(()) => {
                COMMITS.fetch_add(1, Ordering::Relaxed);
                Ok(TxnEvent::Committed {
                    txn,
                    checkpoint,
                    records: None,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && committed.exists() => {
                Ok(TxnEvent::AlreadyCommitted { txn, checkpoint })
            }
            Err(e) => Err(io(format!("commit {txn}"), e)),
        }
    }

    /// The checkpointed state: the owning subtask, the transaction in progress and the pending
    /// ones.
    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&(self.subtask, &self.current, &self.pending))
            .expect("names and ids serialize")
    }

    fn decode(state: &[u8]) -> Result<SinkState, StoreError> {
        serde_json::from_slice(state)
            .map_err(|e| StoreError::External(format!("file sink state: {e}")))
    }
}

impl Sink for FileSink {
    fn write(
        &mut self,
        record: Record,
        store: &mut ExternalStore,
    ) -> Result<Vec<TxnEvent>, StoreError> {
        let dir = files_dir(store)?;
        let mut events = Vec::new();
        if self.current.is_none() {
            let txn = self.begin(&dir)?;
            events.push(TxnEvent::Begun { txn: txn.clone() });
            self.current = Some(txn);
        }
        let txn = self.current.as_deref().expect("begun above");
        let path = file(&dir, txn, Stage::InProgress);
        let mut line = serde_json::to_vec(&record).expect("records serialize");
        line.push(b'\n');
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(&line))
            .map_err(|e| io(path.display(), e))?;
        Ok(events)
    }

    fn snapshot(
        &mut self,
        checkpoint_id: u64,
        store: &mut ExternalStore,
    ) -> Result<(Vec<u8>, Vec<TxnEvent>), StoreError> {
        let mut events = Vec::new();
        if let Some(txn) = self.current.take() {
            let dir = files_dir(store)?;
            let in_progress = file(&dir, &txn, Stage::InProgress);
            std::fs::File::open(&in_progress)
                .and_then(|f| f.sync_all())
                .and_then(|()| std::fs::rename(&in_progress, file(&dir, &txn, Stage::Pending)))
                .map_err(|e| io(format!("pre-commit {txn}"), e))?;
            events.push(TxnEvent::PreCommitted {
                txn: txn.clone(),
                checkpoint: checkpoint_id,
                records: None,
            });
            self.pending.insert(checkpoint_id, txn);
        }
        Ok((self.encode(), events))
    }

    fn pending_transactions(&self) -> usize {
        self.pending.len()
    }

    fn notify_checkpoint_complete(
        &mut self,
        checkpoint_id: u64,
        store: &mut ExternalStore,
    ) -> Result<Vec<TxnEvent>, StoreError> {
        let dir = files_dir(store)?;
        let covered: Vec<u64> = self
            .pending
            .range(..=checkpoint_id)
            .map(|(id, _)| *id)
            .collect();
        let mut events = Vec::new();
        for id in covered {
            let txn = self.pending.remove(&id).expect("listed above");
            events.push(Self::commit(&dir, txn, id)?);
        }
        Ok(events)
    }

    fn restore(
        &mut self,
        states: &[Vec<u8>],
        store: &mut ExternalStore,
    ) -> Result<Vec<TxnEvent>, StoreError> {
        let dir = files_dir(store)?;
        let mut events = Vec::new();
        let mut owners = Vec::new();
        for state in states {
            let (owner, _in_progress, pending) = Self::decode(state)?;
            owners.push(owner);
            // The checkpoint completed, so what it pre-committed must be visible, whether or not
            // its notification got through before the failure.
            for (id, txn) in pending {
                events.push(Self::commit(&dir, txn, id)?);
            }
        }
        // Everything else unfinished belongs to no completed checkpoint: the files of every
        // subtask whose state this one restored (its own, or after a rescale all the old ones).
        // With no state at all (no checkpoint completed) subtask 0 clears every subtask's, and
        // the others leave files alone: a subtask new after a rescale also gets no state, and
        // its namesake's files are subtask 0's to commit. So the order subtasks restore in never
        // matters.
        let clears = |owner: u16| {
            if states.is_empty() {
                self.subtask == 0
            } else {
                owners.contains(&owner)
            }
        };
        let files =
            transaction_files(&dir).map_err(|error| StoreError::External(error.to_string()))?;
        for (owner, txn, stage) in files {
            if stage != Stage::Committed && clears(owner) {
                let path = file(&dir, &txn, stage);
                std::fs::remove_file(&path).map_err(|e| io(path.display(), e))?;
                let why = TxnAbort::Other(stage.extension().to_string());
                events.push(TxnEvent::Aborted { txn, why });
            }
        }
        Ok(events)
    }
}

/// What a reader of the sink's directory sees: the committed files' records, and the
/// unfinished files as transactions in flight.
pub fn read_output(
    external: &Path,
) -> Result<ExternalOutput, Box<dyn std::error::Error + Send + Sync>> {
    let dir = external.join("files");
    let mut output = ExternalOutput::default();
    if !dir.exists() {
        return Ok(output);
    }
    for (_, txn, stage) in transaction_files(&dir)? {
        let path = file(&dir, &txn, stage);
        let text = std::fs::read_to_string(&path).map_err(read_error(&path))?;
        let records = text
            .lines()
            .map(|line| {
                serde_json::from_str(line).map_err(|source| ReadError::Record {
                    path: path.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<Record>, ReadError>>()?;
        match stage {
            Stage::Committed => output.committed.extend(records),
            Stage::InProgress | Stage::Pending => output.in_flight.push((txn, records)),
        }
    }
    Ok(output)
}

/// Builds the sink of each subtask.
pub fn file_sink(subtask: u16) -> Box<dyn Sink> {
    Box::new(FileSink::new(subtask))
}

/// Runs `cases` cases with the file sink in every one, judged by what [`read_output`] sees.
pub fn run(cases: u64) -> faultline::campaign::ExploreReport {
    Harness::new()
        .cases(cases)
        .sink(&file_sink)
        .output(&read_output)
        .run()
}

#[allow(dead_code)] // Also compiled into the test suite, which calls `run` instead.
fn main() {
    let report = run(200);
    print!("{}", report.summary());
    println!(
        "transactions committed by renaming: {}",
        COMMITS.load(Ordering::Relaxed)
    );
}
