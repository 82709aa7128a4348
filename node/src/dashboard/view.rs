//! What the dashboard shows, as one JSON snapshot: every node of the mesh (this one, its
//! live peers, and those it saw leave), every job of every node, one job whole when the page
//! looks at it, and this node's cache.

use std::collections::BTreeMap;
use std::sync::Mutex;

use rendermesh_mesh::PeerEntry;
use rendermesh_protocol::{Capabilities, JobId, JobStatus};
use serde::Serialize;

use super::remote;
use crate::api::auth::ApiState;
use crate::api::desk;

/// Most jobs a snapshot lists.
const MAX_JOBS: usize = 300;
/// Most nodes remembered after they left.
const MAX_LOST: usize = 64;

/// One node as the page shows it.
#[derive(Clone, Debug, Serialize)]
pub struct NodeRow {
    pub name: String,
    pub peer_id: String,
    pub address: String,
    pub arch: String,
    pub cores: u32,
    pub ram_bytes: u64,
    pub gpus: Vec<String>,
    /// Encoders verified by a test encode.
    pub encoders: Vec<String>,
    /// Measured speeds, frames per second, by what was measured.
    pub speeds: BTreeMap<String, f32>,
    pub slots: u32,
    pub running: u32,
    pub last_seen_unix_ms: u64,
    /// "up", "draining" or "lost".
    pub state: &'static str,
    /// This is the node serving the page.
    pub me: bool,
}

/// One job as the page lists it: its status (without shard table), who coordinates it, and
/// how fast it goes.
#[derive(Clone, Debug, Serialize)]
pub struct JobRow {
    #[serde(flatten)]
    pub status: JobStatus,
    pub node: String,
    pub peer_id: String,
    /// Frames per second so far.
    pub rate_fps: f64,
    /// Seconds left at that rate (none when over or unknown).
    pub eta_s: Option<f64>,
    pub files: usize,
    pub files_done: usize,
}

/// This node's cache.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CacheView {
    pub entries_by_kind: BTreeMap<String, usize>,
    pub entry_bytes: u64,
    pub blobs: usize,
    pub blob_bytes: u64,
    pub pinned_bytes: u64,
    /// 0 = unbounded.
    pub blob_quota_bytes: u64,
    /// Copies of each entry in the mesh (0 = every node).
    pub replicas: usize,
    /// Last comparison with a peer's cache (0 = never).
    pub last_sync_unix_ms: u64,
}

/// The whole page's data.
#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    pub node: String,
    pub version: &'static str,
    pub now_unix_ms: u64,
    pub nodes: Vec<NodeRow>,
    pub jobs: Vec<JobRow>,
    /// The job the page looks at, whole (with its shard table), and its coordinator.
    pub job: Option<JobRow>,
    pub cache: CacheView,
    /// Actions are possible (a login, not an open view).
    pub can_act: bool,
}

/// What the dashboard remembers between snapshots: the nodes it has seen (so that one that
/// left shows as lost) and its last look at the cache (reading every entry is not free: at
/// most every [`CACHE_EVERY`]).
#[derive(Default)]
pub struct Memory {
    seen: Mutex<BTreeMap<String, NodeRow>>,
    cache: Mutex<Option<(std::time::Instant, CacheView)>>,
}

/// How often the cache is looked at again.
pub const CACHE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn node_row(caps: &Capabilities) -> NodeRow {
    let mut speeds = BTreeMap::new();
    for e in caps.encoders.iter().filter(|e| e.verified) {
        if e.fps_1080p > 0.0 {
            speeds.insert(format!("{} 1080p", e.name), e.fps_1080p);
        }
    }
    if caps.scene_fps_1080p > 0.0 {
        speeds.insert("scenes 1080p".into(), caps.scene_fps_1080p);
    }
    NodeRow {
        name: caps.hostname.clone(),
        peer_id: String::new(),
        address: String::new(),
        arch: caps.arch.clone(),
        cores: caps.cores,
        ram_bytes: caps.ram_total_bytes,
        gpus: caps.gpus.iter().map(|g| g.name.clone()).collect(),
        encoders: caps
            .encoders
            .iter()
            .filter(|e| e.verified)
            .map(|e| e.name.clone())
            .collect(),
        speeds,
        slots: 0,
        running: 0,
        last_seen_unix_ms: 0,
        state: "up",
        me: false,
    }
}

fn peer_row(p: &PeerEntry) -> NodeRow {
    NodeRow {
        name: p.name.clone(),
        peer_id: p.peer_id.clone(),
        address: p.address.clone(),
        slots: p.slots,
        running: p.running,
        last_seen_unix_ms: p.last_seen_unix_ms,
        // a draining node announces no slots
        state: if p.slots == 0 { "draining" } else { "up" },
        ..node_row(&p.caps)
    }
}

/// Every node: this one first, then its live peers, then those that left.
pub fn nodes(st: &ApiState, mem: &Memory) -> Vec<NodeRow> {
    let rt = &st.runtime;
    let me = NodeRow {
        name: rt.name.clone(),
        peer_id: my_peer_id(st),
        address: rt
            .board
            .link()
            .and_then(|l| l.net.watch_listen().borrow().first().map(|a| a.to_string()))
            .unwrap_or_else(|| rt.cfg.listen.clone()),
        slots: rt.cfg.effective_slots() as u32,
        running: rt.load.running(),
        last_seen_unix_ms: now_ms(),
        me: true,
        ..node_row(&rt.model.caps())
    };
    let live: Vec<NodeRow> = st.peers.rows().iter().map(peer_row).collect();
    let mut seen = mem.seen.lock().unwrap_or_else(|p| p.into_inner());
    for row in &live {
        seen.insert(row.peer_id.clone(), row.clone());
    }
    let mut lost: Vec<NodeRow> = seen
        .values()
        .filter(|r| !live.iter().any(|l| l.peer_id == r.peer_id))
        .cloned()
        .map(|mut r| {
            r.state = "lost";
            r.running = 0;
            r
        })
        .collect();
    lost.sort_by_key(|r| std::cmp::Reverse(r.last_seen_unix_ms));
    lost.truncate(MAX_LOST);
    if seen.len() > live.len() + MAX_LOST {
        let keep: Vec<String> = live
            .iter()
            .chain(lost.iter())
            .map(|r| r.peer_id.clone())
            .collect();
        seen.retain(|k, _| keep.contains(k));
    }
    let mut all = vec![me];
    all.extend(live);
    all.extend(lost);
    all
}

pub fn my_peer_id(st: &ApiState) -> String {
    st.runtime
        .board
        .link()
        .map(|l| l.net.peer_id().to_string())
        .unwrap_or_default()
}

fn job_row(status: JobStatus, node: &str, peer_id: &str) -> JobRow {
    let secs = status.elapsed_ms as f64 / 1000.0;
    let rate_fps = if secs > 0.0 {
        status.frames_done as f64 / secs
    } else {
        0.0
    };
    let left = status.frames_total.saturating_sub(status.frames_done) as f64;
    let eta_s = (!status.state.is_final() && rate_fps > 0.0 && status.frames_total > 0)
        .then(|| left / rate_fps);
    let files = status.items.len();
    let files_done = status
        .items
        .iter()
        .filter(|i| i.state.is_ok() || i.state == rendermesh_protocol::ItemState::Failed)
        .count();
    JobRow {
        status,
        node: node.to_string(),
        peer_id: peer_id.to_string(),
        rate_fps,
        eta_s,
        files,
        files_done,
    }
}

/// Every job of every node, newest first.
pub async fn jobs(st: &ApiState) -> Vec<JobRow> {
    let rt = &st.runtime;
    let me = my_peer_id(st);
    let mut rows: Vec<JobRow> = desk::jobs(rt, MAX_JOBS)
        .into_iter()
        .map(|s| job_row(summary_keep_counts(s), &rt.name, &me))
        .collect();
    if let Some(link) = rt.board.link() {
        for (peer, jobs) in remote::jobs_of_peers(&link).await {
            rows.extend(
                jobs.into_iter()
                    .map(|s| job_row(s, &peer.name, &peer.peer_id)),
            );
        }
    }
    rows.sort_by_key(|r| {
        (
            r.status.state.is_final(),
            std::cmp::Reverse(r.status.started_unix_ms),
        )
    });
    rows.truncate(MAX_JOBS);
    rows
}

/// A job without its shard table; its files stay counted.
fn summary_keep_counts(s: JobStatus) -> JobStatus {
    let items = s.items.clone();
    let mut s = desk::summary(s);
    s.items = items;
    s
}

/// Job `id`, whole, from this node or the peer `peer` (found by asking when not given).
pub async fn job(st: &ApiState, id: JobId, peer: Option<&str>) -> Option<JobRow> {
    let rt = &st.runtime;
    if let Some(s) = desk::job(rt, id) {
        return Some(job_row(s, &rt.name, &my_peer_id(st)));
    }
    let link = rt.board.link()?;
    let peer = match peer {
        Some(p) if !p.is_empty() => p.to_string(),
        _ => remote::coordinator_of(&link, id).await?,
    };
    let status = remote::job_of_peer(&link, &peer, id).await?;
    let name = link
        .peers
        .rows()
        .into_iter()
        .find(|p| p.peer_id == peer)
        .map(|p| p.name)
        .unwrap_or_else(|| peer.clone());
    Some(job_row(status, &name, &peer))
}

/// This node's cache as last seen, looked at again when older than [`CACHE_EVERY`].
async fn cache_memo(st: &actix_web::web::Data<ApiState>, mem: &Memory) -> CacheView {
    if let Some((at, v)) = mem.cache.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
        if at.elapsed() < CACHE_EVERY {
            return v.clone();
        }
    }
    let st2 = st.clone();
    let v = actix_web::web::block(move || cache(&st2))
        .await
        .unwrap_or_default();
    *mem.cache.lock().unwrap_or_else(|p| p.into_inner()) =
        Some((std::time::Instant::now(), v.clone()));
    v
}

/// This node's cache (reads the entry table: call off the async threads).
pub fn cache(st: &ApiState) -> CacheView {
    let rt = &st.runtime;
    let mut v = CacheView {
        replicas: rt.cfg.cache_replicas,
        last_sync_unix_ms: rendermesh_mesh::replica::last_sync_unix_ms(),
        ..CacheView::default()
    };
    if let Ok(list) = rt.cache.entries.list() {
        for e in list {
            *v.entries_by_kind.entry(e.kind.to_string()).or_default() += 1;
            v.entry_bytes += e.bytes as u64;
        }
    }
    let b = rt.cache.blobs.stats();
    v.blobs = b.blobs;
    v.blob_bytes = b.bytes;
    v.pinned_bytes = b.pinned_bytes;
    v.blob_quota_bytes = b.quota;
    v
}

/// The page's data now; `focus`: the job the page looks at and the peer that has it.
pub async fn snapshot(
    st: &actix_web::web::Data<ApiState>,
    mem: &Memory,
    focus: Option<(JobId, Option<String>)>,
    can_act: bool,
) -> Snapshot {
    let cache_view = cache_memo(st, mem).await;
    let job = match &focus {
        Some((id, peer)) => job(st, *id, peer.as_deref()).await,
        None => None,
    };
    Snapshot {
        node: st.runtime.name.clone(),
        version: env!("CARGO_PKG_VERSION"),
        now_unix_ms: now_ms(),
        nodes: nodes(st, mem),
        jobs: jobs(st).await,
        job,
        cache: cache_view,
        can_act,
    }
}
