//! The transcode kind: a file cut at keyframes into chunks, each chunk encoded on a slot
//! somewhere in the mesh, the segments joined and the source audio muxed once.
//!
//! - [`driver`]: plans the encode stage (probe, cut, resume) and joins the segments.
//! - Here: the parameters, the shard runner (decode a chunk's range, encode it) and the
//!   speeds of the `encode/<encoder>@720p|1080p` classes from the calibrated encoders.

pub mod driver;

use std::path::PathBuf;

use rendermesh_mesh::exec::ShardCtl;
use rendermesh_mesh::ShardError;
use rendermesh_protocol::{
    Capabilities, EncodeOptions, ShardOutput, ShardSpec, ShardTask, WorkStats,
};
use serde::{Deserialize, Serialize};

use self::driver::TranscodeDriver;
use super::kind::{params, JobContext, JobKind, RunEnv, Speeds, Started};
use super::video::video_speeds;
use crate::engine::encode::encode_chunk;

/// The muxers an output may use (what `container_for` picks from an output's extension). A
/// request naming another (`hls`, `null`, …) is refused: those write stray files or nothing.
pub const CONTAINERS: [&str; 5] = ["mp4", "mov", "matroska", "webm", "nut"];

/// What `rendermesh submit transcode` sends.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub input: PathBuf,
    /// Muxer of the output (from the output file's extension).
    pub container: String,
    pub options: EncodeOptions,
    pub chunk_seconds: Option<f64>,
}

pub struct Transcode;

/// The mesh's other nodes and the encoders each verified by a test encode.
pub(crate) fn peer_encoders(ctx: &JobContext) -> Vec<(String, Vec<String>)> {
    ctx.peers
        .iter()
        .map(|p| {
            let verified = p.caps.encoders.iter().filter(|e| e.verified);
            (p.name.clone(), verified.map(|e| e.name.clone()).collect())
        })
        .collect()
}

impl JobKind for Transcode {
    fn name(&self) -> &'static str {
        "transcode"
    }

    fn start(&self, ctx: &JobContext, value: serde_json::Value) -> Result<Started, String> {
        let p: Params = params(self.name(), value)?;
        if !CONTAINERS.contains(&p.container.as_str()) {
            return Err(format!(
                "output container {:?} is not one rendermesh writes (use {})",
                p.container,
                CONTAINERS.join(", ")
            ));
        }
        let driver = TranscodeDriver::new(
            ctx.cache.clone(),
            p.input.clone(),
            p.options,
            p.container,
            ctx.chunk(p.chunk_seconds)?,
        )
        .with_peer_encoders(peer_encoders(ctx));
        Ok(Started {
            inputs: vec![p.input.display().to_string()],
            driver: Box::new(driver),
        })
    }

    fn run(
        &self,
        env: &RunEnv,
        shard: &ShardSpec,
        ctl: &ShardCtl<'_>,
    ) -> Result<(ShardOutput, WorkStats), ShardError> {
        let ShardTask::Encode { range, options } = &shard.task else {
            return Err(ShardError::refused("not a transcode task"));
        };
        let chunk = env.input(shard, 0)?;
        let (frames, id, bytes) = env.make_blob("segment.nut", |tmp| {
            encode_chunk(&chunk, range, options, tmp, env.threads, ctl)
        })?;
        let stats = WorkStats {
            decoded_frames: frames,
            encoded_frames: frames,
            ..Default::default()
        };
        Ok((ShardOutput::blob(id, bytes), stats))
    }

    /// `encode/<encoder>@720p|1080p` from each verified encoder's measured fps; an encoder
    /// that failed its test encode (or is not in this FFmpeg build) is a class this node lacks.
    fn speeds(&self, caps: &Capabilities, out: &mut Speeds) {
        for e in &caps.encoders {
            let family = format!("encode/{}", e.name);
            if e.verified {
                video_speeds(out, &family, e.fps_720p, e.fps_1080p);
            } else {
                let why = e.reason.as_deref().unwrap_or("no reason given");
                out.lacks.insert(
                    family,
                    format!("encoder {} failed its test encode here ({why})", e.name),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_known_containers_are_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = JobContext {
            cache: rendermesh_cache::Cache::open(&dir.path().join("cache")).unwrap(),
            name: "n".into(),
            chunk_seconds: 2.0,
            peers: Vec::new(),
            mesh: None,
            models: Vec::new(),
        };
        let request = |container: &str| {
            serde_json::to_value(Params {
                input: dir.path().join("in.mp4"),
                container: container.into(),
                options: EncodeOptions::default(),
                chunk_seconds: None,
            })
            .unwrap()
        };
        for bad in ["hls", "null", "image2", ""] {
            let e = Transcode.start(&ctx, request(bad)).err().unwrap();
            assert!(e.contains("is not one rendermesh writes"), "{e}");
        }
        for good in CONTAINERS {
            assert!(Transcode.start(&ctx, request(good)).is_ok(), "{good}");
        }
    }
}
