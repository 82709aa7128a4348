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
        let done = k.run(&self.env, shard, ctl);
        give_back_freed_memory();
        done
    }
}

/// Hand the memory a shard freed (decoder and encoder buffers, hundreds of MB for a 1080p
/// encode) back to the system: glibc keeps freed blocks in its per-thread arenas, and a node
/// that runs shards on many threads for weeks would otherwise sit on the largest each ever held.
fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: malloc_trim only releases free memory of the allocator's arenas.
        unsafe {
            malloc_trim(0);
        }
    }
}
