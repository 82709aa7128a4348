//! The checksum kind: the smallest job of two stages, and the example of how to write a kind.
//!
//! Stage 1 ("digest") gives every input file a shard: blake3 of the file, then `rounds` more
//! rounds of blake3 over the digest (work of a known result that takes as long as one asks,
//! which is what the mesh's own tests and a first check of a new box need). Stage 2
//! ("combine") is one shard: blake3 over the stage-1 digests in submit order. A re-submitted
//! job reuses the digests an interrupted run left in the cache.
//!
//! The result is the same on every box for the same files and rounds, so a user can check a
//! mesh end to end: `rendermesh submit checksum FILE… --rounds N`.

pub mod driver;

use std::io::Read;
use std::path::PathBuf;
use std::time::Instant;

use rendermesh_mesh::exec::ShardCtl;
use rendermesh_mesh::ShardError;
use rendermesh_protocol::{Capabilities, ContentId, ShardOutput, ShardSpec, ShardTask, WorkStats};
use serde::{Deserialize, Serialize};

use self::driver::ChecksumDriver;
use super::kind::{params, JobContext, JobKind, RunEnv, Speeds, Started};

/// Rounds per unit of work and of progress (the `checksum` class's speed is in these units
/// per second).
pub const ROUNDS_PER_UNIT: u64 = 1 << 20;

/// Units of progress of a shard of `rounds` rounds (at least one).
pub fn units(rounds: u64) -> u64 {
    rounds.div_ceil(ROUNDS_PER_UNIT).max(1)
}
/// The class of both stages' shards.
pub const CLASS: &str = "checksum";

/// What `rendermesh submit checksum` sends.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub inputs: Vec<PathBuf>,
    pub rounds: u64,
}

/// `rounds` rounds of blake3 over `start`, reporting progress (in [`units`]) through `ctl`
/// and stopping when it is cancelled.
pub fn stretch(start: ContentId, rounds: u64, ctl: &ShardCtl<'_>) -> Result<ContentId, ShardError> {
    let mut h = *start.as_bytes();
    let mut done = 0u64;
    while done < rounds {
        let step = (rounds - done).min(ROUNDS_PER_UNIT / 4);
        for _ in 0..step {
            h = *blake3::hash(&h).as_bytes();
        }
        done += step;
        ctl.progress(done / ROUNDS_PER_UNIT);
        if ctl.is_cancelled() {
            return Err(ShardError::cancelled());
        }
    }
    Ok(ContentId::from_bytes(h))
}

/// The combined digest of `parts`, in order.
pub fn combine(parts: &[ContentId]) -> ContentId {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(p.as_bytes());
    }
    ContentId::from_bytes(*h.finalize().as_bytes())
}

pub struct Checksum;

impl JobKind for Checksum {
    fn name(&self) -> &'static str {
        "checksum"
    }

    fn start(&self, ctx: &JobContext, value: serde_json::Value) -> Result<Started, String> {
        let p: Params = params(self.name(), value)?;
        if p.inputs.is_empty() {
            return Err("a checksum job needs at least one input".into());
        }
        if p.rounds > 1 << 40 {
            return Err(format!("--rounds {} is more than 2^40", p.rounds));
        }
        let inputs = p.inputs.iter().map(|p| p.display().to_string()).collect();
        Ok(Started {
            inputs,
            driver: Box::new(ChecksumDriver::new(ctx.cache.clone(), p.inputs, p.rounds)),
        })
    }

    fn run(
        &self,
        env: &RunEnv,
        shard: &ShardSpec,
        ctl: &ShardCtl<'_>,
    ) -> Result<(ShardOutput, WorkStats), ShardError> {
        let started = Instant::now();
        let digest = match &shard.task {
            ShardTask::Checksum { rounds } => {
                let path = env.input(shard, 0)?;
                let (id, bytes) = hash_file(&path)?;
                if Some(&id) != shard.inputs.first() {
                    return Err(ShardError::retryable(format!(
                        "input {} does not match its content id",
                        path.display()
                    )));
                }
                let d = stretch(id, *rounds, ctl)?;
                (d, bytes)
            }
            ShardTask::CombineDigests { parts } => (combine(parts), 0),
            _ => return Err(ShardError::refused("not a checksum task")),
        };
        let output = ShardOutput::inline(&digest.0)
            .map_err(|e| ShardError::engine(format!("cannot encode a digest: {e}")))?;
        let stats = WorkStats {
            hashed_bytes: digest.1,
            wall_ms: started.elapsed().as_millis() as u64,
            ..Default::default()
        };
        Ok((output, stats))
    }

    /// A short measurement (a quarter of a unit of rounds) gives the class's speed.
    fn speeds(&self, _caps: &Capabilities, out: &mut Speeds) {
        let t = Instant::now();
        let _ = stretch(
            ContentId::of(b"calibration"),
            ROUNDS_PER_UNIT / 4,
            &ShardCtl::detached(),
        );
        let units_per_s = 0.25 / t.elapsed().as_secs_f64().max(1e-6);
        out.speeds.insert(CLASS.to_string(), units_per_s as f32);
    }
}

/// blake3 and size of a file, read in blocks.
fn hash_file(path: &std::path::Path) -> Result<(ContentId, u64), ShardError> {
    let fail = |e: std::io::Error| ShardError::retryable(format!("{}: {e}", path.display()));
    let mut f = std::fs::File::open(path).map_err(fail)?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(fail)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    Ok((ContentId::from_bytes(*h.finalize().as_bytes()), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stretch_and_combine_are_the_plain_blake3_chain() {
        let start = ContentId::of(b"file");
        let mut h = *start.as_bytes();
        for _ in 0..1000 {
            h = *blake3::hash(&h).as_bytes();
        }
        let got = stretch(start, 1000, &ShardCtl::detached()).unwrap();
        assert_eq!(got, ContentId::from_bytes(h));
        assert_eq!(stretch(start, 0, &ShardCtl::detached()).unwrap(), start);
        let mut cat = Vec::new();
        cat.extend_from_slice(start.as_bytes());
        cat.extend_from_slice(got.as_bytes());
        assert_eq!(combine(&[start, got]), ContentId::of(&cat));
    }
}
