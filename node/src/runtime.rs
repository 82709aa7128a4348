//! The running parts of a node, the same for the daemon and for an in-process submit:
//! the cache, a worker actor with one slot per core, and the job board. Jobs start through
//! the registry of job kinds.

use std::sync::Arc;

use actix::Actor;
use rendermesh_cache::Cache;
use rendermesh_mesh::sched::bidder::CostModel;
use rendermesh_mesh::{JobBoard, JobHandle, Load, Worker};

use crate::config::NodeConfig;
use crate::jobs::executor::KindExecutor;
use crate::jobs::kind::{JobContext, MeshBlobs, SubmitRequest};
use crate::jobs::registry;

/// Cache, workers and jobs of this node.
pub struct Runtime {
    pub cfg: NodeConfig,
    pub name: String,
    pub cache: Cache,
    pub board: Arc<JobBoard>,
    /// Shards running on this node's worker.
    pub load: Load,
    /// This node's worker (it also runs shards awarded by peers).
    pub worker: actix::Addr<Worker>,
    /// This node's cost model: its bids, learning from the shards its worker runs.
    pub model: CostModel,
    /// The models this node holds and serves (pinned blobs).
    pub models: crate::models::Models,
    /// The jobs of this node, kept across restarts, and what each was submitted with.
    pub history: std::sync::Arc<crate::history::History>,
    /// Set when the node drains: it takes no new job.
    pub draining: std::sync::atomic::AtomicBool,
}

/// A fetch whose partial file was not written to for this long was given up on.
const STALE_PARTIAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// What earlier runs left in the store's temp dir: the temp files of processes that are gone
/// (a node or a command killed mid-write) and the partial files of fetches given up on.
fn sweep_leftovers(blobs: &rendermesh_cache::BlobStore) {
    let temp = blobs.clean_temp().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot sweep the store's temp files");
        (0, 0)
    });
    let partial = rendermesh_mesh::transfer::remove_stale_partials(blobs, STALE_PARTIAL)
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot sweep stale partial fetches");
            (0, 0)
        });
    if temp.0 + partial.0 > 0 {
        tracing::info!(
            files = temp.0 + partial.0,
            bytes = temp.1 + partial.1,
            "removed what earlier runs left in the store's temp dir"
        );
    }
}

impl Runtime {
    /// Open the cache and start the worker; call inside an actix system.
    pub fn start(cfg: NodeConfig) -> anyhow::Result<Self> {
        crate::engine::init();
        std::fs::create_dir_all(&cfg.data_dir).map_err(|e| {
            anyhow::anyhow!("{}: cannot create data dir: {e}", cfg.data_dir.display())
        })?;
        let cache = Cache::open(&cfg.data_dir.join("cache")).map_err(|e| match e {
            rendermesh_cache::StoreError::Locked { .. } => anyhow::anyhow!(
                "{}: cannot open the cache ({e}); is another node using this data dir?",
                cfg.data_dir.display()
            ),
            e => anyhow::anyhow!("{}: cannot open the cache: {e}", cfg.data_dir.display()),
        })?;
        sweep_leftovers(&cache.blobs);
        cache.blobs.set_quota(cfg.blob_quota_bytes);
        let history = crate::history::History::open(&cache, cfg.job_history);
        let name = cfg.node_name();
        let models = crate::models::Models::load(&cfg.effective_models_dir(), &cache.blobs);
        let executor = Arc::new(KindExecutor::new(
            cache.blobs.clone(),
            cfg.effective_threads(),
            models.clone(),
        ));
        // host facts until the encoder calibration of a node fills in the speeds
        let mut host = crate::host::probe(cfg.effective_force_cpu());
        host.models = models.caps();
        let model = CostModel::new(host, cfg.shard_ram_limit_bytes);
        let worker = Worker::new(name.clone(), executor, cfg.effective_slots())
            .with_model(model.clone())
            .with_nice(cfg.shard_nice);
        let load = worker.load();
        let slots = worker.slots();
        let worker = worker.start();
        let board = Arc::new(JobBoard::new(vec![(worker.clone(), slots)]));
        tracing::info!(node = %name, slots = cfg.effective_slots(), threads = cfg.effective_threads(), "node ready");
        Ok(Self {
            cfg,
            name,
            cache,
            board,
            load,
            worker,
            model,
            models,
            history: std::sync::Arc::new(history),
            draining: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Start a job of the kind `req` names; an unknown kind or bad parameters is one line.
    pub fn submit(&self, req: SubmitRequest) -> Result<JobHandle, String> {
        self.submit_where(req, |_| Ok(()))
    }

    /// Like [`Runtime::submit`], with `check` on the job's inputs before it starts.
    pub fn submit_where(
        &self,
        req: SubmitRequest,
        check: impl FnOnce(&[String]) -> Result<(), String>,
    ) -> Result<JobHandle, String> {
        if self.draining.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(format!(
                "node {} is draining: it finishes its jobs and stops; submit on another node, or once it is back",
                self.name
            ));
        }
        let peers = self.board.peers();
        let mut models = self.models.caps();
        models.extend(peers.iter().flat_map(|p| p.caps.models.iter().cloned()));
        let ctx = JobContext {
            cache: self.cache.clone(),
            name: self.name.clone(),
            chunk_seconds: self.cfg.chunk_seconds,
            peers,
            mesh: self.board.link().map(MeshBlobs::new),
            models,
        };
        let (kind, started) = registry::start(&ctx, req.clone())?;
        check(&started.inputs)?;
        // shown with the user's own paths
        let inputs = started
            .inputs
            .iter()
            .map(|i| crate::engine::source::unmark(i).into_owned())
            .collect();
        let handle = self.board.start(kind, inputs, started.driver);
        // kept with the user's own paths: a job run again from the dashboard (an admin's
        // act, with the token) reads them as the node's user
        self.history.submitted(handle.id(), &unmarked(req));
        self.history.record(&handle.status());
        Ok(handle)
    }
}

/// `req` with its passed files named by the user's paths ([`crate::engine::source::unmark`]).
fn unmarked(req: SubmitRequest) -> SubmitRequest {
    let text = req.params.to_string();
    match serde_json::from_str(&crate::engine::source::unmark(&text)) {
        Ok(params) => SubmitRequest { params, ..req },
        Err(_) => req,
    }
}
