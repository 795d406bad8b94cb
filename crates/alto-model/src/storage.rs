//! The storage vocabulary every layer shares: the kinds of tier-2 target and how an object's
//! bytes are stored. Written once here; the API, the planner, the rules, the agent and
//! `alto-tier2` all use these types (an unknown kind or compression is a parse error, never
//! a default).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The backend of a storage target, as stored in `storage_targets.kind`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// A local or mounted directory.
    Directory,
    /// An SMB share.
    Smb,
    /// An S3-compatible object store.
    S3,
    /// Azure Blob Storage.
    Azure,
}

impl TargetKind {
    /// Every kind, in the order the documentation lists them.
    pub const ALL: [TargetKind; 4] =
        [TargetKind::Directory, TargetKind::Smb, TargetKind::S3, TargetKind::Azure];

    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Directory => "directory",
            TargetKind::Smb => "smb",
            TargetKind::S3 => "s3",
            TargetKind::Azure => "azure",
        }
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a [`TargetKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown storage target kind {0:?} (directory, smb, s3 or azure)")]
pub struct UnknownTargetKind(pub String);

impl FromStr for TargetKind {
    type Err = UnknownTargetKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TargetKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownTargetKind(s.to_owned()))
    }
}

/// How an object's bytes are stored in tier-2.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// A plain copy of the original bytes.
    #[default]
    None,
    /// One or more zstd frames that decompress to the original bytes.
    Zstd,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_unknown_is_an_error() {
        for k in TargetKind::ALL {
            assert_eq!(k.as_str().parse::<TargetKind>().unwrap(), k);
            assert_eq!(serde_json::to_value(k).unwrap(), serde_json::json!(k.as_str()));
        }
        assert!("nfs".parse::<TargetKind>().is_err());
        assert!(serde_json::from_value::<TargetKind>(serde_json::json!("Directory")).is_err());
        assert!(serde_json::from_value::<Compression>(serde_json::json!("gzip")).is_err());
    }
}
