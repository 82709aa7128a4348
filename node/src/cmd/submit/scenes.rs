//! `rendermesh submit scenes IN…`: the scenes kind from the command line, and its exports.

use std::path::Path;

use rendermesh_protocol::{JobResult, SceneDetector, SceneList, SceneOptions, ScoreParams};

use super::{execute, input_path, per_input, write_atomic};
use crate::cli::{DetectorArg, ScenesArgs};
use crate::config::NodeConfig;
use crate::engine::concat::check_output;
use crate::jobs::kind::{JobKind, SubmitRequest};
use crate::jobs::scenes::export::{scenes_from_cuts, to_csv, to_edl, to_json, Fps, Gradual};
use crate::jobs::scenes::{Params, Scenes};

pub(super) fn run(cfg: NodeConfig, a: ScenesArgs) -> anyhow::Result<i32> {
    let inputs = a
        .inputs
        .iter()
        .map(|p| input_path(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for out in [&a.csv, &a.json, &a.edl].into_iter().flatten() {
        check_output(out)?;
    }
    let probability = |p: f32| {
        if p > 0.0 && p < 1.0 {
            Ok(p)
        } else {
            Err(anyhow::anyhow!(
                "--neural-threshold {p} is not a probability between 0 and 1"
            ))
        }
    };
    let detector = match a.detector {
        DetectorArg::Auto => SceneDetector::Auto {
            threshold: a.threshold,
            neural_threshold: probability(a.neural_threshold)?,
        },
        DetectorArg::Content => SceneDetector::Content {
            threshold: a.threshold,
        },
        DetectorArg::Adaptive => SceneDetector::Adaptive {
            adaptive_threshold: a.adaptive_threshold,
            min_content_val: a.min_content_val,
            window_width: a.window_width,
        },
        DetectorArg::Neural => SceneDetector::Neural {
            threshold: probability(a.neural_threshold)?,
        },
    };
    let options = SceneOptions {
        detector,
        min_scene_len: a.min_scene_len,
        scoring: ScoreParams {
            analysis_width: a.analysis_width,
            fast_decode: !a.full_decode,
        },
        ..SceneOptions::default()
    };
    let params = Params {
        inputs: inputs.clone(),
        options,
        chunk_seconds: a.common.chunk_seconds,
    };
    let req = SubmitRequest::new(Scenes.name(), &params)?;
    let (status, result, _done) = execute(&cfg, req, &a.common)?;
    let JobResult::Scenes { lists } = result else {
        anyhow::bail!("node answered a scenes job with another kind of result");
    };
    let many = lists.len() > 1;
    for (input, list) in inputs.iter().zip(&lists) {
        let title = input
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let fps = Fps {
            num: list.fps.num.max(0) as u32,
            den: list.fps.den.max(1) as u32,
        };
        let cuts: Vec<u32> = list.cuts.iter().map(|&c| c as u32).collect();
        let scenes = scenes_from_cuts(&cuts, list.frames as u32);
        let gradual: Vec<Gradual> = list
            .transitions
            .iter()
            .map(|t| Gradual {
                cut: t.cut as u32,
                kind: t.kind.name(),
                first: t.first as u32,
                end: t.end as u32,
            })
            .collect();
        for (path, text) in [
            (&a.csv, to_csv(&scenes, &gradual, fps)),
            (&a.json, to_json(&scenes, &gradual, fps, &title)),
            (&a.edl, to_edl(&scenes, &gradual, fps, &title)),
        ] {
            if let Some(p) = path {
                let dest = per_input(p, input, many);
                write_atomic(&dest, text.as_bytes())?;
            }
        }
        print_scenes(
            input,
            list,
            a.csv.is_none() && a.json.is_none() && a.edl.is_none(),
        );
    }
    if status.from_cache {
        println!(
            "(answered from cache in {:.2}s)",
            status.elapsed_ms as f64 / 1000.0
        );
    }
    Ok(0)
}

fn print_scenes(input: &Path, list: &SceneList, table: bool) {
    let fps = list.fps.as_f64().max(f64::MIN_POSITIVE);
    let gradual = match list.transitions.len() {
        0 => String::new(),
        n => format!(", {n} of the cuts gradual"),
    };
    println!(
        "{}: {} scenes, {} frames ({:.2}s at {:.3} fps){gradual}",
        input.display(),
        list.cuts.len() + 1,
        list.frames,
        list.frames as f64 / fps,
        fps
    );
    if table {
        let mut start = 0u64;
        for (i, end) in list.cuts.iter().copied().chain([list.frames]).enumerate() {
            let into = list
                .transitions
                .iter()
                .find(|t| t.cut == start && i > 0)
                .map(|t| format!("  ({} over frames {}..{})", t.kind.name(), t.first, t.end))
                .unwrap_or_default();
            println!(
                "  scene {:>3}: frames {:>6}..{:<6} {:>8.3}s .. {:>8.3}s{into}",
                i + 1,
                start,
                end,
                start as f64 / fps,
                end as f64 / fps
            );
            start = end;
        }
    }
}
