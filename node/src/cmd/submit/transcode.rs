//! `rendermesh submit transcode IN -o OUT`: the transcode kind from the command line; with
//! several inputs or an output directory, a batch (see [`super::batch`]).

use rendermesh_protocol::{EncodeOptions, JobResult, VideoCodec};

use super::{deliver, execute, input_path};
use crate::cli::TranscodeArgs;
use crate::config::NodeConfig;
use crate::engine::concat::{check_output, container_for};
use crate::jobs::batch::work::transcode_work;
use crate::jobs::calibrate::{codec_of_encoder, HARDWARE_ENCODERS};
use crate::jobs::kind::{JobKind, SubmitRequest};
use crate::jobs::transcode::{Params, Transcode};

/// A batch: one output per input into the directory `-o`, the container from the name
/// template's extension.
fn batch(cfg: &NodeConfig, a: TranscodeArgs, codec: VideoCodec) -> anyhow::Result<i32> {
    let work = transcode_work(codec, a.crf, a.preset.clone(), a.encoder.clone(), &a.name)
        .map_err(|e| anyhow::anyhow!("--name: {e}"))?;
    super::batch::run(
        cfg,
        &a.inputs,
        &a.output,
        &a.name,
        a.overwrite,
        work,
        &a.common,
    )
}

pub(super) fn run(cfg: NodeConfig, a: TranscodeArgs) -> anyhow::Result<i32> {
    let codec: VideoCodec = match &a.encoder {
        Some(name) => codec_of_encoder(name).ok_or_else(|| {
            let known: Vec<&str> = HARDWARE_ENCODERS.iter().map(|(n, _)| *n).collect();
            anyhow::anyhow!(
                "--encoder: unknown encoder {name:?}; known hardware encoders: {}",
                known.join(", ")
            )
        })?,
        None => a
            .codec
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--codec: {e}"))?,
    };
    let many = a.inputs.len() > 1 || a.inputs[0].is_dir();
    if many && !super::batch::is_dir_arg(&a.output) && !a.output.is_dir() {
        anyhow::bail!(
            "{}: several inputs make one output each: give -o a directory (ending in /)",
            a.output.display()
        );
    }
    if many || super::batch::is_dir_arg(&a.output) {
        return batch(&cfg, a, codec);
    }
    let input = input_path(&a.inputs[0])?;
    check_output(&a.output)?;
    // the output replaces its file only at the end: that must never be the source
    if std::fs::canonicalize(&a.output).is_ok_and(|out| out == input) {
        anyhow::bail!(
            "{}: is the input file; write the output to another path",
            a.output.display()
        );
    }
    let container = container_for(&a.output)?;
    let params = Params {
        input,
        container,
        options: EncodeOptions {
            codec,
            crf: a.crf,
            preset: a.preset.clone(),
            encoder: a.encoder.clone(),
            height: None,
        },
        chunk_seconds: a.common.chunk_seconds,
    };
    let req = SubmitRequest::new(Transcode.name(), &params)?;
    let (status, result, done) = execute(&cfg, req, &a.common)?;
    let JobResult::Transcode {
        output,
        bytes,
        frames,
    } = result
    else {
        anyhow::bail!("node answered a transcode with another kind of result");
    };
    deliver(&done, &output, bytes, &a.output)?;
    println!(
        "wrote {} ({} frames, {:.1} MB, {} shards) in {:.1}s",
        a.output.display(),
        frames,
        bytes as f64 / 1e6,
        status.shards.len(),
        status.elapsed_ms as f64 / 1000.0
    );
    Ok(0)
}
