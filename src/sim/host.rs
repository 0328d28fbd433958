//! [`HostDetail`]: a fact that may differ between hosts running the same seed.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A detail that depends on the host, not on the seed alone: where a corruption landed in a
/// RocksDB file, whose size varies with the host's RocksDB build. It is kept and rendered, and
/// written in human-readable encodings (the JSON lines process mode streams), but a binary
/// encoding — the one the trace hash covers — writes nothing for it, so such a detail cannot
/// make two runs of one seed hash differently.
///
/// ```
/// use faultline::sim::HostDetail;
///
/// let detail = HostDetail("bit 3 of byte 1200 flipped".into());
/// assert_eq!(serde_json::to_string(&detail).unwrap(), "\"bit 3 of byte 1200 flipped\"");
/// assert_eq!(postcard::to_allocvec(&detail).unwrap(), Vec::<u8>::new());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostDetail(pub String);

impl fmt::Display for HostDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for HostDetail {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.0)
        } else {
            serializer.serialize_unit()
        }
    }
}

impl<'de> Deserialize<'de> for HostDetail {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            String::deserialize(deserializer).map(HostDetail)
        } else {
            <()>::deserialize(deserializer).map(|()| HostDetail::default())
        }
    }
}
