//! The marks table: what a watched folder did with each of its files, so that a file is
//! handled once, across restarts.
//!
//! A mark is kept under its scope (a watch's id) and the file's name within it (its path
//! relative to the watched folder). Marks are this node's own: they live in a tree of the
//! store that replication never reads, and nothing here knows about the mesh.
//!
//! Records are JSON (`serde_json`), so a newer build reads an older mark (new fields have
//! defaults) and the control API serves them as they are stored; the tree name carries the
//! table's version.

use std::sync::Arc;

use rendermesh_protocol::ContentId;
use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError, Tree};

/// Longest scope (a watch id) and file name a mark may have, in bytes.
pub const MAX_SCOPE: usize = 128;
pub const MAX_NAME: usize = 4096;

/// How the last look at a file ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum MarkOutcome {
    /// Its output was made and written to `output`.
    Done { output: String },
    /// Its output already existed (made by someone else): left as it was.
    Skipped { output: String },
    /// It could not be made; one line why. Not tried again until the file changes.
    Failed { error: String },
}

/// What a watched folder knows about one of its files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// Size and modification time (ns since the epoch) when it was last looked at.
    pub size: u64,
    pub mtime_ns: i64,
    /// Its content then (none when it could not be read).
    pub content: Option<ContentId>,
    pub outcome: MarkOutcome,
    /// How many times an output was made from it (again when its content changed).
    #[serde(default)]
    pub made: u32,
    /// When the mark was written, ms since the epoch.
    #[serde(default)]
    pub at_ms: u64,
}

/// A bad scope or name, or a store failure.
#[derive(Debug, thiserror::Error)]
pub enum MarkError {
    #[error("mark scope {0:?} is empty, too long or holds a NUL byte")]
    BadScope(String),
    #[error("mark name {0:?} is empty, too long or holds a NUL byte")]
    BadName(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("mark record: {0}")]
    Record(String),
}

/// The marks of every scope, in the node's store.
#[derive(Clone)]
pub struct Marks {
    store: Arc<dyn Store>,
}

fn check(text: &str, max: usize) -> bool {
    !text.is_empty() && text.len() <= max && !text.contains('\0')
}

fn key(scope: &str, name: &str) -> Result<Vec<u8>, MarkError> {
    if !check(scope, MAX_SCOPE) {
        return Err(MarkError::BadScope(scope.into()));
    }
    if !check(name, MAX_NAME) {
        return Err(MarkError::BadName(name.chars().take(80).collect()));
    }
    let mut k = Vec::with_capacity(scope.len() + 1 + name.len());
    k.extend_from_slice(scope.as_bytes());
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    Ok(k)
}

impl Marks {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// The mark of `name` in `scope`; a record that does not decode is no mark.
    pub fn get(&self, scope: &str, name: &str) -> Result<Option<Mark>, MarkError> {
        let Some(raw) = self.store.get(Tree::Marks, &key(scope, name)?)? else {
            return Ok(None);
        };
        Ok(decode(&raw))
    }

    pub fn put(&self, scope: &str, name: &str, mark: &Mark) -> Result<(), MarkError> {
        let raw = serde_json::to_vec(mark).map_err(|e| MarkError::Record(e.to_string()))?;
        Ok(self.store.put(Tree::Marks, &key(scope, name)?, &raw)?)
    }

    pub fn remove(&self, scope: &str, name: &str) -> Result<(), MarkError> {
        Ok(self.store.remove(Tree::Marks, &key(scope, name)?)?)
    }

    /// Every mark of `scope`, by name; records that do not decode are left out.
    pub fn list(&self, scope: &str) -> Result<Vec<(String, Mark)>, MarkError> {
        if !check(scope, MAX_SCOPE) {
            return Err(MarkError::BadScope(scope.into()));
        }
        let mut prefix = scope.as_bytes().to_vec();
        prefix.push(0);
        let pairs = self.store.scan_prefix(Tree::Marks, &prefix)?;
        Ok(pairs
            .into_iter()
            .filter_map(|(k, v)| {
                let name = String::from_utf8(k.get(prefix.len()..)?.to_vec()).ok()?;
                Some((name, decode(&v)?))
            })
            .collect())
    }
}

fn decode(raw: &[u8]) -> Option<Mark> {
    match serde_json::from_slice(raw) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(error = %e, "a mark record does not decode; ignored");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::stores;

    fn mark(size: u64, outcome: MarkOutcome) -> Mark {
        Mark {
            size,
            mtime_ns: 1_700_000_000_000_000_000,
            content: Some(ContentId::of(b"clip")),
            outcome,
            made: 1,
            at_ms: 5,
        }
    }

    #[test]
    fn put_get_list_remove_on_both_stores() {
        for (name, s, _d) in stores() {
            let m = Marks::new(s.clone());
            let done = mark(
                10,
                MarkOutcome::Done {
                    output: "/out/a.mp4".into(),
                },
            );
            let failed = mark(
                3,
                MarkOutcome::Failed {
                    error: "not media".into(),
                },
            );
            assert_eq!(m.get("w1", "a.mp4").unwrap(), None, "{name}");
            m.put("w1", "a.mp4", &done).unwrap();
            m.put("w1", "sub/b.mov", &failed).unwrap();
            // a scope that is a prefix of another is not mixed with it
            m.put("w", "x.mp4", &done).unwrap();
            m.put("w12", "y.mp4", &done).unwrap();
            assert_eq!(m.get("w1", "a.mp4").unwrap(), Some(done.clone()), "{name}");
            assert_eq!(
                m.list("w1").unwrap(),
                vec![("a.mp4".into(), done.clone()), ("sub/b.mov".into(), failed)],
                "{name}"
            );
            m.remove("w1", "sub/b.mov").unwrap();
            assert_eq!(m.list("w1").unwrap().len(), 1, "{name}");
            // entries and files are other trees: marks never show there
            assert!(s.entries(Tree::Entries).unwrap().is_empty(), "{name}");
            assert!(m.put("", "a", &done).is_err());
            assert!(m.put("w1", "", &done).is_err());
            assert!(m.get("w1", "a\0b").is_err());
        }
    }

    #[test]
    fn an_undecodable_record_is_no_mark_and_old_records_read() {
        let s: Arc<dyn Store> = Arc::new(crate::MemStore::default());
        let m = Marks::new(s.clone());
        s.put(Tree::Marks, b"w1\0bad.mp4", b"{not json").unwrap();
        assert_eq!(m.get("w1", "bad.mp4").unwrap(), None);
        assert!(m.list("w1").unwrap().is_empty());
        // a record without the later fields
        let old =
            br#"{"size":1,"mtime_ns":2,"content":null,"outcome":{"state":"failed","error":"x"}}"#;
        s.put(Tree::Marks, b"w1\0old.mp4", old).unwrap();
        let got = m.get("w1", "old.mp4").unwrap().unwrap();
        assert_eq!((got.made, got.at_ms), (0, 0));
        assert_eq!(got.outcome, MarkOutcome::Failed { error: "x".into() });
    }
}
