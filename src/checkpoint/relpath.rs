//! Relative paths inside a checkpoint root. Every path a format names is parsed into a
//! [`RelPath`], which admits only plain components, so a hostile `_metadata` cannot name `..`,
//! an absolute path or anything outside the root.
//!
//! ```
//! use faultline::checkpoint::RelPath;
//!
//! let path = RelPath::new("chk-3/keyed0-0.kv")?;
//! assert_eq!(path.first_component(), "chk-3");
//! assert_eq!(RelPath::new("shared")?.join("keyed0-0.sst")?.as_str(), "shared/keyed0-0.sst");
//! // Nothing a hostile `_metadata` names can leave the root.
//! assert!(RelPath::new("../outside").is_err());
//! assert!(RelPath::new("/etc/passwd").is_err());
//! assert!(RelPath::new("chk-3/./kv").is_err());
//! # Ok::<(), faultline::checkpoint::FormatError>(())
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use super::FormatError;

/// A validated path relative to the checkpoint root: `/`-separated components of ASCII
/// letters, digits, `.`, `_` and `-`, none of them `.` or `..`, at most 8 components and 255
/// bytes in all.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelPath(String);

const COMPONENTS_MAX: usize = 8;
const LEN_MAX: usize = 255;

impl RelPath {
    /// Parses and validates a relative path.
    pub fn new(path: &str) -> Result<Self, FormatError> {
        let invalid = |reason: &str| FormatError::UnsafePath {
            path: path.chars().take(LEN_MAX).collect(),
            reason: reason.to_string(),
        };
        if path.is_empty() {
            return Err(invalid("empty"));
        }
        if path.len() > LEN_MAX {
            return Err(invalid("longer than 255 bytes"));
        }
        let components: Vec<&str> = path.split('/').collect();
        if components.len() > COMPONENTS_MAX {
            return Err(invalid("more than 8 components"));
        }
        for component in components {
            if component.is_empty() {
                return Err(invalid("absolute, or an empty component"));
            }
            if component == "." || component == ".." {
                return Err(invalid("`.` or `..` component"));
            }
            let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
            if !component.chars().all(allowed) {
                return Err(invalid("a character outside [A-Za-z0-9._-]"));
            }
        }
        Ok(Self(path.to_string()))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path below `root`. Validation guarantees the result stays inside `root`.
    pub fn under(&self, root: &Path) -> PathBuf {
        let mut full = root.to_path_buf();
        for component in self.0.split('/') {
            full.push(component);
        }
        full
    }

    /// The first component (for `chk-3/_metadata`, `chk-3`).
    pub fn first_component(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }

    /// The last component (for `chk-3/_metadata`, `_metadata`).
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// This path with `name` appended as a further component.
    pub fn join(&self, name: &str) -> Result<Self, FormatError> {
        Self::new(&format!("{}/{}", self.0, name))
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_are_accepted() {
        assert_eq!(
            RelPath::new("chk-3/_metadata").unwrap().as_str(),
            "chk-3/_metadata"
        );
        assert_eq!(
            RelPath::new("shared/000012.sst").unwrap().first_component(),
            "shared"
        );
    }

    #[test]
    fn escapes_are_rejected() {
        for hostile in [
            "",
            "/etc/passwd",
            "../x",
            "chk-1/../../x",
            "a//b",
            "./a",
            "a\\b",
            "a b",
        ] {
            assert!(
                matches!(RelPath::new(hostile), Err(FormatError::UnsafePath { .. })),
                "{hostile:?} was accepted"
            );
        }
        assert!(RelPath::new(&"a/".repeat(9)).is_err());
        assert!(RelPath::new(&"a".repeat(256)).is_err());
    }
}
