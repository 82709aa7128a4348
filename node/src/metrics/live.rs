//! What `/metrics` reads from the node's live state at each scrape: the peer table, slots,
//! the jobs and shards on the board by state, measured speeds, and the totals kept elsewhere
//! (cache lookups in the cache crate, bytes moved in the mesh's transfer module).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rendermesh_cache::LookupCount;
use rendermesh_protocol::{Capabilities, JobState, JobStatus, ShardState};

use super::finished::{job_state, shard_state, KindState};

type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EncoderLabels {
    encoder: String,
    resolution: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResolutionLabels {
    resolution: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabels {
    kind: String,
    outcome: String,
}

const JOB_STATES: [JobState; 6] = [
    JobState::Planning,
    JobState::Running,
    JobState::Finishing,
    JobState::Done,
    JobState::Failed,
    JobState::Cancelled,
];

const SHARD_STATES: [ShardState; 5] = [
    ShardState::Pending,
    ShardState::Running,
    ShardState::Done,
    ShardState::Cached,
    ShardState::Failed,
];

/// What a scrape reads, gathered by the caller.
pub struct Snapshot<'a> {
    pub peers: &'a [rendermesh_mesh::PeerEntry],
    pub slots: u64,
    pub busy: u64,
    pub jobs: &'a [JobStatus],
    /// Every job kind the node knows (zeros are shown for them).
    pub kinds: &'a [&'a str],
    pub caps: &'a Capabilities,
    pub lookups: &'a [LookupCount],
    pub transfer: rendermesh_mesh::transfer::TransferTotals,
}

/// The metrics read at scrape time.
pub struct Live {
    peers_up: Gauge,
    slots: Gauge,
    slots_busy: Gauge,
    mesh_slots: Gauge,
    mesh_slots_busy: Gauge,
    jobs: Family<KindState, Gauge>,
    shards: Family<KindState, Gauge>,
    encoder_fps: Family<EncoderLabels, FloatGauge>,
    scene_fps: Family<ResolutionLabels, FloatGauge>,
    task_speed: Family<ClassLabels, FloatGauge>,
    build_info: Family<VersionLabels, Gauge>,
    lookups: Family<LookupLabels, Counter>,
    fetched: Counter,
    served: Counter,
}

/// Register `metric` under `name`; returns it.
fn reg<M: Clone + prometheus_client::registry::Metric>(
    r: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    r.register(name, help, metric.clone());
    metric
}

impl Live {
    pub fn new(r: &mut Registry) -> Self {
        let s = Self {
            peers_up: reg(
                r,
                "rendermesh_peers_up",
                "Live peers in this node's peer table, this node not included",
                Gauge::default(),
            ),
            slots: reg(
                r,
                "rendermesh_slots",
                "Shard slots of this node",
                Gauge::default(),
            ),
            slots_busy: reg(
                r,
                "rendermesh_slots_busy",
                "Shards running on this node now (its own and its peers')",
                Gauge::default(),
            ),
            mesh_slots: reg(
                r,
                "rendermesh_mesh_slots",
                "Shard slots of the mesh as this node sees it: its own and its live peers'",
                Gauge::default(),
            ),
            mesh_slots_busy: reg(
                r,
                "rendermesh_mesh_slots_busy",
                "Shards running in the mesh as this node sees it (peers as of their last heartbeat)",
                Gauge::default(),
            ),
            jobs: reg(
                r,
                "rendermesh_jobs",
                "Jobs this node coordinates, by kind and state",
                Family::default(),
            ),
            shards: reg(
                r,
                "rendermesh_shards",
                "Shards of the jobs this node coordinates, by job kind and shard state",
                Family::default(),
            ),
            encoder_fps: reg(
                r,
                "rendermesh_encoder_frames_per_second",
                "Measured encode speed of a verified encoder on this node with one shard's threads",
                Family::default(),
            ),
            scene_fps: reg(
                r,
                "rendermesh_scene_frames_per_second",
                "Measured scene-analysis speed of one shard on this node",
                Family::default(),
            ),
            task_speed: reg(
                r,
                "rendermesh_task_speed",
                "Measured speed of this node per task class, in the class's work units per second per slot",
                Family::default(),
            ),
            build_info: reg(
                r,
                "rendermesh_build_info",
                "Always 1, labelled with the version of the rendermesh binary",
                Family::default(),
            ),
            lookups: reg(
                r,
                "rendermesh_cache_lookups",
                "Lookups of analysis entries by jobs of this node, by entry kind and outcome",
                Family::default(),
            ),
            fetched: reg(
                r,
                "rendermesh_fetched_bytes",
                "Blob bytes this node received from peers (inputs of shards it ran, outputs of shards of its jobs)",
                Counter::default(),
            ),
            served: reg(
                r,
                "rendermesh_served_bytes",
                "Blob bytes this node sent to peers that fetched from it",
                Counter::default(),
            ),
        };
        s.build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);
        s
    }

    /// Bring every metric up to `now`.
    pub fn refresh(&self, now: &Snapshot<'_>) {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let gauge64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.peers_up.set(gauge(now.peers.len()));
        self.slots.set(gauge64(now.slots));
        self.slots_busy.set(gauge64(now.busy));
        let peer_slots: u64 = now.peers.iter().map(|p| u64::from(p.slots)).sum();
        let peer_busy: u64 = now.peers.iter().map(|p| u64::from(p.running)).sum();
        self.mesh_slots.set(gauge64(now.slots + peer_slots));
        self.mesh_slots_busy.set(gauge64(now.busy + peer_busy));

        // every known kind and state, zeros included; a kind only the board knows too
        self.jobs.clear();
        self.shards.clear();
        let label = |kind: &str, state: &str| KindState {
            kind: kind.to_string(),
            state: state.to_string(),
        };
        for kind in now.kinds {
            for s in JOB_STATES {
                let _ = self.jobs.get_or_create(&label(kind, job_state(s)));
            }
            for s in SHARD_STATES {
                let _ = self.shards.get_or_create(&label(kind, shard_state(s)));
            }
        }
        for job in now.jobs {
            self.jobs
                .get_or_create(&label(&job.kind, job_state(job.state)))
                .inc();
            for row in &job.shards {
                self.shards
                    .get_or_create(&label(&job.kind, shard_state(row.state)))
                    .inc();
            }
        }

        self.refresh_speeds(now.caps);

        for c in now.lookups {
            for (outcome, total) in [("hit", c.hits), ("miss", c.misses)] {
                let counter = self.lookups.get_or_create(&LookupLabels {
                    kind: c.kind.tag().to_string(),
                    outcome: outcome.to_string(),
                });
                catch_up(&counter, total);
            }
        }
        catch_up(&self.fetched, now.transfer.fetched);
        catch_up(&self.served, now.transfer.served);
    }

    fn refresh_speeds(&self, caps: &Capabilities) {
        self.encoder_fps.clear();
        for e in caps.encoders.iter().filter(|e| e.verified) {
            for (resolution, fps) in [("720p", e.fps_720p), ("1080p", e.fps_1080p)] {
                if fps > 0.0 {
                    self.encoder_fps
                        .get_or_create(&EncoderLabels {
                            encoder: e.name.clone(),
                            resolution: resolution.to_string(),
                        })
                        .set(f64::from(fps));
                }
            }
        }
        self.scene_fps.clear();
        for (resolution, fps) in [
            ("720p", caps.scene_fps_720p),
            ("1080p", caps.scene_fps_1080p),
        ] {
            if fps > 0.0 {
                self.scene_fps
                    .get_or_create(&ResolutionLabels {
                        resolution: resolution.to_string(),
                    })
                    .set(f64::from(fps));
            }
        }
        self.task_speed.clear();
        for (class, speed) in &caps.speeds {
            self.task_speed
                .get_or_create(&ClassLabels {
                    class: class.clone(),
                })
                .set(f64::from(*speed));
        }
    }
}

/// Move `counter` up to `total` (a total kept elsewhere, that only grows).
fn catch_up(counter: &Counter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}
