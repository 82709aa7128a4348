//! `rendermesh submit montage CLIP… --music SONG -o OUT`: the montage kind from the command
//! line. Writes the montage, and on request its plan and timelines (OTIO, EDL, FCPXML);
//! prints the plan's summary and who ran the shards of each stage.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rendermesh_protocol::{EncodeOptions, JobResult, JobStatus, MontagePlan, VideoCodec};

use super::{deliver, execute, input_path, write_atomic};
use crate::cli::MontageArgs;
use crate::config::NodeConfig;
use crate::engine::concat::{check_output, container_for};
use crate::jobs::kind::{JobKind, SubmitRequest};
use crate::jobs::montage::plan::summary;
use crate::jobs::montage::timeline::{edl, fcpxml, otio};
use crate::jobs::montage::{Montage, Params};

/// The clips: files as given, directories replaced by their video files (sorted); a clip
/// that cannot be read stops the montage.
fn expand(clips: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    super::batch::expand(clips)
        .into_iter()
        .map(|(given, found)| found.map_err(|why| anyhow::anyhow!("{}: {why}", given.display())))
        .collect()
}

fn read_plan(path: &Path) -> anyhow::Result<MontagePlan> {
    let text = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot read the plan: {e}", path.display()))?;
    let plan: MontagePlan = serde_json::from_slice(&text)
        .map_err(|e| anyhow::anyhow!("{}: not a montage plan: {e}", path.display()))?;
    plan.validate()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(plan)
}

/// Who ran the shards of each stage: "analysis: 9 shards (a 4, b 3, c 2)".
fn who_ran(status: &JobStatus) -> Vec<String> {
    let mut stages: BTreeMap<u32, BTreeMap<String, usize>> = BTreeMap::new();
    for r in &status.shards {
        let peer = r.peer.clone().unwrap_or_else(|| "cache".into());
        *stages.entry(r.stage).or_default().entry(peer).or_default() += 1;
    }
    stages
        .into_iter()
        .map(|(stage, peers)| {
            let n: usize = peers.values().sum();
            let list: Vec<String> = peers.iter().map(|(p, k)| format!("{p} {k}")).collect();
            let name = if stage == 0 && status.stage > 0 {
                "analysis"
            } else {
                "render"
            };
            format!("{name}: {n} shards ({})", list.join(", "))
        })
        .collect()
}

pub(super) fn run(cfg: NodeConfig, a: MontageArgs) -> anyhow::Result<i32> {
    let codec: VideoCodec = a
        .codec
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--codec: {e}"))?;
    let from_plan = a.from_plan.as_deref().map(read_plan).transpose()?;
    let clips = match &from_plan {
        Some(p) => p.sources.iter().map(|s| s.path.clone()).collect(),
        None => expand(&a.clips)?,
    };
    if clips.is_empty() {
        anyhow::bail!("no clips: the paths given hold no video files");
    }
    let music = match (&from_plan, &a.music) {
        (Some(p), _) => p.music.path.clone(),
        (None, Some(m)) => input_path(m)?,
        (None, None) => anyhow::bail!("--music SONG is needed"),
    };
    check_output(&a.output)?;
    for out in [&a.otio, &a.edl, &a.fcpxml, &a.plan].into_iter().flatten() {
        check_output(out)?;
    }
    if let Ok(out) = std::fs::canonicalize(&a.output) {
        if clips.contains(&out) || out == music {
            anyhow::bail!(
                "{}: is one of the inputs; write the montage to another path",
                a.output.display()
            );
        }
    }
    let container = container_for(&a.output)?;
    let params = Params {
        clips,
        music,
        container,
        length_s: a.length,
        size: a.size,
        fps: a.fps,
        pace: a.pace.clone(),
        seed: a.seed,
        start_s: a.start,
        allow_reuse: a.allow_reuse,
        from_plan,
        options: EncodeOptions {
            codec,
            crf: a.crf,
            preset: a.preset.clone(),
            encoder: None,
            height: None,
        },
        chunk_seconds: a.common.chunk_seconds,
    };
    let req = SubmitRequest::new(Montage.name(), &params)?;
    let (status, result, done) = execute(&cfg, req, &a.common)?;
    let JobResult::Montage {
        output,
        bytes,
        frames,
        plan,
    } = result
    else {
        anyhow::bail!("node answered a montage with another kind of result");
    };
    deliver(&done, &output, bytes, &a.output)?;
    let title = a
        .output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "montage".into());
    if let Some(p) = &a.plan {
        write_atomic(p, serde_json::to_vec_pretty(&*plan)?.as_slice())?;
    }
    if let Some(p) = &a.otio {
        write_atomic(p, otio(&plan, &title).as_bytes())?;
    }
    if let Some(p) = &a.edl {
        write_atomic(p, edl(&plan, &title).as_bytes())?;
    }
    if let Some(p) = &a.fcpxml {
        write_atomic(p, fcpxml(&plan, &title).as_bytes())?;
    }
    for line in who_ran(&status) {
        println!("{line}");
    }
    println!("plan: {}", summary(&plan));
    println!(
        "wrote {} ({} frames, {:.1} MB) in {:.1}s",
        a.output.display(),
        frames,
        bytes as f64 / 1e6,
        status.elapsed_ms as f64 / 1000.0
    );
    Ok(0)
}
