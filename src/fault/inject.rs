//! [`Injector`]: the one place fault effects on checkpoint storage happen, and the engine's
//! line to the fault plan. The engine writes every checkpoint byte through it and asks it at
//! every fault point it names; the injector asks the plan and carries out what storage faults
//! do to the real directory underneath (TigerBeetle's storage fake is the model).
//!
//! Its storage model, which the crash-at-every-step tests and the campaigns share:
//! - A write takes five steps ([`WriteStep`]): create the temporary file, write it, sync it,
//!   rename it into place, sync the directory. A machine crash can follow any of them; what
//!   was not yet synced is then lost, torn or kept ([`Unsynced`]): a lost or torn temporary
//!   file, an undone rename, or (kept) a write that made it after all.
//! - A write is durable once its steps are done, with one exception that models a storage
//!   without a sync per file: checkpoint files written since the last commit point are at risk
//!   until a `_metadata` write begins (the engine syncs a checkpoint's files before its commit
//!   point). At a crash or kill each of them is kept, lost or cut short, as the fault stream
//!   draws. `_metadata` and the `_completed` record are commit records: durable once written.
//! - After a crash every operation fails, as in a dead process, until the restart revives the
//!   storage; corruption faults then damage retained files before the restore reads them.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use super::{Corruption, Crash, Effect, FaultAction, FaultPlan, FaultPoint, NotifyFate, Unsynced};
use crate::checkpoint::{CheckpointStorage, FileRef, RelPath, StepFiles, StorageError, WriteStep};

/// What a kill did to the checkpoint writes no commit point had made durable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LostWrites {
    /// Writes at risk.
    pub writes: usize,
    /// Of them, lost.
    pub lost: usize,
    /// Of them, cut short.
    pub torn: usize,
}

/// What an [`Injector`] knows across a real kill.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct InjectorState {
    plan: Option<serde_json::Value>,
    writes: BTreeMap<u64, u32>,
    steps: u64,
    uncommitted: Vec<String>,
}

/// Checkpoint storage with faults, and the engine's fault plan (see the module doc).
pub struct Injector<'a> {
    storage: &'a mut dyn CheckpointStorage,
    plan: &'a mut dyn FaultPlan,
    /// The checkpoint whose files are being written, if any.
    scope: Option<u64>,
    /// Writes so far per checkpoint: the `nth` of [`FaultPoint::StorageWrite`].
    writes: BTreeMap<u64, u32>,
    /// Write steps taken over the whole run: the step a [`Crash`] follows.
    steps: u64,
    /// Checkpoint writes since the last commit point.
    uncommitted: Vec<RelPath>,
    /// The crash that killed the machine; cleared by [`Injector::restart`].
    crashed: Option<FaultAction>,
    /// Storage faults that fired, and files written, for the engine to record.
    fired: Vec<FaultAction>,
    written: Vec<RelPath>,
}

impl<'a> Injector<'a> {
    /// Faults from `plan` on `storage`.
    pub fn new(storage: &'a mut dyn CheckpointStorage, plan: &'a mut dyn FaultPlan) -> Self {
        Self {
            storage,
            plan,
            scope: None,
            writes: BTreeMap::new(),
            steps: 0,
            uncommitted: Vec::new(),
            crashed: None,
            fired: Vec::new(),
            written: Vec::new(),
        }
    }

    /// The fault firing at a point the engine names, if any.
    pub fn fault_at(&mut self, point: &FaultPoint<'_>) -> Option<FaultAction> {
        self.plan.at(point)
    }

    /// The fate of the notification of `checkpoint` to `task`.
    pub fn notification_fate(&mut self, checkpoint: u64, task: &str) -> NotifyFate {
        self.plan.notification(checkpoint, task)
    }

    /// The storage underneath, to read, and the plan, at once: for a restore that reads
    /// snapshot files while asking at each task's fault point. The machine is up then.
    pub fn split(&mut self) -> (&dyn CheckpointStorage, &mut dyn FaultPlan) {
        debug_assert!(self.crashed.is_none(), "a restore runs after the restart");
        (&*self.storage, &mut *self.plan)
    }

    /// Writes from now on belong to checkpoint `checkpoint` (or, with `None`, to none).
    pub fn writing_for(&mut self, checkpoint: Option<u64>) {
        self.scope = checkpoint;
    }

    /// The crash that killed the machine, if one did since the last restart.
    pub fn crash(&self) -> Option<&FaultAction> {
        self.crashed.as_ref()
    }

    /// Storage faults that fired since the last call, in order.
    pub fn take_fired(&mut self) -> Vec<FaultAction> {
        std::mem::take(&mut self.fired)
    }

    /// Files written since the last call, in order.
    pub fn take_written(&mut self) -> Vec<RelPath> {
        std::mem::take(&mut self.written)
    }

    /// The process died: every write no commit point made durable is kept, lost or torn.
    pub fn kill(&mut self) -> LostWrites {
        let writes = std::mem::take(&mut self.uncommitted);
        let mut lost = LostWrites {
            writes: writes.len(),
            ..LostWrites::default()
        };
        for path in &writes {
            match self.plan.draw(3) {
                0 => {}
                1 => {
                    if self.storage.remove_file(path).is_ok() {
                        lost.lost += 1;
                    }
                }
                _ => {
                    if let Ok(bytes) = self.storage.read(path) {
                        let keep = self.plan.draw(bytes.len() as u64 + 1) as usize;
                        if self.storage.write(path, &bytes[..keep]).is_ok() {
                            lost.torn += 1;
                        }
                    }
                }
            }
        }
        lost
    }

    /// The machine comes back for attempt `attempt`: storage works again, and corruption
    /// faults damage retained files before the restore reads them.
    pub fn restart(&mut self, attempt: u32) -> Vec<Corruption> {
        self.crashed = None;
        self.scope = None;
        let mut corruptions = self.plan.corrupt(&mut *self.storage, attempt);
        for corruption in &mut corruptions {
            corruption.attempt = attempt;
        }
        corruptions
    }

    /// How much longer than its restart delay the job stays down before attempt `attempt`.
    pub fn downtime_ms(&mut self, attempt: u32) -> u64 {
        self.plan.downtime_ms(attempt)
    }

    /// What the injector and its plan know, for a process killed for real to leave to the next.
    pub fn save(&self) -> InjectorState {
        InjectorState {
            plan: self.plan.save(),
            writes: self.writes.clone(),
            steps: self.steps,
            uncommitted: self.uncommitted.iter().map(ToString::to_string).collect(),
        }
    }

    /// Takes up what [`Injector::save`] gave.
    pub fn load(&mut self, state: InjectorState) -> Result<(), serde_json::Error> {
        if let Some(plan) = state.plan {
            self.plan.load(plan)?;
        }
        self.writes = state.writes;
        self.steps = state.steps;
        self.uncommitted = state
            .uncommitted
            .iter()
            .filter_map(|path| RelPath::new(path).ok())
            .collect();
        Ok(())
    }

    /// Fails every operation after a crash, as in a dead process.
    fn alive(&self, path: &dyn std::fmt::Display) -> Result<(), StorageError> {
        match &self.crashed {
            None => Ok(()),
            Some(crash) => Err(StorageError::Io {
                path: path.to_string(),
                source: std::io::Error::other(format!("the machine crashed: {}", crash.detail)),
            }),
        }
    }

    /// Asks the plan about the write of `path`: an injected I/O error, or a kill that crashes
    /// the machine at a drawn step of this write.
    fn write_fault(&mut self, path: &RelPath) -> Result<Option<(WriteStep, Crash)>, StorageError> {
        let Some(checkpoint) = self.scope else {
            return Ok(None);
        };
        let nth = self.writes.entry(checkpoint).or_default();
        *nth += 1;
        let point = FaultPoint::StorageWrite {
            checkpoint,
            nth: *nth,
            metadata: path.file_name() == "_metadata",
            channel_state: crate::checkpoint::channel::is_file_name(path.file_name()),
        };
        let Some(action) = self.plan.at(&point) else {
            return Ok(None);
        };
        self.fired.push(action.clone());
        if action.effect == Effect::IoError {
            return Err(StorageError::Io {
                path: path.to_string(),
                source: std::io::Error::other(action.detail),
            });
        }
        // The process dies in the middle of the write: after which step, and what of the
        // unsynced bytes survives, the fault stream decides.
        let step = WriteStep::ALL[self.plan.draw(WriteStep::ALL.len() as u64) as usize];
        let unsynced = Unsynced::ALL[self.plan.draw(Unsynced::ALL.len() as u64) as usize];
        Ok(Some((step, Crash { action, unsynced })))
    }
}

impl CheckpointStorage for Injector<'_> {
    fn root(&self) -> &Path {
        self.storage.root()
    }

    fn write(&mut self, path: &RelPath, bytes: &[u8]) -> Result<FileRef, StorageError> {
        self.alive(path)?;
        let mut planned = self.write_fault(path)?;
        let commit_record = matches!(path.file_name(), "_metadata" | "_completed");
        if path.file_name() == "_metadata" {
            // The commit point: the checkpoint's files were synced before it.
            self.uncommitted.clear();
        }
        // An undone rename brings the old file back; only `_completed` is ever overwritten.
        let previous = if self.storage.exists(path) {
            self.storage.read(path).ok()
        } else {
            None
        };
        let (steps, plan, crashed) = (&mut self.steps, &mut *self.plan, &mut self.crashed);
        let fired = &mut self.fired;
        let mut observer = |step: WriteStep, files: &StepFiles<'_>| {
            *steps += 1;
            let crash = match planned.take() {
                Some((at, crash)) if at == step => Some(crash),
                other => {
                    planned = other;
                    let crash = plan.crash_after(*steps);
                    fired.extend(crash.iter().map(|crash| crash.action.clone()));
                    crash
                }
            };
            let Some(crash) = crash else {
                return Ok(());
            };
            undo_unsynced(step, crash.unsynced, files, previous.as_deref())?;
            let error = StorageError::Io {
                path: files.path.to_string(),
                source: std::io::Error::other(format!(
                    "{} (after {step:?}, unsynced data {:?})",
                    crash.action.detail, crash.unsynced
                )),
            };
            *crashed = Some(crash.action);
            Err(error)
        };
        let file = self.storage.write_stepped(path, bytes, &mut observer)?;
        if !commit_record {
            self.uncommitted.push(path.clone());
        }
        self.written.push(path.clone());
        Ok(file)
    }

    fn read(&self, path: &RelPath) -> Result<Vec<u8>, StorageError> {
        self.alive(path)?;
        self.storage.read(path)
    }

    fn exists(&self, path: &RelPath) -> bool {
        self.crashed.is_none() && self.storage.exists(path)
    }

    fn list(&self, dir: Option<&RelPath>) -> Result<Vec<String>, StorageError> {
        self.alive(&dir.map_or_else(|| ".".to_string(), ToString::to_string))?;
        self.storage.list(dir)
    }

    fn remove_file(&mut self, path: &RelPath) -> Result<(), StorageError> {
        self.alive(path)?;
        self.storage.remove_file(path)
    }

    fn remove_dir(&mut self, dir: &RelPath) -> Result<(), StorageError> {
        self.alive(dir)?;
        self.storage.remove_dir(dir)
    }
}

/// Leaves a write that a crash stopped right after `step` as the crash would: unsynced bytes
/// of the temporary file lost or torn, an unsynced rename undone (the old file, if any, back in
/// place) — or, when the unsynced data is kept, everything as it is.
fn undo_unsynced(
    step: WriteStep,
    unsynced: Unsynced,
    files: &StepFiles<'_>,
    previous: Option<&[u8]>,
) -> Result<(), StorageError> {
    let failed = |e: std::io::Error| StorageError::Io {
        path: files.path.to_string(),
        source: e,
    };
    match (step, unsynced) {
        (_, Unsynced::Kept) | (WriteStep::Create | WriteStep::SyncFile | WriteStep::SyncDir, _) => {
            Ok(())
        }
        (WriteStep::Write, unsynced) => {
            let len = fs::metadata(files.temporary).map_err(failed)?.len();
            let keep = if unsynced == Unsynced::Torn {
                len / 2
            } else {
                0
            };
            fs::OpenOptions::new()
                .write(true)
                .open(files.temporary)
                .and_then(|file| file.set_len(keep))
                .map_err(failed)
        }
        (WriteStep::Rename, _) => {
            // The directory entry change never reached the disk: the new file is back under
            // its temporary name and the old one (if any) under the final name.
            fs::rename(files.full, files.temporary).map_err(failed)?;
            match previous {
                Some(previous) => fs::write(files.full, previous).map_err(failed),
                None => Ok(()),
            }
        }
    }
}
