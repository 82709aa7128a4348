//! Analysis entries: small results under a [`CacheKey`], version-marked, kind-marked and
//! verified.
//!
//! On-disk records (the first byte is the format):
//!
//! - format 2 (written now): `2 ‖ tag length (u8) ‖ kind tag ‖ blake3(tag length ‖ kind tag ‖
//!   payload) (32 bytes) ‖ payload`. The tag is [`CacheKind::tag`], so a reader can tell what a
//!   record holds without knowing the key's derivation.
//! - format 1 (still read): `1 ‖ blake3(payload) (32 bytes) ‖ payload`; its kind is unknown.
//!
//! The payload is the value in the protocol codec. A record whose hash does not match is
//! reported as corrupt, dropped from the store and treated as a miss: it is never served.
//! What type a kind holds is declared by [`CacheValue`].

use std::fmt;
use std::sync::{Arc, RwLock};

use rendermesh_protocol::{
    codec, BeatGrid, CacheKey, CacheKind, FileLooks, FileOutput, NeuralScores, SceneList,
    SceneScores, ShardOutput,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::store::{Store, StoreError, Tree};

const FORMAT_V1: u8 = 1;
const FORMAT: u8 = 2;
const HASH: usize = 32;

/// Every kind, for reading tags back. [`kind_is_listed`] fails to compile when a kind is added
/// to the protocol and not here.
const KINDS: [CacheKind; 7] = CacheKind::ALL;

#[allow(dead_code)]
fn kind_is_listed(k: CacheKind) {
    match k {
        CacheKind::Probe
        | CacheKind::SceneShard
        | CacheKind::SceneList
        | CacheKind::Segment
        | CacheKind::BeatGrid
        | CacheKind::FrameLooks
        | CacheKind::FileOutput => {}
    }
}

/// A value that can be cached: its type and its [`CacheKind`] go together, and the kind is
/// written into the record.
pub trait CacheValue: Serialize + DeserializeOwned {
    const KIND: CacheKind;
}

impl CacheValue for SceneScores {
    const KIND: CacheKind = CacheKind::SceneShard;
}

/// The shot-boundary network's predictions of a run of blocks (keys of their own params).
impl CacheValue for NeuralScores {
    const KIND: CacheKind = CacheKind::SceneShard;
}

impl CacheValue for SceneList {
    const KIND: CacheKind = CacheKind::SceneList;
}

impl CacheValue for BeatGrid {
    const KIND: CacheKind = CacheKind::BeatGrid;
}

impl CacheValue for FileOutput {
    const KIND: CacheKind = CacheKind::FileOutput;
}

impl CacheValue for FileLooks {
    const KIND: CacheKind = CacheKind::FrameLooks;
}

/// An encode shard's output: its segment blob.
impl CacheValue for ShardOutput {
    const KIND: CacheKind = CacheKind::Segment;
}

/// Why an entry could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot encode cache entry: {0}")]
    Codec(#[from] codec::CodecError),
}

/// What a stored record says it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredKind {
    Known(CacheKind),
    /// A tag this build does not know (written by a newer node).
    Other(String),
    /// A format 1 record: no kind was written.
    Unmarked,
}

impl StoredKind {
    fn from_tag(tag: &str) -> Self {
        KINDS
            .into_iter()
            .find(|k| k.tag() == tag)
            .map(StoredKind::Known)
            .unwrap_or_else(|| StoredKind::Other(tag.to_string()))
    }
}

impl fmt::Display for StoredKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoredKind::Known(k) => f.write_str(k.tag()),
            StoredKind::Other(t) => f.write_str(t),
            StoredKind::Unmarked => f.write_str("unmarked"),
        }
    }
}

/// A verified record: its kind and its payload (codec bytes), not decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawEntry {
    pub key: CacheKey,
    pub format: u8,
    pub kind: StoredKind,
    pub payload: Vec<u8>,
}

/// An entry as listed: header only, not verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryInfo {
    pub key: CacheKey,
    pub format: u8,
    pub kind: StoredKind,
    /// Size of the whole record.
    pub bytes: usize,
}

/// A record that failed verification and was dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadEntry {
    /// The key in hex (it may not even be a well-formed key).
    pub key: String,
    pub why: String,
}

/// What [`Entries::verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryCheck {
    pub checked: usize,
    pub bad: Vec<BadEntry>,
}

/// The rest of the mesh, as the entry table sees it (the replicator implements it).
pub trait Remote: Send + Sync {
    /// A new record was stored under `key` by this node (not by replication).
    fn stored(&self, key: &CacheKey);
    /// A local miss: the verified record of `key` from a peer that holds it, if any. Called on
    /// blocking threads; it may wait for the network (briefly).
    fn fetch(&self, key: &CacheKey) -> Option<Vec<u8>>;
}

/// A record received from elsewhere was refused.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("record failed verification: {0}")]
    Invalid(String),
}

/// Number of digest buckets (entries are bucketed by the first byte of their key).
pub const BUCKETS: usize = 256;

/// The analysis-entry table.
#[derive(Clone)]
pub struct Entries {
    store: Arc<dyn Store>,
    remote: Arc<RwLock<Option<Arc<dyn Remote>>>>,
    lookups: Arc<crate::lookups::Lookups>,
}

impl Entries {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            remote: Arc::default(),
            lookups: Arc::default(),
        }
    }

    /// Hits and misses of [`get`](Self::get) so far, by kind.
    pub fn lookups(&self) -> Vec<crate::lookups::LookupCount> {
        self.lookups.snapshot()
    }

    /// Connect the table to the mesh: new records are reported, misses asked for.
    pub fn set_remote(&self, remote: Arc<dyn Remote>) {
        *self.remote.write().unwrap_or_else(|p| p.into_inner()) = Some(remote);
    }

    fn remote(&self) -> Option<Arc<dyn Remote>> {
        self.remote
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Store `value` under `key`, marked with its kind.
    pub fn put<T: CacheValue>(&self, key: &CacheKey, value: &T) -> Result<(), EntryError> {
        let payload = codec::encode(value)?;
        let rec = record(T::KIND, &payload);
        let old = self.store.get(Tree::Entries, key.as_bytes())?;
        self.store.put(Tree::Entries, key.as_bytes(), &rec)?;
        if old.as_deref() != Some(rec.as_slice()) {
            if let Some(r) = self.remote() {
                r.stored(key);
            }
        }
        Ok(())
    }

    /// The stored record of `key` (for sending to a peer), verified; a corrupt one is dropped
    /// and reported as a miss. Never asks the mesh.
    pub fn record(&self, key: &CacheKey) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(rec) = self.store.get(Tree::Entries, key.as_bytes())? else {
            return Ok(None);
        };
        match parse(&rec) {
            Ok(_) => Ok(Some(rec)),
            Err(why) => self.drop_bad(key, &why).map(|_| None),
        }
    }

    /// Store a record received from a peer, after verifying it. Returns whether it was new.
    /// Not reported to the [`Remote`] (it came from there).
    pub fn put_record(&self, key: &CacheKey, rec: &[u8]) -> Result<bool, RecordError> {
        parse(rec).map_err(RecordError::Invalid)?;
        let old = self.store.get(Tree::Entries, key.as_bytes())?;
        if old.as_deref() == Some(rec) {
            return Ok(false);
        }
        self.store.put(Tree::Entries, key.as_bytes(), rec)?;
        Ok(true)
    }

    /// Check a record received from a peer without storing it.
    pub fn check_record(rec: &[u8]) -> Result<(), String> {
        parse(rec).map(|_| ())
    }

    pub fn remove(&self, key: &CacheKey) -> Result<(), StoreError> {
        self.store.remove(Tree::Entries, key.as_bytes())
    }

    /// The local record of `key`, or a peer's (verified) on a local miss.
    fn lookup(&self, key: &CacheKey) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(rec) = self.store.get(Tree::Entries, key.as_bytes())? {
            match parse(&rec) {
                Ok(_) => return Ok(Some(rec)),
                Err(why) => self.drop_bad(key, &why)?,
            }
        }
        Ok(self
            .remote()
            .and_then(|r| r.fetch(key))
            .filter(|rec| parse(rec).is_ok()))
    }

    /// A compact summary of the table: the number of entries and, per bucket (first key
    /// byte), the XOR of blake3(key ‖ record) over its entries (zeros when empty). Two tables
    /// with equal buckets hold the same records.
    pub fn digest(&self) -> Result<(u64, Vec<[u8; 32]>), StoreError> {
        let mut buckets = vec![[0u8; 32]; BUCKETS];
        let mut n = 0;
        for (k, rec) in self.store.entries(Tree::Entries)? {
            let Some(&first) = k.first() else { continue };
            let mut h = blake3::Hasher::new();
            h.update(&k);
            h.update(&rec);
            let b = &mut buckets[first as usize];
            for (x, y) in b.iter_mut().zip(h.finalize().as_bytes()) {
                *x ^= y;
            }
            n += 1;
        }
        Ok((n, buckets))
    }

    /// Keys whose first byte is `bucket`.
    pub fn bucket_keys(&self, bucket: u8) -> Result<Vec<CacheKey>, StoreError> {
        Ok(self
            .keys()?
            .into_iter()
            .filter(|k| k.as_bytes()[0] == bucket)
            .collect())
    }

    /// The value under `key`, verified. A corrupt or undecodable record is dropped and
    /// reported as a miss (with a warning), never returned. A record of another kind is a miss
    /// too (and kept: it is intact, just not this type).
    pub fn get<T: CacheValue>(&self, key: &CacheKey) -> Result<Option<T>, StoreError> {
        let found = self.get_uncounted::<T>(key);
        if let Ok(v) = &found {
            self.lookups.count(T::KIND, v.is_some());
        }
        found
    }

    fn get_uncounted<T: CacheValue>(&self, key: &CacheKey) -> Result<Option<T>, StoreError> {
        let Some(rec) = self.lookup(key)? else {
            return Ok(None);
        };
        let parsed = match parse(&rec) {
            Ok(p) => p,
            Err(why) => return self.drop_bad(key, &why).map(|_| None),
        };
        match &parsed.kind {
            StoredKind::Known(k) if *k == T::KIND => {}
            StoredKind::Unmarked => {}
            other => {
                tracing::warn!(key = %key, stored = %other, wanted = T::KIND.tag(), "cache entry of another kind");
                return Ok(None);
            }
        }
        match codec::decode::<T>(parsed.payload) {
            Ok(v) => Ok(Some(v)),
            Err(e) => self.drop_bad(key, &e.to_string()).map(|_| None),
        }
    }

    fn drop_bad(&self, key: &CacheKey, why: &str) -> Result<(), StoreError> {
        tracing::warn!(key = %key, %why, "dropping corrupt cache entry");
        self.store.remove(Tree::Entries, key.as_bytes())
    }

    /// The record under `key`, verified but not decoded. A corrupt record is dropped and
    /// reported as a miss.
    pub fn get_raw(&self, key: &CacheKey) -> Result<Option<RawEntry>, StoreError> {
        let Some(rec) = self.lookup(key)? else {
            return Ok(None);
        };
        match parse(&rec) {
            Ok(p) => Ok(Some(RawEntry {
                key: *key,
                format: p.format,
                kind: p.kind,
                payload: p.payload.to_vec(),
            })),
            Err(why) => self.drop_bad(key, &why).map(|_| None),
        }
    }

    pub fn contains(&self, key: &CacheKey) -> Result<bool, StoreError> {
        Ok(self.store.get(Tree::Entries, key.as_bytes())?.is_some())
    }

    pub fn keys(&self) -> Result<Vec<CacheKey>, StoreError> {
        Ok(self
            .store
            .keys(Tree::Entries)?
            .into_iter()
            .filter_map(|k| {
                <[u8; 32]>::try_from(k.as_slice())
                    .ok()
                    .map(CacheKey::from_bytes)
            })
            .collect())
    }

    /// Every entry's key, format, kind and size, in key order (headers only: not verified).
    pub fn list(&self) -> Result<Vec<EntryInfo>, StoreError> {
        let mut out = Vec::new();
        for key in self.keys()? {
            let Some(rec) = self.store.get(Tree::Entries, key.as_bytes())? else {
                continue;
            };
            let (format, kind) = match header(&rec) {
                Ok((format, kind, _)) => (format, kind),
                Err(_) => (rec.first().copied().unwrap_or(0), StoredKind::Unmarked),
            };
            out.push(EntryInfo {
                key,
                format,
                kind,
                bytes: rec.len(),
            });
        }
        Ok(out)
    }

    /// Re-hash every record and drop the bad ones: wrong hash, unknown format, a key that is
    /// not a cache key, or a payload `check` refuses (the caller knows the types and can try
    /// to decode). Returns what was checked and what was dropped.
    pub fn verify(
        &self,
        check: impl Fn(&RawEntry) -> Result<(), String>,
    ) -> Result<EntryCheck, StoreError> {
        let mut report = EntryCheck::default();
        for raw_key in self.store.keys(Tree::Entries)? {
            let Some(rec) = self.store.get(Tree::Entries, &raw_key)? else {
                continue;
            };
            report.checked += 1;
            let verdict = match <[u8; 32]>::try_from(raw_key.as_slice()) {
                Err(_) => Err(format!("key of {} bytes is not a cache key", raw_key.len())),
                Ok(k) => parse(&rec).and_then(|p| {
                    check(&RawEntry {
                        key: CacheKey::from_bytes(k),
                        format: p.format,
                        kind: p.kind,
                        payload: p.payload.to_vec(),
                    })
                }),
            };
            if let Err(why) = verdict {
                let key = hex(&raw_key);
                tracing::warn!(%key, %why, "dropping corrupt cache entry");
                self.store.remove(Tree::Entries, &raw_key)?;
                report.bad.push(BadEntry { key, why });
            }
        }
        Ok(report)
    }

    pub fn flush(&self) -> Result<(), StoreError> {
        self.store.flush()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A format 2 record.
fn record(kind: CacheKind, payload: &[u8]) -> Vec<u8> {
    let tag = kind.tag().as_bytes();
    // tags are short constants; a longer one would be a programming error caught by tests
    let tag = &tag[..tag.len().min(u8::MAX as usize)];
    let mut h = blake3::Hasher::new();
    h.update(&[tag.len() as u8]);
    h.update(tag);
    h.update(payload);
    let mut rec = Vec::with_capacity(2 + tag.len() + HASH + payload.len());
    rec.push(FORMAT);
    rec.push(tag.len() as u8);
    rec.extend_from_slice(tag);
    rec.extend_from_slice(h.finalize().as_bytes());
    rec.extend_from_slice(payload);
    rec
}

struct Parsed<'a> {
    format: u8,
    kind: StoredKind,
    payload: &'a [u8],
}

/// Format, kind, and where the hashed part and the stored hash are, without hashing.
/// Returns `(format, kind, (hashed range start, hash offset))`.
fn header(rec: &[u8]) -> Result<(u8, StoredKind, (usize, usize)), String> {
    let short = || format!("record of {} bytes is shorter than its header", rec.len());
    match rec.first().copied() {
        None => Err(short()),
        Some(FORMAT_V1) => {
            if rec.len() < 1 + HASH {
                return Err(short());
            }
            Ok((FORMAT_V1, StoredKind::Unmarked, (1 + HASH, 1)))
        }
        Some(FORMAT) => {
            let tag_len = *rec.get(1).ok_or_else(short)? as usize;
            let hash_at = 2 + tag_len;
            if rec.len() < hash_at + HASH {
                return Err(short());
            }
            let tag = std::str::from_utf8(&rec[2..hash_at])
                .map_err(|_| "kind tag is not UTF-8".to_string())?;
            Ok((FORMAT, StoredKind::from_tag(tag), (1, hash_at)))
        }
        Some(f) => Err(format!("unknown entry format {f}")),
    }
}

/// Check a record's format and hash; return its kind and payload.
fn parse(rec: &[u8]) -> Result<Parsed<'_>, String> {
    let (format, kind, (hashed_from, hash_at)) = header(rec)?;
    let payload_at = hash_at + HASH;
    let stored = &rec[hash_at..payload_at];
    let got = match format {
        FORMAT_V1 => blake3::hash(&rec[payload_at..]),
        _ => {
            let mut h = blake3::Hasher::new();
            h.update(&rec[hashed_from..hash_at]);
            h.update(&rec[payload_at..]);
            h.finalize()
        }
    };
    if got.as_bytes() != stored {
        return Err("payload does not match its hash".into());
    }
    Ok(Parsed {
        format,
        kind,
        payload: &rec[payload_at..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::stores;
    use crate::store::MemStore;
    use rendermesh_protocol::{ContentId, Rational};
    use serde::Deserialize;
    use std::sync::Mutex;

    /// A test value cached as a probe.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Numbers(Vec<u32>);
    impl CacheValue for Numbers {
        const KIND: CacheKind = CacheKind::Probe;
    }

    /// A test value cached as a scene list.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Text(String);
    impl CacheValue for Text {
        const KIND: CacheKind = CacheKind::SceneList;
    }

    fn key(n: u8) -> CacheKey {
        CacheKey::derive(CacheKind::Probe, 1, &[n], &ContentId::of(b"input"))
    }

    fn list(cuts: Vec<u64>) -> SceneList {
        SceneList {
            input: ContentId::of(b"input"),
            fps: Rational { num: 25, den: 1 },
            frames: 100,
            cuts,
            transitions: Vec::new(),
        }
    }

    struct FakeRemote {
        stored: Mutex<Vec<CacheKey>>,
        answer: Option<Vec<u8>>,
        asked: Mutex<u32>,
    }

    impl Remote for FakeRemote {
        fn stored(&self, key: &CacheKey) {
            self.stored.lock().unwrap().push(*key);
        }
        fn fetch(&self, _: &CacheKey) -> Option<Vec<u8>> {
            *self.asked.lock().unwrap() += 1;
            self.answer.clone()
        }
    }

    #[test]
    fn replication_hooks_and_digests_on_both() {
        for (name, store, _dir) in stores() {
            let a = Entries::new(store);
            let b = Entries::new(Arc::new(MemStore::default()));
            let remote = Arc::new(FakeRemote {
                stored: Mutex::default(),
                answer: None,
                asked: Mutex::default(),
            });
            a.set_remote(remote.clone());
            a.put(&key(1), &list(vec![1])).unwrap();
            a.put(&key(1), &list(vec![1])).unwrap(); // same record: not reported again
            a.put(&key(2), &list(vec![2])).unwrap();
            assert_eq!(
                *remote.stored.lock().unwrap(),
                vec![key(1), key(2)],
                "{name}"
            );
            // a miss asks the mesh
            assert!(a.get::<SceneList>(&key(3)).unwrap().is_none());
            assert_eq!(*remote.asked.lock().unwrap(), 1, "{name}");

            // copy a's records to b: the digests become equal
            assert_ne!(a.digest().unwrap(), b.digest().unwrap(), "{name}");
            for k in a.keys().unwrap() {
                let rec = a.record(&k).unwrap().unwrap();
                assert!(b.put_record(&k, &rec).unwrap());
                assert!(
                    !b.put_record(&k, &rec).unwrap(),
                    "{name}: same record twice"
                );
            }
            let (n, buckets) = a.digest().unwrap();
            assert_eq!(n, 2);
            assert_eq!(a.digest().unwrap(), b.digest().unwrap(), "{name}");
            assert_eq!(buckets.iter().filter(|b| **b != [0; 32]).count(), {
                let mut firsts: Vec<u8> =
                    a.keys().unwrap().iter().map(|k| k.as_bytes()[0]).collect();
                firsts.dedup();
                firsts.len()
            });
            let k1 = key(1);
            assert_eq!(b.bucket_keys(k1.as_bytes()[0]).unwrap(), vec![k1]);
            // replicated records are not reported back to the mesh
            assert_eq!(remote.stored.lock().unwrap().len(), 2);

            // a record with a flipped byte is refused and not stored
            let mut bad = a.record(&key(2)).unwrap().unwrap();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            let fresh = Entries::new(Arc::new(MemStore::default()));
            assert!(matches!(
                fresh.put_record(&key(2), &bad),
                Err(RecordError::Invalid(_))
            ));
            assert!(!fresh.contains(&key(2)).unwrap());
            assert!(Entries::check_record(&bad).is_err());
        }
    }

    #[test]
    fn a_miss_is_answered_by_a_verified_remote_record_only() {
        let src = Entries::new(Arc::new(MemStore::default()));
        src.put(&key(5), &list(vec![5])).unwrap();
        let good = src.record(&key(5)).unwrap().unwrap();
        let mut bad = good.clone();
        bad[40] ^= 0x10;
        for (rec, want) in [(good, Some(list(vec![5]))), (bad, None)] {
            let e = Entries::new(Arc::new(MemStore::default()));
            e.set_remote(Arc::new(FakeRemote {
                stored: Mutex::default(),
                answer: Some(rec),
                asked: Mutex::default(),
            }));
            assert_eq!(e.get::<SceneList>(&key(5)).unwrap(), want);
        }
    }

    #[test]
    fn put_get_on_both() {
        for (name, s, _d) in stores() {
            let e = Entries::new(s);
            assert_eq!(e.get::<Numbers>(&key(1)).unwrap(), None, "{name}");
            e.put(&key(1), &Numbers(vec![1, 2, 3])).unwrap();
            assert_eq!(
                e.get::<Numbers>(&key(1)).unwrap(),
                Some(Numbers(vec![1, 2, 3])),
                "{name}"
            );
            assert!(e.contains(&key(1)).unwrap());
            assert_eq!(e.keys().unwrap(), vec![key(1)]);
        }
    }

    #[test]
    fn records_carry_their_kind() {
        for (name, s, _d) in stores() {
            let e = Entries::new(s);
            let list = SceneList {
                input: ContentId::of(b"clip"),
                fps: Rational { num: 30, den: 1 },
                frames: 480,
                cuts: vec![40, 60],
                transitions: Vec::new(),
            };
            e.put(&key(1), &list).unwrap();
            e.put(&key(2), &Numbers(vec![7])).unwrap();
            let raw = e.get_raw(&key(1)).unwrap().unwrap();
            assert_eq!(raw.format, 2, "{name}");
            assert_eq!(raw.kind, StoredKind::Known(CacheKind::SceneList), "{name}");
            assert_eq!(codec::decode::<SceneList>(&raw.payload).unwrap(), list);
            let listed = e.list().unwrap();
            assert_eq!(listed.len(), 2);
            assert_eq!(listed[0].kind.to_string(), "scene-list");
            assert_eq!(listed[1].kind.to_string(), "probe");
            // asking for the wrong type is a miss, and the intact record stays
            assert_eq!(e.get::<Text>(&key(2)).unwrap(), None, "{name}");
            assert!(e.contains(&key(2)).unwrap(), "{name}");
        }
    }

    #[test]
    fn format_1_records_are_still_read() {
        for (name, s, _d) in stores() {
            let e = Entries::new(s.clone());
            let payload = codec::encode(&Numbers(vec![4, 5])).unwrap();
            let mut rec = vec![1u8];
            rec.extend_from_slice(blake3::hash(&payload).as_bytes());
            rec.extend_from_slice(&payload);
            s.put(Tree::Entries, key(5).as_bytes(), &rec).unwrap();
            assert_eq!(
                e.get::<Numbers>(&key(5)).unwrap(),
                Some(Numbers(vec![4, 5])),
                "{name}"
            );
            let raw = e.get_raw(&key(5)).unwrap().unwrap();
            assert_eq!((raw.format, raw.kind), (1, StoredKind::Unmarked));
            assert_eq!(e.verify(|_| Ok(())).unwrap().bad, vec![], "{name}");
        }
    }

    #[test]
    fn unknown_tags_are_kept_and_listed() {
        for (_name, s, _d) in stores() {
            let e = Entries::new(s.clone());
            let payload = codec::encode(&7u32).unwrap();
            let mut h = blake3::Hasher::new();
            h.update(&[9]);
            h.update(b"from-2030");
            h.update(&payload);
            let mut rec = vec![2u8, 9];
            rec.extend_from_slice(b"from-2030");
            rec.extend_from_slice(h.finalize().as_bytes());
            rec.extend_from_slice(&payload);
            s.put(Tree::Entries, key(6).as_bytes(), &rec).unwrap();
            let raw = e.get_raw(&key(6)).unwrap().unwrap();
            assert_eq!(raw.kind, StoredKind::Other("from-2030".into()));
            assert_eq!(e.verify(|_| Ok(())).unwrap().checked, 1);
            assert!(e.contains(&key(6)).unwrap());
        }
    }

    #[test]
    fn a_corrupt_entry_is_never_served_and_is_refetched_from_a_peer() {
        for (name, s, _d) in stores() {
            let e = Entries::new(s.clone());
            e.put(&key(2), &list(vec![7])).unwrap();
            let good = e.record(&key(2)).unwrap().unwrap();
            let mut rec = good.clone();
            let last = rec.len() - 1;
            rec[last] ^= 0x40;
            s.put(Tree::Entries, key(2).as_bytes(), &rec).unwrap();
            let remote = Arc::new(FakeRemote {
                stored: Mutex::default(),
                answer: Some(good.clone()),
                asked: Mutex::default(),
            });
            e.set_remote(remote.clone());
            // the bad bytes are never served: the peer's verified copy is
            assert_eq!(
                e.get::<SceneList>(&key(2)).unwrap(),
                Some(list(vec![7])),
                "{name}"
            );
            assert_eq!(*remote.asked.lock().unwrap(), 1, "{name}");
        }
    }

    #[test]
    fn corrupt_entry_is_dropped_not_served() {
        for (name, s, _d) in stores() {
            let e = Entries::new(s.clone());
            e.put(&key(2), &Text("scene list".into())).unwrap();
            let mut rec = s.get(Tree::Entries, key(2).as_bytes()).unwrap().unwrap();
            let last = rec.len() - 1;
            rec[last] ^= 0x40;
            s.put(Tree::Entries, key(2).as_bytes(), &rec).unwrap();
            assert_eq!(e.get::<Text>(&key(2)).unwrap(), None, "{name}");
            assert!(
                !e.contains(&key(2)).unwrap(),
                "{name}: corrupt entry not dropped"
            );
        }
    }

    #[test]
    fn a_flipped_kind_tag_is_corruption() {
        for (name, s, _d) in stores() {
            let e = Entries::new(s.clone());
            e.put(&key(3), &Numbers(vec![1])).unwrap();
            let mut rec = s.get(Tree::Entries, key(3).as_bytes()).unwrap().unwrap();
            rec[2] ^= 0x20; // "probe" → "Probe"
            s.put(Tree::Entries, key(3).as_bytes(), &rec).unwrap();
            assert_eq!(e.get_raw(&key(3)).unwrap(), None, "{name}");
            assert!(!e.contains(&key(3)).unwrap(), "{name}");
        }
    }

    #[test]
    fn verify_drops_bad_records_and_keeps_good_ones() {
        for (name, s, _d) in stores() {
            let e = Entries::new(s.clone());
            for n in 1..=4 {
                e.put(&key(n), &Numbers(vec![n as u32])).unwrap();
            }
            // flip a payload byte of key 1, truncate key 2, a stray key, an undecodable key 3
            let mut rec = s.get(Tree::Entries, key(1).as_bytes()).unwrap().unwrap();
            let last = rec.len() - 1;
            rec[last] ^= 0x01;
            s.put(Tree::Entries, key(1).as_bytes(), &rec).unwrap();
            s.put(Tree::Entries, key(2).as_bytes(), &[2, 5, b'p'])
                .unwrap();
            s.put(Tree::Entries, b"short", &record(CacheKind::Probe, b"x"))
                .unwrap();
            let undecodable = key(3);
            let check = e
                .verify(|raw| {
                    if raw.key == undecodable {
                        Err("does not decode".into())
                    } else {
                        codec::decode::<Numbers>(&raw.payload)
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    }
                })
                .unwrap();
            assert_eq!(check.checked, 5, "{name}");
            let mut bad: Vec<_> = check.bad.iter().map(|b| b.key.clone()).collect();
            bad.sort();
            let mut want = vec![
                key(1).to_string(),
                key(2).to_string(),
                key(3).to_string(),
                hex(b"short"),
            ];
            want.sort();
            assert_eq!(bad, want, "{name}");
            assert_eq!(e.keys().unwrap(), vec![key(4)], "{name}");
            assert_eq!(
                e.get::<Numbers>(&key(4)).unwrap(),
                Some(Numbers(vec![4])),
                "{name}"
            );
            let again = e.verify(|_| Ok(())).unwrap();
            assert_eq!((again.checked, again.bad.len()), (1, 0), "{name}");
        }
    }

    #[test]
    fn short_and_unknown_format_records_are_misses() {
        for (_name, s, _d) in stores() {
            let e = Entries::new(s.clone());
            s.put(Tree::Entries, key(3).as_bytes(), b"x").unwrap();
            assert_eq!(e.get::<Text>(&key(3)).unwrap(), None);
            let mut rec = vec![9u8];
            rec.extend_from_slice(&[0; 40]);
            s.put(Tree::Entries, key(4).as_bytes(), &rec).unwrap();
            assert_eq!(e.get::<Text>(&key(4)).unwrap(), None);
            s.put(Tree::Entries, key(5).as_bytes(), &[2, 200, b'x'])
                .unwrap();
            assert_eq!(e.get::<Text>(&key(5)).unwrap(), None);
        }
    }
}
