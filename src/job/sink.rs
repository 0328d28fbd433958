//! Sinks and the external system they write to.
//!
//! [`ExternalStore`] simulates a transactional system outside the job (a Kafka topic, a
//! database): it survives every restart, and only committed records are visible. The two-phase
//! commit sink follows Flink's `TwoPhaseCommitSinkFunction`: pre-commit at the barrier, commit
//! on `notify_checkpoint_complete` (covering every earlier checkpoint, as notifications may be
//! lost or late), and on restore commit what the checkpoint had pending (idempotently) and
//! abort the rest. The print sink makes records visible at once: at-least-once.
//!
//! ```
//! use faultline::job::sink::{CommitOutcome, TxnState};
//! use faultline::job::{ExternalStore, Record};
//!
//! let record = Record::transaction("r0", "k0", 5);
//! let mut store = ExternalStore::new();
//! let txn = store.begin(0);
//! store.write(&txn, record)?;
//! store.pre_commit(&txn)?;
//! assert!(store.visible().is_empty(), "nothing is visible before the commit");
//! assert_eq!(store.commit(&txn)?, CommitOutcome::Committed(1));
//! // Recovery commits again: idempotent.
//! assert_eq!(store.commit(&txn)?, CommitOutcome::AlreadyCommitted);
//! assert_eq!(store.transaction_state(&txn), Some(TxnState::Committed));
//! assert_eq!(store.visible().len(), 1);
//! # Ok::<(), faultline::job::sink::StoreError>(())
//! ```

use std::collections::BTreeMap;

use super::record::Record;
use crate::checkpoint::codec::{Decoder, Encoder};
use crate::checkpoint::FormatError;

/// The life of a transaction in the external store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TxnState {
    /// Accepting writes.
    Open,
    /// Flushed and waiting for commit.
    PreCommitted,
    /// Visible.
    Committed,
    /// Discarded.
    Aborted,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Transaction {
    owner: u16,
    records: Vec<Record>,
    state: TxnState,
}

/// The external system refused an operation: the sink broke the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No transaction with that id was ever begun.
    #[error("transaction {0} is unknown")]
    Unknown(String),
    /// The operation does not apply in the transaction's state.
    #[error("transaction {txn}: cannot {operation} a transaction that is {state:?}")]
    WrongState {
        /// The transaction.
        txn: String,
        /// What was attempted.
        operation: &'static str,
        /// The state it is in.
        state: TxnState,
    },
    /// A user's external system failed (a file sink's I/O, say).
    #[error("the external system failed: {0}")]
    External(String),
    /// The sink's checkpointed state does not decode.
    #[error("the sink's checkpointed state does not decode: {0}")]
    BadState(#[from] FormatError),
}

/// What an abort found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortOutcome {
    /// Aborted now.
    Aborted,
    /// Aborted before.
    AlreadyAborted,
    /// Committed before: nothing to undo.
    AlreadyCommitted,
}

/// Whether a commit made records visible or found them already visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Committed now, with this many records.
    Committed(usize),
    /// Was already committed (recovery re-commits idempotently).
    AlreadyCommitted,
}

/// The simulated external system. Survives restarts of the job.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ExternalStore {
    transactions: BTreeMap<String, Transaction>,
    transactions_begun: u64,
    /// Transactions neither committed nor aborted.
    #[serde(default)]
    open: usize,
    visible: Vec<Record>,
    /// Where every operation is made durable, when the store must outlive the process.
    #[serde(skip)]
    durable_at: Option<std::path::PathBuf>,
    /// A directory of the external system for sinks that write real files.
    #[serde(skip)]
    dir: Option<std::path::PathBuf>,
}

/// What a reader of a user's own external system sees at the end of a case (see
/// [`OutputReader`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExternalOutput {
    /// Records visible to readers, in any order (the oracle counts each record's copies).
    pub committed: Vec<Record>,
    /// Transactions neither committed nor aborted, each by a unique name, with the records
    /// they hold.
    pub in_flight: Vec<(String, Vec<Record>)>,
}

/// Reads a user's external system, kept under [`ExternalStore::dir`], as its readers would see
/// it: how the oracle judges a sink that writes somewhere other than the simulated store. The
/// error is the user's own type; the oracle reports its message as an unreadable output.
pub type OutputReader = dyn Fn(&std::path::Path) -> Result<ExternalOutput, Box<dyn std::error::Error + Send + Sync>>
    + Send
    + Sync;

/// The file of a durable [`ExternalStore`] cannot be read back (see [`ExternalStore::durable`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DurableStoreError {
    /// The file exists but cannot be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The store's file.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file does not hold a store.
    #[error("{}: {source}", path.display())]
    Decode {
        /// The store's file.
        path: std::path::PathBuf,
        /// What the decoder said.
        source: serde_json::Error,
    },
}

impl ExternalStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The store kept in the file `path` (empty if the file does not exist yet): every
    /// operation is written through before it returns, as a real external system makes it
    /// durable, so the store survives a process that aborts.
    pub fn durable(path: &std::path::Path) -> Result<Self, DurableStoreError> {
        let mut store: ExternalStore = match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| DurableStoreError::Decode {
                    path: path.to_path_buf(),
                    source,
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ExternalStore::new(),
            Err(source) => {
                return Err(DurableStoreError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        store.durable_at = Some(path.to_path_buf());
        Ok(store)
    }

    fn persist(&self) {
        if let Some(path) = &self.durable_at {
            let temporary = path.with_extension("tmp");
            let bytes = serde_json::to_vec(self).expect("a store always serializes");
            // The case directory belongs to the harness; failing to write it is a broken
            // environment, not a fault under test.
            std::fs::write(&temporary, bytes)
                .and_then(|()| std::fs::rename(&temporary, path))
                .expect("the external store's file is writable");
        }
    }

    /// Records visible to readers, in the order they became visible.
    pub fn visible(&self) -> &[Record] {
        &self.visible
    }

    /// State of a transaction.
    pub fn transaction_state(&self, txn: &str) -> Option<TxnState> {
        self.transactions.get(txn).map(|t| t.state)
    }

    /// How many transactions are neither committed nor aborted.
    pub fn open_transactions(&self) -> usize {
        self.open
    }

    /// Ids of transactions owned by `owner` that are neither committed nor aborted.
    pub fn unfinished(&self, owner: u16) -> Vec<String> {
        self.transactions
            .iter()
            .filter(|(_, t)| {
                t.owner == owner && matches!(t.state, TxnState::Open | TxnState::PreCommitted)
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Transactions holding records that are neither committed nor aborted, with their record
    /// counts: at the end of a job, records stranded there are neither visible nor discarded
    /// (in Kafka they would hold back every read-committed consumer).
    pub fn stranded(&self) -> Vec<(String, usize)> {
        self.transactions
            .iter()
            .filter(|(_, t)| {
                !t.records.is_empty() && matches!(t.state, TxnState::Open | TxnState::PreCommitted)
            })
            .map(|(id, t)| (id.clone(), t.records.len()))
            .collect()
    }

    /// Begins a transaction for sink subtask `owner` and returns its id, unique in this store
    /// across every run that ever used it (the external system outlives job runs).
    pub fn begin(&mut self, owner: u16) -> String {
        let txn = format!("s{owner}-t{}", self.transactions_begun);
        self.transactions_begun += 1;
        self.open += 1;
        debug_assert!(
            !self.transactions.contains_key(&txn),
            "ids come from a counter"
        );
        self.transactions.insert(
            txn.clone(),
            Transaction {
                owner,
                records: Vec::new(),
                state: TxnState::Open,
            },
        );
        self.persist();
        txn
    }

    fn get_mut(&mut self, txn: &str) -> Result<&mut Transaction, StoreError> {
        self.transactions
            .get_mut(txn)
            .ok_or_else(|| StoreError::Unknown(txn.to_string()))
    }

    /// Writes into an open transaction (invisible until commit).
    pub fn write(&mut self, txn: &str, record: Record) -> Result<(), StoreError> {
        let transaction = self.get_mut(txn)?;
        if transaction.state != TxnState::Open {
            return Err(StoreError::WrongState {
                txn: txn.to_string(),
                operation: "write to",
                state: transaction.state,
            });
        }
        transaction.records.push(record);
        self.persist();
        Ok(())
    }

    /// Flushes an open transaction so it can be committed later; returns its record count.
    pub fn pre_commit(&mut self, txn: &str) -> Result<usize, StoreError> {
        let transaction = self.get_mut(txn)?;
        if transaction.state != TxnState::Open {
            return Err(StoreError::WrongState {
                txn: txn.to_string(),
                operation: "pre-commit",
                state: transaction.state,
            });
        }
        transaction.state = TxnState::PreCommitted;
        let count = transaction.records.len();
        self.persist();
        Ok(count)
    }

    /// Commits a pre-committed transaction; committing it again is a no-op.
    pub fn commit(&mut self, txn: &str) -> Result<CommitOutcome, StoreError> {
        let transaction = self
            .transactions
            .get_mut(txn)
            .ok_or_else(|| StoreError::Unknown(txn.to_string()))?;
        match transaction.state {
            TxnState::Committed => Ok(CommitOutcome::AlreadyCommitted),
            TxnState::PreCommitted => {
                transaction.state = TxnState::Committed;
                self.open -= 1;
                let records = transaction.records.clone();
                let count = records.len();
                self.visible.extend(records);
                self.persist();
                Ok(CommitOutcome::Committed(count))
            }
            state => Err(StoreError::WrongState {
                txn: txn.to_string(),
                operation: "commit",
                state,
            }),
        }
    }

    /// Aborts a transaction that is not committed yet. As with Kafka's fencing, aborting one
    /// that is committed already changes nothing: that happens when a restore goes back to a
    /// state older than committed output, which the oracle then reports as duplicates.
    pub fn abort(&mut self, txn: &str) -> Result<AbortOutcome, StoreError> {
        let transaction = self
            .transactions
            .get_mut(txn)
            .ok_or_else(|| StoreError::Unknown(txn.to_string()))?;
        Ok(match transaction.state {
            TxnState::Open | TxnState::PreCommitted => {
                transaction.state = TxnState::Aborted;
                self.open -= 1;
                self.persist();
                AbortOutcome::Aborted
            }
            TxnState::Aborted => AbortOutcome::AlreadyAborted,
            TxnState::Committed => AbortOutcome::AlreadyCommitted,
        })
    }

    /// The same store with a directory of the external system: a sink writing real files keeps
    /// them there, where they survive every restart of the job, as the store does.
    pub fn with_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// The directory of the external system, if the harness made one (it does for every case).
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.dir.as_deref()
    }

    /// A store holding what a reader of a user's external system saw, for the oracle to judge:
    /// the committed records visible, the in-flight transactions pre-committed.
    pub fn observed(output: ExternalOutput) -> Self {
        let transactions = output
            .in_flight
            .into_iter()
            .enumerate()
            // A name repeated by the reader must not hide a transaction.
            .map(|(index, (name, records))| (format!("{name} (#{index})"), records))
            .map(|(name, records)| {
                let transaction = Transaction {
                    owner: 0,
                    records,
                    state: TxnState::PreCommitted,
                };
                (name, transaction)
            })
            .collect();
        Self {
            transactions,
            visible: output.committed,
            ..Self::default()
        }
    }

    /// Makes a record visible at once (no transaction): what a print sink does.
    pub fn print(&mut self, record: Record) {
        self.visible.push(record);
        self.persist();
    }
}

/// Makes the sink of one subtask.
pub type SinkFactory = dyn Fn(u16) -> Box<dyn Sink> + Send + Sync;

/// What a sink did to a transaction, for the trace. Sinks report them; the trace renders them
/// (`txn sink[0]: commit s0-t2 (6 records) for chk-3`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum TxnEvent {
    /// A transaction was begun.
    Begun {
        /// The transaction.
        txn: String,
    },
    /// A transaction was flushed for checkpoint `checkpoint`, to be committed once it completes.
    PreCommitted {
        /// The transaction.
        txn: String,
        /// The checkpoint it belongs to.
        checkpoint: u64,
        /// Records in it, if the sink counts them.
        records: Option<usize>,
    },
    /// A pre-committed transaction was committed: its records are visible.
    Committed {
        /// The transaction.
        txn: String,
        /// The checkpoint it belongs to.
        checkpoint: u64,
        /// Records made visible, if the sink counts them.
        records: Option<usize>,
    },
    /// A commit found the transaction committed already (recovery commits idempotently).
    AlreadyCommitted {
        /// The transaction.
        txn: String,
        /// The checkpoint it belongs to.
        checkpoint: u64,
    },
    /// A transaction was aborted.
    Aborted {
        /// The transaction.
        txn: String,
        /// Why.
        why: TxnAbort,
    },
    /// An abort found the transaction committed already: the restore goes back past output a
    /// later checkpoint or savepoint committed.
    AbortFoundCommitted {
        /// The transaction.
        txn: String,
    },
}

/// Why a sink aborted a transaction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum TxnAbort {
    /// It was in progress at the restored checkpoint: it belongs to no checkpoint.
    InProgress,
    /// It was begun after the restored checkpoint and left behind by the failure.
    Lingering,
    /// The sink's own reason, shown in parentheses (`pending`).
    Other(String),
}

/// The `Sink` seam: writes records to the external store and takes part in checkpoints. A
/// user's sink implements it and is tested the same way. Every method reports what it did to
/// transactions, for the trace (a sink without transactions reports nothing).
pub trait Sink {
    /// Writes one record.
    fn write(
        &mut self,
        record: Record,
        store: &mut ExternalStore,
    ) -> Result<Vec<TxnEvent>, StoreError>;
    /// Snapshots at checkpoint `checkpoint_id` (a two-phase sink pre-commits here) and returns the
    /// state to checkpoint.
    fn snapshot(
        &mut self,
        checkpoint_id: u64,
        store: &mut ExternalStore,
    ) -> Result<(Vec<u8>, Vec<TxnEvent>), StoreError>;
    /// Transactions pre-committed and waiting for a completion notification (none for a sink
    /// without transactions). The job finishes only once none are left.
    fn pending_transactions(&self) -> usize {
        0
    }

    /// Checkpoint `checkpoint_id` completed: this covers every earlier checkpoint too.
    fn notify_checkpoint_complete(
        &mut self,
        checkpoint_id: u64,
        store: &mut ExternalStore,
    ) -> Result<Vec<TxnEvent>, StoreError>;
    /// Restores from checkpointed states (this subtask's own, or all of them after rescaling,
    /// given to subtask 0 only), before any write.
    fn restore(
        &mut self,
        states: &[Vec<u8>],
        store: &mut ExternalStore,
    ) -> Result<Vec<TxnEvent>, StoreError>;
}

/// The at-least-once print sink.
#[derive(Debug, Default)]
pub struct PrintSink;

impl Sink for PrintSink {
    fn write(
        &mut self,
        record: Record,
        store: &mut ExternalStore,
    ) -> Result<Vec<TxnEvent>, StoreError> {
        store.print(record);
        Ok(Vec::new())
    }

    fn snapshot(
        &mut self,
        _: u64,
        _: &mut ExternalStore,
    ) -> Result<(Vec<u8>, Vec<TxnEvent>), StoreError> {
        Ok((Vec::new(), Vec::new()))
    }

    fn notify_checkpoint_complete(
        &mut self,
        _: u64,
        _: &mut ExternalStore,
    ) -> Result<Vec<TxnEvent>, StoreError> {
        Ok(Vec::new())
    }

    fn restore(
        &mut self,
        _: &[Vec<u8>],
        _: &mut ExternalStore,
    ) -> Result<Vec<TxnEvent>, StoreError> {
        Ok(Vec::new())
    }
}

/// The exactly-once two-phase-commit sink.
#[derive(Debug)]
pub struct TwoPhaseCommitSink {
    subtask: u16,
    current: Option<String>,
    pending: BTreeMap<u64, String>,
}

impl TwoPhaseCommitSink {
    /// The sink of `subtask`.
    pub fn new(subtask: u16) -> Self {
        Self {
            subtask,
            current: None,
            pending: BTreeMap::new(),
        }
    }

    fn begin(&mut self, store: &mut ExternalStore) -> Result<String, StoreError> {
        Ok(store.begin(self.subtask))
    }

    /// The open transaction, begun now (and reported in `events`) if there is none.
    fn current(
        &mut self,
        store: &mut ExternalStore,
        events: &mut Vec<TxnEvent>,
    ) -> Result<String, StoreError> {
        if let Some(txn) = &self.current {
            return Ok(txn.clone());
        }
        let txn = self.begin(store)?;
        events.push(TxnEvent::Begun { txn: txn.clone() });
        self.current = Some(txn.clone());
        Ok(txn)
    }

    fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        e.str(self.current.as_deref().unwrap_or(""));
        e.u32(self.pending.len() as u32);
        for (checkpoint, txn) in &self.pending {
            e.u64(*checkpoint).str(txn);
        }
        e.finish()
    }

    /// Decodes a checkpointed state: the in-progress transaction and the pending ones.
    pub fn decode(bytes: &[u8]) -> Result<(Option<String>, BTreeMap<u64, String>), FormatError> {
        let mut d = Decoder::new(bytes);
        let current = d.str("current transaction")?.to_string();
        let count = d.count("pending transactions", 12)?;
        let mut pending = BTreeMap::new();
        for _ in 0..count {
            let checkpoint = d.u64("checkpoint id")?;
            let txn = d.str("transaction")?.to_string();
            pending.insert(checkpoint, txn);
        }
        d.finish("two-phase sink state")?;
        Ok(((!current.is_empty()).then_some(current), pending))
    }
}

impl Sink for TwoPhaseCommitSink {
    fn pending_transactions(&self) -> usize {
        self.pending.len()
    }

    fn write(
        &mut self,
        record: Record,
        store: &mut ExternalStore,
    ) -> Result<Vec<TxnEvent>, StoreError> {
        let mut events = Vec::new();
        let txn = self.current(store, &mut events)?;
        store.write(&txn, record)?;
        Ok(events)
    }

    fn snapshot(
        &mut self,
        checkpoint_id: u64,
        store: &mut ExternalStore,
    ) -> Result<(Vec<u8>, Vec<TxnEvent>), StoreError> {
        let mut events = Vec::new();
        let txn = self.current(store, &mut events)?;
        let count = store.pre_commit(&txn)?;
        debug_assert!(
            self.pending.keys().all(|id| *id < checkpoint_id),
            "barriers arrive in order"
        );
        self.pending.insert(checkpoint_id, txn.clone());
        events.push(TxnEvent::PreCommitted {
            txn,
            checkpoint: checkpoint_id,
            records: Some(count),
        });
        // The next records go to a transaction of their own, begun with the checkpoint.
        self.current = None;
        let next = self.current(store, &mut events)?;
        debug_assert_ne!(Some(&next), self.pending.get(&checkpoint_id));
        Ok((self.encode(), events))
    }

    fn notify_checkpoint_complete(
        &mut self,
        checkpoint_id: u64,
        store: &mut ExternalStore,
    ) -> Result<Vec<TxnEvent>, StoreError> {
        let covered: Vec<u64> = self
            .pending
            .range(..=checkpoint_id)
            .map(|(id, _)| *id)
            .collect();
        let mut events = Vec::new();
        for id in covered {
            let txn = self.pending.remove(&id).expect("listed above");
            let outcome = store.commit(&txn)?;
            events.push(commit_event(txn, id, outcome));
        }
        Ok(events)
    }

    fn restore(
        &mut self,
        states: &[Vec<u8>],
        store: &mut ExternalStore,
    ) -> Result<Vec<TxnEvent>, StoreError> {
        let mut events = Vec::new();
        let mut keep = Vec::new();
        for state in states {
            let (current, pending) = Self::decode(state)?;
            for (id, txn) in pending {
                // recoverAndCommit: the checkpoint completed, so its transactions must be
                // visible, whether or not a notification got through before the failure.
                let outcome = store.commit(&txn)?;
                events.push(commit_event(txn.clone(), id, outcome));
                keep.push(txn);
            }
            if let Some(txn) = current {
                // recoverAndAbort: the in-progress transaction belongs to no checkpoint.
                match store.abort(&txn)? {
                    AbortOutcome::Aborted => events.push(TxnEvent::Aborted {
                        txn,
                        why: TxnAbort::InProgress,
                    }),
                    AbortOutcome::AlreadyAborted => {}
                    AbortOutcome::AlreadyCommitted => {
                        events.push(TxnEvent::AbortFoundCommitted { txn })
                    }
                }
            }
        }
        // Transactions begun after the checkpoint (lingering) are aborted too: this subtask's,
        // and after a rescale (all old states come to subtask 0) those of every old subtask,
        // which may no longer exist to abort their own.
        let mut owners = vec![self.subtask];
        if states.len() > 1 {
            owners.extend((0..states.len() as u16).filter(|owner| *owner != self.subtask));
        }
        for owner in owners {
            for txn in store.unfinished(owner) {
                if !keep.contains(&txn) && store.abort(&txn)? == AbortOutcome::Aborted {
                    events.push(TxnEvent::Aborted {
                        txn,
                        why: TxnAbort::Lingering,
                    });
                }
            }
        }
        Ok(events)
    }
}

fn commit_event(txn: String, checkpoint: u64, outcome: CommitOutcome) -> TxnEvent {
    match outcome {
        CommitOutcome::Committed(count) => TxnEvent::Committed {
            txn,
            checkpoint,
            records: Some(count),
        },
        CommitOutcome::AlreadyCommitted => TxnEvent::AlreadyCommitted { txn, checkpoint },
    }
}
