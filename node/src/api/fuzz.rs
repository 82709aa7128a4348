//! What a node reads from outside besides the mesh, fuzzed with the mesh's harness (issue 22):
//! its config file (TOML, then `validate`) and the control API's job requests (JSON, then the
//! kind's checks as `start` makes them). Inputs are mutated bytes of valid ones, and text edits
//! that keep the syntax: a value swapped for an edge value (`-1`, `1e308`, `nan`, a huge
//! number, an empty or very long string, an array, a table).
//!
//! The test runs 20 000 inputs per decoder; the benchmark (`bash bench/fuzz.sh`) runs
//! `FUZZ_INPUTS` (default 1 000 000) and prints the figures.

#[allow(dead_code)]
#[path = "../../../mesh/examples/fuzzing/harness.rs"]
mod harness;

use std::path::PathBuf;

use harness::{mutate, Outcome, Rng};
use rendermesh_protocol::{EncodeOptions, SceneOptions};

use crate::config::NodeConfig;
use crate::jobs::kind::{JobContext, SubmitRequest};
use crate::jobs::{batch, checksum, montage, registry, scenes, transcode};

/// Values a config or a request may hold where a number, string or list was.
const EDGE_VALUES: &[&str] = &[
    "-1",
    "0",
    "1e308",
    "-1e308",
    "nan",
    "NaN",
    "inf",
    "18446744073709551616",
    "9223372036854775807",
    "-9223372036854775808",
    "4294967296",
    "\"\"",
    "\"/\"",
    "\"..\"",
    "[]",
    "{}",
    "null",
    "true",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
];

/// One edited copy of a text input: a value (what follows a `=` or `:`) swapped for an edge
/// value or a long string, or else a byte mutation.
fn mutate_text(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let marks: Vec<usize> = seed
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'=' || b == b':')
        .map(|(i, _)| i + 1)
        .collect();
    if marks.is_empty() || rng.below(2) == 0 {
        return mutate(seed, rng);
    }
    let at = marks[rng.below(marks.len())];
    let end = seed[at..]
        .iter()
        .position(|&b| b == b',' || b == b'\n' || b == b'}')
        .map_or(seed.len(), |p| at + p);
    let value = match rng.below(8) {
        0 => format!("\"{}\"", "x".repeat(1 + rng.below(100_000))),
        _ => EDGE_VALUES[rng.below(EDGE_VALUES.len())].to_string(),
    };
    let mut out = seed[..at].to_vec();
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(&seed[end..]);
    out
}

fn config_seeds() -> Vec<Vec<u8>> {
    let watch = "name = \"n\"\nslots = 2\nchunk_seconds = 4.0\npeers = \
                 [\"/ip4/10.0.0.2/tcp/7879\"]\n[[watch]]\ndir = \"/srv/in\"\nout = \
                 \"/srv/out\"\nmode = \"proxy\"\nheight = 540\nsettle_seconds = 3.0\n";
    vec![
        include_bytes!("../../../configs/single-box.toml").to_vec(),
        include_bytes!("../../../configs/home-lab.toml").to_vec(),
        include_bytes!("../../../configs/gpu-box.toml").to_vec(),
        watch.as_bytes().to_vec(),
    ]
}

fn request_seeds() -> Vec<Vec<u8>> {
    let p = |s: &str| PathBuf::from(format!("/media/{s}"));
    let req = |kind: &str, params: serde_json::Value| {
        serde_json::to_vec(&SubmitRequest {
            kind: kind.into(),
            params,
        })
        .expect("a request encodes")
    };
    let json = |v: serde_json::Result<serde_json::Value>| v.expect("params encode");
    let encode = EncodeOptions::default();
    vec![
        req(
            "transcode",
            json(serde_json::to_value(transcode::Params {
                input: p("a.mp4"),
                container: "mp4".into(),
                options: encode.clone(),
                chunk_seconds: Some(2.0),
            })),
        ),
        req(
            "scenes",
            json(serde_json::to_value(scenes::Params {
                inputs: vec![p("a.mp4"), p("b.mkv")],
                options: SceneOptions::default(),
                chunk_seconds: None,
            })),
        ),
        req(
            "checksum",
            json(serde_json::to_value(checksum::Params {
                inputs: vec![p("a.mp4")],
                rounds: 3,
            })),
        ),
        req("beats", serde_json::json!({ "inputs": [p("song.flac")] })),
        req(
            "montage",
            json(serde_json::to_value(montage::Params {
                clips: vec![p("a.mp4"), p("b.mp4")],
                music: p("song.flac"),
                container: "mp4".into(),
                length_s: Some(30.0),
                size: Some((1280, 720)),
                fps: None,
                pace: "auto".into(),
                seed: 7,
                start_s: 0.0,
                allow_reuse: false,
                from_plan: None,
                options: encode.clone(),
                chunk_seconds: None,
            })),
        ),
        req(
            "batch",
            json(serde_json::to_value(batch::Params {
                inputs: vec![p("a.mp4"), p("b.mp4")],
                work: batch::Work {
                    options: encode,
                    container: "mov".into(),
                    pcm_audio: true,
                    keep: true,
                },
                chunk_seconds: Some(4.0),
            })),
        ),
    ]
}

/// What `start` needs, on a store in `dir` and no mesh.
fn scratch_context(dir: &std::path::Path) -> JobContext {
    JobContext {
        cache: rendermesh_cache::Cache::open(&dir.join("cache")).expect("a cache"),
        name: "fuzz".into(),
        chunk_seconds: 2.0,
        peers: Vec::new(),
        mesh: None,
        models: Vec::new(),
    }
}

/// The node's decoders, `n` inputs each.
pub fn run_all(n: u64, seed: u64) -> Vec<Outcome> {
    let mut rng = Rng::new(seed);
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let dir = tempfile::tempdir().expect("a temp dir");
    let ctx = scratch_context(dir.path());
    let configs = config_seeds();
    let requests = request_seeds();
    let mut text_rng = Rng::new(seed ^ 0x7e47);
    let out = vec![
        harness::run_inputs(
            "node config (TOML)",
            &configs,
            n,
            |i| mutate_text(&configs[i % configs.len()], &mut rng),
            |b| {
                let Ok(text) = std::str::from_utf8(b) else {
                    return true;
                };
                toml::from_str::<NodeConfig>(text).map_or(true, |c| c.validate().is_err())
            },
        ),
        harness::run_inputs(
            "job request (control API)",
            &requests,
            n,
            |i| mutate_text(&requests[i % requests.len()], &mut text_rng),
            |b| match serde_json::from_slice::<SubmitRequest>(b) {
                Ok(req) => registry::start(&ctx, req).is_err(),
                Err(_) => true,
            },
        ),
    ];
    std::panic::set_hook(hook);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_and_job_requests_refuse_garbage_without_panicking() {
        // every seed is valid: the mutations start from inputs that get all the way through
        let dir = tempfile::tempdir().unwrap();
        let ctx = scratch_context(dir.path());
        for s in config_seeds() {
            let c: NodeConfig = toml::from_str(std::str::from_utf8(&s).unwrap()).unwrap();
            c.validate().unwrap();
        }
        for s in request_seeds() {
            let req: SubmitRequest = serde_json::from_slice(&s).unwrap();
            let kind = req.kind.clone();
            if let Err(e) = registry::start(&ctx, req) {
                panic!("the {kind} seed is refused: {e}");
            }
        }
        let n = std::env::var("FUZZ_INPUTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20_000u64);
        let outcomes = run_all(n, 0x5eed_0022);
        assert_eq!(outcomes.len(), 2);
        for o in &outcomes {
            println!("{}", o.row());
            o.assert_sound(n);
        }
    }
}
