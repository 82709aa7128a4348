//! The node's [`ShardExecutor`]: every shard goes to the job kind that owns its task (see
//! [`super::registry`]); a task no kind of this binary owns is refused.

use rendermesh_cache::BlobStore;
use rendermesh_mesh::exec::ShardCtl;
use rendermesh_mesh::{ShardError, ShardExecutor};
use rendermesh_protocol::{ShardOutput, ShardSpec, WorkStats};

use super::kind::RunEnv;
use super::registry::kind;

/// Runs shards with the job kinds of this binary.
pub struct KindExecutor {
    env: RunEnv,
}

impl KindExecutor {
    pub fn new(blobs: BlobStore, threads: usize, models: crate::models::Models) -> Self {
        Self {
            env: RunEnv {
                blobs,
                models,
                threads: threads.max(1),
            },
        }
    }
}

impl ShardExecutor for KindExecutor {
    fn run(
        &self,
        shard: &ShardSpec,
        ctl: &ShardCtl<'_>,
    ) -> Result<(ShardOutput, WorkStats), ShardError> {
        let name = shard.task.kind();
        let k = kind(name)
            .ok_or_else(|| ShardError::refused(format!("this node runs no {name} shards")))?;
        shard.validate().map_err(ShardError::refused)?;
        let _span =
            tracing::info_span!("shard", job = %shard.job, shard = shard.index, kind = name)
                .entered();
        k.run(&self.env, shard, ctl)
    }
}
