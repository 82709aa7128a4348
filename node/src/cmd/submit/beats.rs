//! `rendermesh submit beats FILE… [--json OUT] [--csv OUT]`: the beats kind from the command
//! line. Prints tempo, meter and beat count per file; writes one JSON and one CSV per input.

use rendermesh_protocol::{BeatParams, JobResult};

use super::{execute, input_path, per_input, write_atomic};
use crate::cli::BeatsArgs;
use crate::config::NodeConfig;
use crate::engine::concat::check_output;
use crate::jobs::beats::export::{to_csv, to_json};
use crate::jobs::beats::{Beats, Params};
use crate::jobs::kind::{JobKind, SubmitRequest};

pub(super) fn run(cfg: NodeConfig, a: BeatsArgs) -> anyhow::Result<i32> {
    let inputs = a
        .inputs
        .iter()
        .map(|p| input_path(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for out in [&a.csv, &a.json].into_iter().flatten() {
        check_output(out)?;
    }
    let beats = BeatParams {
        min_bpm: a.min_bpm,
        max_bpm: a.max_bpm,
    };
    beats.validate().map_err(anyhow::Error::msg)?;
    let params = Params {
        inputs: inputs.clone(),
        beats,
    };
    let req = SubmitRequest::new(Beats.name(), &params)?;
    let (status, result, _done) = execute(&cfg, req, &a.common)?;
    let JobResult::Beats { grids } = result else {
        anyhow::bail!("node answered a beats job with another kind of result");
    };
    let many = grids.len() > 1;
    for (input, grid) in inputs.iter().zip(&grids) {
        let name = input
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(p) = &a.json {
            write_atomic(&per_input(p, input, many), to_json(grid, &name).as_bytes())?;
        }
        if let Some(p) = &a.csv {
            write_atomic(&per_input(p, input, many), to_csv(grid).as_bytes())?;
        }
        match &grid.note {
            Some(note) if grid.beats.is_empty() => {
                println!("{}: {note} ({:.1} s)", input.display(), grid.duration_s)
            }
            _ => println!(
                "{}: {:.1} BPM, {}/4, {} beats, {} bars, {} sections ({:.1} s)",
                input.display(),
                grid.tempo_bpm,
                grid.meter,
                grid.beats.len(),
                grid.downbeats.len(),
                grid.sections.len(),
                grid.duration_s
            ),
        }
    }
    if status.from_cache {
        println!(
            "(answered from cache in {:.2}s)",
            status.elapsed_ms as f64 / 1000.0
        );
    }
    Ok(0)
}
