//! Cache replication: every node keeps analysis entries in its own store, and the mesh keeps
//! those stores in step.
//!
//! ```text
//!   Entries::put ──Remote::stored──▶ Replicator ──PutEntries──▶ owners of the key
//!   Peers ──PeerChange (joined/left)──▶ Replicator ──Digest, BucketKeys, GetEntries──▶ peer
//!   Entries::get (miss) ──Remote::fetch──▶ GetEntries to the owners, first verified record
//! ```
//!
//! Who holds a key: with `replicas = 0` every node; with `replicas = k` the k nodes (this one
//! included) with the highest `blake3(key ‖ peer id)` among the live ones — rendezvous
//! hashing, so every node computes the same owners from the same peer set and a change of
//! members moves only the keys it must.
//!
//! - New entries are pushed to their owners. With `k`, a node that is not an owner drops its
//!   copy once every owner has confirmed it.
//! - When a peer joins, the two compare digests (one hash per key bucket) and pull the
//!   records they should hold and lack; the same runs against every peer every
//!   [`ANTI_ENTROPY`] to repair lost pushes and dropped corrupt records.
//! - When members change with `k`, each node pushes its entries to their new owners.
//! - Every received record is verified before it is stored; a bad one is refused and its
//!   sender logged.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::stream::{self, StreamExt};
use libp2p::PeerId;
use rendermesh_cache::{Entries, Remote, BUCKETS};
use rendermesh_protocol::{CacheKey, EntryRecord, Request, Response};
use tokio::sync::mpsc;

use crate::net::NetworkHandle;
use crate::peers::PeerChange;
use crate::tasks::Tasks;

/// How often every peer's digest is compared with ours.
pub const ANTI_ENTROPY: Duration = Duration::from_secs(10);
/// Longest wait for a peer's answer to a lookup.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);
/// Keys asked for in one request.
const BATCH_KEYS: usize = 512;
/// Record bytes sent in one request or answer (below the frame limits).
pub const BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Requests in flight to one peer while syncing.
const PARALLEL: usize = 16;
/// New entries are gathered this long before they are pushed.
const PUSH_DELAY: Duration = Duration::from_millis(50);

/// The nodes that hold `key`: all candidates when `k` is 0 or covers them, else the `k`
/// with the highest rendezvous score.
pub fn owners(key: &CacheKey, candidates: &BTreeSet<PeerId>, k: usize) -> Vec<PeerId> {
    if k == 0 || k >= candidates.len() {
        return candidates.iter().copied().collect();
    }
    let mut scored: Vec<([u8; 32], PeerId)> = candidates
        .iter()
        .map(|p| {
            let mut h = blake3::Hasher::new();
            h.update(key.as_bytes());
            h.update(&p.to_bytes());
            (*h.finalize().as_bytes(), *p)
        })
        .collect();
    scored.sort_unstable_by_key(|(score, _)| std::cmp::Reverse(*score));
    scored.into_iter().take(k).map(|(_, p)| p).collect()
}

/// Answer a cache request from `peer` (blocking: call on the blocking pool).
pub fn answer(entries: &Entries, peer: &PeerId, req: Request) -> Response {
    let fail = |e: &dyn std::fmt::Display| Response::Error(format!("cache: {e}"));
    match req {
        Request::Digest => match entries.digest() {
            Ok((n, buckets)) => Response::Digest {
                entries: n,
                buckets,
            },
            Err(e) => fail(&e),
        },
        Request::BucketKeys { bucket } => match entries.bucket_keys(bucket) {
            Ok(keys) => Response::Keys(keys),
            Err(e) => fail(&e),
        },
        Request::GetEntries { keys } => {
            let mut out = Vec::new();
            let mut bytes = 0;
            for key in keys.into_iter().take(BATCH_KEYS) {
                match entries.record(&key) {
                    Ok(Some(record)) => {
                        bytes += record.len() + 40;
                        out.push(EntryRecord { key, record });
                        if bytes >= BATCH_BYTES {
                            break;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => return fail(&e),
                }
            }
            Response::Entries(out)
        }
        Request::PutEntries { records } => {
            let (accepted, rejected) = store_records(entries, peer, records, |_| true);
            Response::Stored { accepted, rejected }
        }
        other => Response::Error(format!("not a cache request: {other:?}")),
    }
}

/// Verify and store records from `peer` (those `wanted` accepts); returns (accepted, rejected).
fn store_records(
    entries: &Entries,
    peer: &PeerId,
    records: Vec<EntryRecord>,
    wanted: impl Fn(&CacheKey) -> bool,
) -> (u32, u32) {
    let (mut accepted, mut rejected) = (0, 0);
    for r in records {
        if !wanted(&r.key) {
            continue;
        }
        match entries.put_record(&r.key, &r.record) {
            Ok(_) => accepted += 1,
            Err(e) => {
                rejected += 1;
                tracing::warn!(key = %r.key, %peer, error = %e, "cache record from peer refused");
            }
        }
    }
    (accepted, rejected)
}

/// When this process last compared its cache with a peer's (ms since the epoch; 0 = never).
static LAST_SYNC_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// When this node last compared its cache with a peer's (ms since the epoch; 0 = never).
pub fn last_sync_unix_ms() -> u64 {
    LAST_SYNC_MS.load(std::sync::atomic::Ordering::Relaxed)
}

/// How a node replicates.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReplicaConfig {
    /// Owners per entry; 0 = every node.
    pub replicas: usize,
}

/// Live members as the replicator knows them (this node excluded).
#[derive(Clone, Default)]
struct Members(Arc<RwLock<BTreeSet<PeerId>>>);

impl Members {
    fn get(&self) -> BTreeSet<PeerId> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
    fn set(&self, m: BTreeSet<PeerId>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = m;
    }
}

enum Event {
    Stored(CacheKey),
}

/// The [`Remote`] the entry table calls: reports new keys, answers misses from peers.
struct Hook {
    tx: mpsc::UnboundedSender<Event>,
    net: NetworkHandle,
    members: Members,
    entries: Entries,
    cfg: ReplicaConfig,
    rt: tokio::runtime::Handle,
}

impl Hook {
    fn candidates(&self) -> BTreeSet<PeerId> {
        let mut c = self.members.get();
        c.insert(self.net.peer_id());
        c
    }
}

impl Remote for Hook {
    fn stored(&self, key: &CacheKey) {
        let _ = self.tx.send(Event::Stored(*key));
    }

    fn fetch(&self, key: &CacheKey) -> Option<Vec<u8>> {
        let me = self.net.peer_id();
        let owners = owners(key, &self.candidates(), self.cfg.replicas);
        let ask: Vec<PeerId> = owners.iter().copied().filter(|p| *p != me).collect();
        if ask.is_empty() {
            return None;
        }
        let net = self.net.clone();
        let key = *key;
        // The caller is a blocking thread; the request runs on the runtime and we wait for it
        // with a deadline (never block_on: the caller might be inside the runtime).
        let (tx, rx) = std::sync::mpsc::channel();
        self.rt.spawn(async move {
            for peer in ask {
                let req = Request::GetEntries { keys: vec![key] };
                match tokio::time::timeout(LOOKUP_TIMEOUT, net.request(peer, req)).await {
                    Ok(Ok(Response::Entries(recs))) => {
                        for r in recs.into_iter().filter(|r| r.key == key) {
                            if Entries::check_record(&r.record).is_ok() {
                                let _ = tx.send(Some((peer, r.record)));
                                return;
                            }
                            tracing::warn!(%key, %peer, "cache record from peer failed verification; refused");
                        }
                    }
                    Ok(Ok(other)) => tracing::debug!(%peer, answer = ?other, "odd lookup answer"),
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "lookup failed"),
                    Err(_) => tracing::debug!(%peer, "lookup timed out"),
                }
            }
            let _ = tx.send(None);
        });
        let (peer, rec) = rx.recv_timeout(LOOKUP_TIMEOUT * 2).ok().flatten()?;
        tracing::info!(%key, %peer, "cache hit on a peer");
        if owners.contains(&me) {
            if let Err(e) = self.entries.put_record(&key, &rec) {
                tracing::warn!(%key, error = %e, "cannot keep the fetched record");
            }
        }
        Some(rec)
    }
}

/// Start replicating `entries` over `net`; membership changes arrive on `changes`. Call
/// inside the actix system; the replicator runs until `changes` closes or `tasks` stops.
pub fn start(
    entries: Entries,
    net: NetworkHandle,
    cfg: ReplicaConfig,
    changes: mpsc::UnboundedReceiver<PeerChange>,
    tasks: &Tasks,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let members = Members::default();
    entries.set_remote(Arc::new(Hook {
        tx,
        net: net.clone(),
        members: members.clone(),
        entries: entries.clone(),
        cfg,
        rt: tokio::runtime::Handle::current(),
    }));
    let r = Replicator {
        entries,
        net,
        cfg,
        members,
        tasks: tasks.clone(),
    };
    tasks.spawn("replicator", r.run(rx, changes));
}

struct Replicator {
    entries: Entries,
    net: NetworkHandle,
    cfg: ReplicaConfig,
    members: Members,
    /// Where its pushes and syncs run (they end when replication is stopped).
    tasks: Tasks,
}

impl Replicator {
    fn me(&self) -> PeerId {
        self.net.peer_id()
    }

    fn candidates(&self) -> BTreeSet<PeerId> {
        let mut c = self.members.get();
        c.insert(self.me());
        c
    }

    async fn run(
        self,
        mut events: mpsc::UnboundedReceiver<Event>,
        mut changes: mpsc::UnboundedReceiver<PeerChange>,
    ) {
        let this = Arc::new(self);
        let mut tick = tokio::time::interval(ANTI_ENTROPY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut pending: BTreeSet<CacheKey> = BTreeSet::new();
        let flush = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(flush);
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(Event::Stored(key)) => {
                        if pending.is_empty() {
                            flush.as_mut().reset(tokio::time::Instant::now() + PUSH_DELAY);
                        }
                        pending.insert(key);
                    }
                    None => break,
                },
                () = &mut flush, if !pending.is_empty() => {
                    let keys: Vec<CacheKey> = std::mem::take(&mut pending).into_iter().collect();
                    let r = this.clone();
                    this.tasks.spawn("push", async move { r.push(keys).await });
                    flush.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(3600));
                }
                ch = changes.recv() => match ch {
                    Some(PeerChange::Joined(p)) => {
                        let mut m = this.members.get();
                        m.insert(p);
                        this.members.set(m);
                        let r = this.clone();
                        this.tasks.spawn("sync", async move {
                            r.sync(p).await;
                            r.rebalance().await;
                        });
                    }
                    Some(PeerChange::Left(p)) => {
                        let mut m = this.members.get();
                        m.remove(&p);
                        this.members.set(m);
                        let r = this.clone();
                        this.tasks.spawn("rebalance", async move { r.rebalance().await });
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    let r = this.clone();
                    this.tasks.spawn("anti-entropy", async move {
                        for p in r.members.get() {
                            r.sync(p).await;
                        }
                    });
                }
            }
        }
    }

    /// Read records on the blocking pool.
    async fn records(&self, keys: Vec<CacheKey>) -> Vec<EntryRecord> {
        let entries = self.entries.clone();
        tokio::task::spawn_blocking(move || {
            keys.into_iter()
                .filter_map(|key| match entries.record(&key) {
                    Ok(Some(record)) => Some(EntryRecord { key, record }),
                    _ => None,
                })
                .collect()
        })
        .await
        .unwrap_or_default()
    }

    /// Send `keys` to `peer` in batches; true when the peer stored all of them.
    async fn send(&self, peer: PeerId, keys: Vec<CacheKey>) -> bool {
        let records = self.records(keys).await;
        let mut all = true;
        let mut batch = Vec::new();
        let mut bytes = 0;
        let mut it = records.into_iter().peekable();
        while let Some(r) = it.next() {
            bytes += r.record.len() + 40;
            batch.push(r);
            if bytes >= BATCH_BYTES || batch.len() >= BATCH_KEYS || it.peek().is_none() {
                let n = batch.len() as u32;
                let req = Request::PutEntries {
                    records: std::mem::take(&mut batch),
                };
                bytes = 0;
                match self.net.request(peer, req).await {
                    Ok(Response::Stored { accepted, .. }) if accepted == n => {}
                    Ok(other) => {
                        tracing::debug!(%peer, answer = ?other, "push not fully stored");
                        all = false;
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "push failed");
                        all = false;
                    }
                }
            }
        }
        all
    }

    /// Push new keys to their owners; drop our copy of keys we do not own once every owner
    /// has them.
    async fn push(&self, keys: Vec<CacheKey>) {
        let me = self.me();
        let cands = self.candidates();
        let mut per_peer: BTreeMap<PeerId, Vec<CacheKey>> = BTreeMap::new();
        let mut owned_by: Vec<(CacheKey, Vec<PeerId>)> = Vec::new();
        for key in keys {
            let o = owners(&key, &cands, self.cfg.replicas);
            for p in o.iter().filter(|p| **p != me) {
                per_peer.entry(*p).or_default().push(key);
            }
            owned_by.push((key, o));
        }
        let mut ok: BTreeSet<PeerId> = BTreeSet::new();
        for (peer, keys) in per_peer {
            let n = keys.len();
            if self.send(peer, keys).await {
                tracing::debug!(%peer, entries = n, "pushed cache entries");
                ok.insert(peer);
            }
        }
        self.drop_unowned(owned_by, &ok).await;
    }

    /// Forget keys this node does not own whose owners all confirmed them.
    async fn drop_unowned(&self, owned_by: Vec<(CacheKey, Vec<PeerId>)>, ok: &BTreeSet<PeerId>) {
        if self.cfg.replicas == 0 {
            return;
        }
        let me = self.me();
        let gone: Vec<CacheKey> = owned_by
            .into_iter()
            .filter(|(_, o)| !o.contains(&me) && o.iter().all(|p| ok.contains(p)))
            .map(|(k, _)| k)
            .collect();
        if gone.is_empty() {
            return;
        }
        let entries = self.entries.clone();
        let n = gone.len();
        let _ = tokio::task::spawn_blocking(move || {
            for k in gone {
                let _ = entries.remove(&k);
            }
        })
        .await;
        tracing::debug!(entries = n, "handed cache entries to their owners");
    }

    /// With `k` owners: after a change of members, give every local entry to its owners.
    async fn rebalance(&self) {
        if self.cfg.replicas == 0 {
            return;
        }
        let entries = self.entries.clone();
        let keys = tokio::task::spawn_blocking(move || entries.keys().unwrap_or_default())
            .await
            .unwrap_or_default();
        if !keys.is_empty() {
            self.push(keys).await;
        }
    }

    /// Fetch `keys` from `peer` and store the verified records; returns how many were stored.
    async fn pull(&self, peer: PeerId, keys: Vec<CacheKey>) -> u32 {
        let mut rest: BTreeSet<CacheKey> = keys.into_iter().collect();
        let mut got = 0;
        // an answer may stop short of the batch (size cap): ask again for the rest
        while !rest.is_empty() {
            let req = Request::GetEntries {
                keys: rest.iter().copied().collect(),
            };
            let recs = match self.net.request(peer, req).await {
                Ok(Response::Entries(r)) => r,
                _ => break,
            };
            let recs: Vec<EntryRecord> = recs.into_iter().filter(|r| rest.remove(&r.key)).collect();
            if recs.is_empty() {
                break;
            }
            let entries = self.entries.clone();
            let (a, _) =
                tokio::task::spawn_blocking(move || store_records(&entries, &peer, recs, |_| true))
                    .await
                    .unwrap_or((0, 0));
            got += a;
        }
        got
    }

    /// Pull from `peer` the records we should hold and lack.
    async fn sync(&self, peer: PeerId) {
        let theirs = match self.net.request(peer, Request::Digest).await {
            Ok(Response::Digest { buckets, .. }) if buckets.len() == BUCKETS => buckets,
            Ok(other) => {
                tracing::debug!(%peer, answer = ?other, "odd digest answer");
                return;
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "digest failed");
                return;
            }
        };
        let entries = self.entries.clone();
        let Ok(Ok((_, ours))) = tokio::task::spawn_blocking(move || entries.digest()).await else {
            return;
        };
        LAST_SYNC_MS.store(crate::clock::now_ms(), std::sync::atomic::Ordering::Relaxed);
        let me = self.me();
        let cands = self.candidates();
        let differing: Vec<u8> = (0..BUCKETS)
            .filter(|&b| ours[b] != theirs[b] && theirs[b] != [0; 32])
            .map(|b| b as u8)
            .collect();
        // ask for the keys of differing buckets, several requests in flight
        let lists: Vec<(u8, Vec<CacheKey>)> = stream::iter(differing)
            .map(|bucket| async move {
                match self.net.request(peer, Request::BucketKeys { bucket }).await {
                    Ok(Response::Keys(k)) => (bucket, k),
                    _ => (bucket, Vec::new()),
                }
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        let entries = self.entries.clone();
        let k = self.cfg.replicas;
        let want: Vec<CacheKey> = tokio::task::spawn_blocking(move || {
            lists
                .into_iter()
                .flat_map(|(b, keys)| keys.into_iter().filter(move |key| key.as_bytes()[0] == b))
                .filter(|key| k == 0 || owners(key, &cands, k).contains(&me))
                .filter(|key| !entries.contains(key).unwrap_or(true))
                .collect()
        })
        .await
        .unwrap_or_default();
        if want.is_empty() {
            return;
        }
        let total = want.len();
        let got: u32 = stream::iter(want.chunks(BATCH_KEYS).map(<[CacheKey]>::to_vec))
            .map(|chunk| self.pull(peer, chunk))
            .buffer_unordered(PARALLEL / 4)
            .fold(0, |acc, n| async move { acc + n })
            .await;
        tracing::info!(%peer, wanted = total, received = got, "cache entries pulled from peer");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rendermesh_protocol::{CacheKind, ContentId};

    fn key(n: u32) -> CacheKey {
        CacheKey::derive(
            CacheKind::SceneList,
            1,
            &n.to_le_bytes(),
            &ContentId::of(b"f"),
        )
    }

    #[test]
    fn rendezvous_owners_are_stable_and_move_only_what_they_must() {
        let peers: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
        let all: BTreeSet<PeerId> = peers.iter().copied().collect();
        // k = 0 or k >= members: everybody
        assert_eq!(owners(&key(1), &all, 0).len(), 4);
        assert_eq!(owners(&key(1), &all, 9).len(), 4);
        let mut load = BTreeMap::<PeerId, usize>::new();
        let mut moved = 0;
        let gone = peers[0];
        let without: BTreeSet<PeerId> = all.iter().copied().filter(|p| *p != gone).collect();
        for n in 0..2000 {
            let o = owners(&key(n), &all, 2);
            assert_eq!(o.len(), 2);
            assert_ne!(o[0], o[1]);
            // the same answer every time, whatever the set's order
            assert_eq!(o, owners(&key(n), &all.clone(), 2));
            for p in &o {
                *load.entry(*p).or_default() += 1;
            }
            let after = owners(&key(n), &without, 2);
            // a survivor keeps its keys; only the departed node's share moves
            for p in o.iter().filter(|p| **p != gone) {
                assert!(after.contains(p));
            }
            if o.contains(&gone) {
                moved += 1;
            }
        }
        // 4000 placements over 4 nodes: each near 1000
        for (p, n) in &load {
            assert!((800..1200).contains(n), "{p}: {n}");
        }
        assert!((800..1200).contains(&moved), "{moved}");
    }

    #[test]
    fn answers_refuse_bad_records_and_serve_good_ones() {
        use rendermesh_cache::MemStore;
        use rendermesh_protocol::{Rational, SceneList};
        let src = Entries::new(Arc::new(MemStore::default()));
        let dst = Entries::new(Arc::new(MemStore::default()));
        let list = SceneList {
            input: ContentId::of(b"f"),
            fps: Rational { num: 30, den: 1 },
            frames: 9,
            cuts: vec![4],
            transitions: Vec::new(),
        };
        src.put(&key(1), &list).unwrap();
        src.put(&key(2), &list).unwrap();
        let peer = PeerId::random();
        let Response::Entries(recs) = answer(
            &src,
            &peer,
            Request::GetEntries {
                keys: vec![key(1), key(2), key(3)],
            },
        ) else {
            panic!("no entries")
        };
        assert_eq!(recs.len(), 2);
        let mut recs = recs;
        let last = recs[1].record.len() - 1;
        recs[1].record[last] ^= 0xff;
        assert_eq!(
            answer(&dst, &peer, Request::PutEntries { records: recs }),
            Response::Stored {
                accepted: 1,
                rejected: 1
            }
        );
        assert!(dst.contains(&key(1)).unwrap());
        assert!(!dst.contains(&key(2)).unwrap());
        let Response::Digest { entries, buckets } = answer(&dst, &peer, Request::Digest) else {
            panic!("no digest")
        };
        assert_eq!((entries, buckets.len()), (1, BUCKETS));
    }
}
