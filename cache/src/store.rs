//! The key-value store behind the cache, as a trait with two implementations:
//! [`SledStore`] on disk and [`MemStore`] in memory. One test suite runs against both.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

/// Named key spaces of the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tree {
    /// Analysis entries by cache key.
    Entries,
    /// File identities by path.
    Files,
    /// Marks of files a watched folder has handled: this node's own, never replicated.
    Marks,
    /// A bounded, ordered table of this node's own records (its job history), never
    /// replicated.
    Journal,
}

impl Tree {
    fn name(self) -> &'static str {
        match self {
            Tree::Entries => "entries/1",
            Tree::Files => "files/1",
            Tree::Marks => "marks/1",
            Tree::Journal => "journal/1",
        }
    }
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Backend(String),
    #[error("store i/o: {0}")]
    Io(String),
    /// Another process holds the database (sled allows one process at a time).
    #[error("{}: the store is locked by another process", path.display())]
    Locked { path: std::path::PathBuf },
    /// The disk holding the database is full.
    #[error("{}: no space left on the device", path.display())]
    NoSpace { path: std::path::PathBuf },
}

/// (key, value) pairs of a tree.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The operations the cache needs from a key-value engine.
pub trait Store: Send + Sync {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    fn remove(&self, tree: Tree, key: &[u8]) -> Result<(), StoreError>;
    /// All keys of a tree, in key order.
    fn keys(&self, tree: Tree) -> Result<Vec<Vec<u8>>, StoreError>;
    /// All (key, value) pairs of a tree, in key order.
    fn entries(&self, tree: Tree) -> Result<Pairs, StoreError>;
    /// The (key, value) pairs of a tree whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Pairs, StoreError> {
        let mut all = self.entries(tree)?;
        all.retain(|(k, _)| k.starts_with(prefix));
        Ok(all)
    }
    fn flush(&self) -> Result<(), StoreError>;
}

/// sled on disk.
pub struct SledStore {
    db: sled::Db,
}

fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl SledStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new().path(path).open().map_err(|e| {
            // sled 0.34 reports a held lock only in its message
            if e.to_string().contains("could not acquire lock") {
                StoreError::Locked {
                    path: path.to_path_buf(),
                }
            } else if matches!(&e, sled::Error::Io(io) if crate::reserve::is_no_space(io)) {
                StoreError::NoSpace {
                    path: path.to_path_buf(),
                }
            } else {
                StoreError::Backend(format!("{}: {e}", path.display()))
            }
        })?;
        Ok(Self { db })
    }

    fn tree(&self, tree: Tree) -> Result<sled::Tree, StoreError> {
        self.db.open_tree(tree.name()).map_err(backend)
    }
}

impl Store for SledStore {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .tree(tree)?
            .get(key)
            .map_err(backend)?
            .map(|v| v.to_vec()))
    }

    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.tree(tree)?.insert(key, value).map_err(backend)?;
        Ok(())
    }

    fn remove(&self, tree: Tree, key: &[u8]) -> Result<(), StoreError> {
        self.tree(tree)?.remove(key).map_err(backend)?;
        Ok(())
    }

    fn keys(&self, tree: Tree) -> Result<Vec<Vec<u8>>, StoreError> {
        self.tree(tree)?
            .iter()
            .keys()
            .map(|k| k.map(|k| k.to_vec()).map_err(backend))
            .collect()
    }

    fn entries(&self, tree: Tree) -> Result<Pairs, StoreError> {
        self.tree(tree)?
            .iter()
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(backend))
            .collect()
    }

    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Pairs, StoreError> {
        self.tree(tree)?
            .scan_prefix(prefix)
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(backend))
            .collect()
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(backend)?;
        Ok(())
    }
}

type MemMap = BTreeMap<(Tree, Vec<u8>), Vec<u8>>;

/// In memory, for tests.
#[derive(Default)]
pub struct MemStore {
    map: Mutex<MemMap>,
}

impl MemStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemMap> {
        // A panic while holding the lock cannot leave the map half-written: recover it.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for MemStore {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().get(&(tree, key.to_vec())).cloned())
    }

    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.lock().insert((tree, key.to_vec()), value.to_vec());
        Ok(())
    }

    fn remove(&self, tree: Tree, key: &[u8]) -> Result<(), StoreError> {
        self.lock().remove(&(tree, key.to_vec()));
        Ok(())
    }

    fn keys(&self, tree: Tree) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self
            .lock()
            .keys()
            .filter(|(t, _)| *t == tree)
            .map(|(_, k)| k.clone())
            .collect())
    }

    fn entries(&self, tree: Tree) -> Result<Pairs, StoreError> {
        Ok(self
            .lock()
            .iter()
            .filter(|((t, _), _)| *t == tree)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Arc;

    /// Both implementations, for suites that must pass on each.
    pub(crate) fn stores() -> Vec<(&'static str, Arc<dyn Store>, Option<tempfile::TempDir>)> {
        let dir = tempfile::tempdir().unwrap();
        let sled = SledStore::open(&dir.path().join("db")).unwrap();
        vec![
            ("mem", Arc::new(MemStore::default()), None),
            ("sled", Arc::new(sled), Some(dir)),
        ]
    }

    #[test]
    fn basic_ops_on_both() {
        for (name, s, _dir) in stores() {
            assert_eq!(s.get(Tree::Entries, b"k").unwrap(), None, "{name}");
            s.put(Tree::Entries, b"k", b"v").unwrap();
            s.put(Tree::Files, b"k", b"other").unwrap();
            assert_eq!(
                s.get(Tree::Entries, b"k").unwrap().as_deref(),
                Some(&b"v"[..]),
                "{name}"
            );
            assert_eq!(
                s.get(Tree::Files, b"k").unwrap().as_deref(),
                Some(&b"other"[..])
            );
            s.put(Tree::Entries, b"a", b"1").unwrap();
            assert_eq!(
                s.keys(Tree::Entries).unwrap(),
                vec![b"a".to_vec(), b"k".to_vec()],
                "{name}"
            );
            s.remove(Tree::Entries, b"k").unwrap();
            assert_eq!(s.get(Tree::Entries, b"k").unwrap(), None, "{name}");
            s.put(Tree::Marks, b"ab", b"2").unwrap();
            s.put(Tree::Marks, b"b", b"3").unwrap();
            assert_eq!(
                s.scan_prefix(Tree::Marks, b"a").unwrap(),
                vec![(b"ab".to_vec(), b"2".to_vec())],
                "{name}"
            );
            s.flush().unwrap();
        }
    }

    #[test]
    fn a_second_open_of_one_sled_dir_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let _first = SledStore::open(&dir.path().join("db")).unwrap();
        match SledStore::open(&dir.path().join("db")) {
            Err(StoreError::Locked { path }) => assert_eq!(path, dir.path().join("db")),
            Err(e) => panic!("expected Locked, got {e}"),
            Ok(_) => panic!("second open succeeded"),
        }
    }

    #[test]
    fn sled_persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(&dir.path().join("db")).unwrap();
            s.put(Tree::Entries, b"k", b"v").unwrap();
            s.flush().unwrap();
        }
        let s = SledStore::open(&dir.path().join("db")).unwrap();
        assert_eq!(
            s.get(Tree::Entries, b"k").unwrap().as_deref(),
            Some(&b"v"[..])
        );
    }
}
