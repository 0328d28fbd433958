//! The synchronisation primitives of faultline's one concurrent component, the checkpoint upload
//! hand-off ([`crate::checkpoint::upload`]): the standard library's, or loom's under
//! `--cfg loom`, so that its tests explore every interleaving of the threads involved.

#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(loom)]
pub(crate) use loom::thread;

#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::thread;
