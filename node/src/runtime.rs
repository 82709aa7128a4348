//! The running parts of a node, the same for the daemon and for an in-process submit:
//! the cache, a worker actor with one slot per core, and the job board.

use std::path::PathBuf;
use std::sync::Arc;

use actix::Actor;
use rendermesh_cache::Cache;
use rendermesh_mesh::bidder::CostModel;
use rendermesh_mesh::{JobBoard, JobHandle, Load, Worker};
use rendermesh_protocol::{EncodeOptions, SceneOptions};
use serde::{Deserialize, Serialize};

use crate::config::NodeConfig;
use crate::engine::executor::MediaExecutor;
use crate::engine::scenes::job::ScenesDriver;
use crate::engine::transcode::TranscodeDriver;

/// A job as the CLI sends it to a node (over the control API, or in-process).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum SubmitRequest {
    Transcode {
        input: PathBuf,
        /// Muxer of the output (from the output file's extension).
        container: String,
        options: EncodeOptions,
        chunk_seconds: Option<f64>,
    },
    Scenes {
        inputs: Vec<PathBuf>,
        options: SceneOptions,
        chunk_seconds: Option<f64>,
    },
}

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
}

impl Runtime {
    /// Open the cache and start the worker; call inside an actix system.
    pub fn start(cfg: NodeConfig) -> anyhow::Result<Self> {
        crate::engine::init();
        std::fs::create_dir_all(&cfg.data_dir).map_err(|e| {
            anyhow::anyhow!("{}: cannot create data dir: {e}", cfg.data_dir.display())
        })?;
        let cache = Cache::open(&cfg.data_dir.join("cache")).map_err(|e| {
            anyhow::anyhow!(
                "{}: cannot open the cache ({e}); is another node using this data dir?",
                cfg.data_dir.display()
            )
        })?;
        cache.blobs.set_quota(cfg.blob_quota_bytes);
        let name = cfg.node_name();
        let executor = Arc::new(MediaExecutor::new(
            cache.blobs.clone(),
            cfg.effective_threads(),
        ));
        // host facts until the encoder calibration of a node fills in the speeds
        let model = CostModel::new(
            crate::host::probe(cfg.effective_force_cpu()),
            cfg.shard_ram_limit_bytes,
        );
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
        })
    }

    /// Start a job.
    pub fn submit(&self, req: SubmitRequest) -> JobHandle {
        let chunk = |c: Option<f64>| {
            c.filter(|s| s.is_finite() && *s >= 0.5)
                .unwrap_or(self.cfg.chunk_seconds)
        };
        match req {
            SubmitRequest::Transcode {
                input,
                container,
                options,
                chunk_seconds,
            } => {
                let label = vec![input.display().to_string()];
                let driver = TranscodeDriver::new(
                    self.cache.clone(),
                    input,
                    options,
                    container,
                    chunk(chunk_seconds),
                )
                .with_peer_encoders(
                    self.board
                        .peers()
                        .into_iter()
                        .map(|p| {
                            let verified = p.caps.encoders.iter().filter(|e| e.verified);
                            (p.name, verified.map(|e| e.name.clone()).collect())
                        })
                        .collect(),
                );
                self.board.start("transcode", label, Box::new(driver))
            }
            SubmitRequest::Scenes {
                inputs,
                options,
                chunk_seconds,
            } => {
                let label = inputs.iter().map(|p| p.display().to_string()).collect();
                let driver = ScenesDriver::new(
                    self.cache.clone(),
                    inputs,
                    options,
                    chunk(chunk_seconds),
                    self.name.clone(),
                );
                self.board.start("scenes", label, Box::new(driver))
            }
        }
    }
}
