//! `/metrics`: the node and its view of the mesh for Prometheus.
//!
//! One [`prometheus_client`] registry per node, written at each scrape:
//!
//! - [`live`]: gauges read from live state (peers up, slots, jobs and shards on the board by
//!   state, measured speeds, build info) and the totals kept elsewhere, as counters: cache
//!   lookups by kind and outcome (counted in the cache crate) and blob bytes fetched from and
//!   served to peers (counted in the mesh's transfer module).
//! - [`finished`]: counters and duration histograms of the jobs this node coordinates and
//!   their shards, each counted once when first seen final.
//! - [`text`]: OpenMetrics or the Prometheus text format, as the scraper asks.
//! - [`route`]: `GET /metrics`, with the control token as a bearer unless `metrics_open`.
//!
//! Labels are kinds, states, encoder names, task classes and the version: never a file path
//! or a job id.

mod finished;
mod live;
mod route;
mod text;

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::registry::Registry;

pub use route::routes;

use crate::api::auth::ApiState;

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    live: live::Live,
    /// Also serializes scrapes: a refresh and its encoding go together.
    finished: Mutex<finished::Finished>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let mut registry = Registry::default();
        let live = live::Live::new(&mut registry);
        let finished = Mutex::new(finished::Finished::new(&mut registry, since));
        Self {
            registry,
            live,
            finished,
        }
    }

    /// Sample the node now and write every metric as OpenMetrics text.
    pub fn render(&self, st: &ApiState) -> Result<String, std::fmt::Error> {
        let rt = &st.runtime;
        let jobs = rt.board.list();
        let peers = st.peers.rows();
        let caps = rt.model.caps();
        let lookups = rt.cache.entries.lookups();
        let kinds: Vec<&str> = crate::jobs::registry::KINDS
            .iter()
            .map(|k| k.name())
            .collect();
        let mut finished = self.finished.lock().unwrap_or_else(|p| p.into_inner());
        finished.sample(&jobs);
        self.live.refresh(&live::Snapshot {
            peers: &peers,
            slots: rt.cfg.effective_slots() as u64,
            busy: u64::from(rt.load.running()),
            jobs: &jobs,
            kinds: &kinds,
            caps: &caps,
            lookups: &lookups,
            transfer: rendermesh_mesh::transfer::totals(),
        });
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
