//! The built-in backends by name, as the CLI, scenario files and tests choose them.
//!
//! ```
//! use faultline::state::BackendKind;
//!
//! let kind: BackendKind = "rocksdb-incremental".parse()?;
//! assert_eq!(kind, BackendKind::RocksDbIncremental);
//! assert_eq!(kind.to_string(), "rocksdb-incremental");
//! assert!("leveldb".parse::<BackendKind>().is_err());
//! assert!(BackendKind::all().contains(&BackendKind::Memory));
//! # Ok::<(), faultline::state::UnknownBackend>(())
//! ```

use std::fmt;
use std::str::FromStr;

use super::{MemoryBackendFactory, StateBackendFactory};

/// A built-in state backend and checkpoint mode.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// In memory, full canonical checkpoints.
    Memory,
    /// RocksDB, full canonical checkpoints.
    #[serde(rename = "rocksdb-full")]
    RocksDbFull,
    /// RocksDB, incremental native checkpoints.
    #[serde(rename = "rocksdb-incremental")]
    RocksDbIncremental,
}

/// A built-in backend this build does not have (RocksDB without the `rocksdb` feature).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{backend} needs the `rocksdb` feature, which this build lacks")]
pub struct BackendUnavailable {
    /// The backend asked for.
    pub backend: BackendKind,
}

/// A backend name that is none of the built-in ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown backend {name:?}: memory, rocksdb-full or rocksdb-incremental")]
pub struct UnknownBackend {
    /// The name given.
    pub name: String,
}

impl BackendKind {
    /// Every built-in backend this build has.
    pub fn all() -> Vec<BackendKind> {
        let mut kinds = vec![BackendKind::Memory];
        if cfg!(feature = "rocksdb") {
            kinds.extend([BackendKind::RocksDbFull, BackendKind::RocksDbIncremental]);
        }
        kinds
    }

    /// Its name (`memory`, `rocksdb-full`, `rocksdb-incremental`).
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Memory => "memory",
            BackendKind::RocksDbFull => "rocksdb-full",
            BackendKind::RocksDbIncremental => "rocksdb-incremental",
        }
    }

    /// A factory for it, or an error when this build lacks RocksDB.
    pub fn factory(self) -> Result<Box<dyn StateBackendFactory>, BackendUnavailable> {
        match self {
            BackendKind::Memory => Ok(Box::new(MemoryBackendFactory)),
            #[cfg(feature = "rocksdb")]
            BackendKind::RocksDbFull => Ok(Box::new(super::RocksDbFactory::new(
                super::RocksDbMode::Full,
            ))),
            #[cfg(feature = "rocksdb")]
            BackendKind::RocksDbIncremental => Ok(Box::new(super::RocksDbFactory::new(
                super::RocksDbMode::Incremental,
            ))),
            #[cfg(not(feature = "rocksdb"))]
            backend => Err(BackendUnavailable { backend }),
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = UnknownBackend;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        [
            BackendKind::Memory,
            BackendKind::RocksDbFull,
            BackendKind::RocksDbIncremental,
        ]
        .into_iter()
        .find(|kind| kind.name() == name)
        .ok_or_else(|| UnknownBackend {
            name: name.to_string(),
        })
    }
}
