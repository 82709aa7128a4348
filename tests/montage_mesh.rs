//! The montage job on three real nodes: analysis and render shards spread over all three,
//! and a worker killed during the render stage costs a re-run, not the montage.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::mesh::{last_job, three};
use common::montage::{clips, song};
use common::{no_panic, rendermesh, stderr, submit_scenes, video_frames, wait_for, Daemon};

fn montage(data: &Path, media: &Path, seed: &str, out: &Path, plan: &Path) -> std::process::Output {
    let mut args: Vec<String> = vec![
        "submit".into(),
        "montage".into(),
        media.display().to_string(),
    ];
    args.extend(
        [
            "--music",
            media.join("song.wav").to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--length",
            "12",
            "--size",
            "1280x720",
            "--fps",
            "30",
            "--preset",
            "medium",
            "--seed",
            seed,
            "--chunk-seconds",
            "2",
            "--plan",
            plan.to_str().unwrap(),
            "-q",
        ]
        .map(String::from),
    );
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    rendermesh(data, &refs)
}

/// Peers that ran the shards of stage `stage` of `job`.
fn peers_in_stage(job: &serde_json::Value, stage: u64) -> std::collections::BTreeSet<String> {
    job["shards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["stage"].as_u64() == Some(stage))
        .filter_map(|s| s["peer"].as_str().map(str::to_string))
        .collect()
}

fn planned_cuts(plan: &Path) -> (u64, Vec<u64>) {
    let p: serde_json::Value = serde_json::from_slice(&std::fs::read(plan).unwrap()).unwrap();
    let cuts = p["segments"].as_array().unwrap()[1..]
        .iter()
        .map(|s| s["out_start"].as_u64().unwrap())
        .collect();
    (p["frames"].as_u64().unwrap(), cuts)
}

#[test]
fn a_montage_runs_on_three_nodes_and_survives_a_killed_worker() {
    let tmp = tempfile::tempdir().unwrap();
    let media = tmp.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    clips(&media);
    song(&media, 30.0);
    let mut nodes = three(tmp.path());
    let out = tmp.path().join("one.mp4");
    let plan = tmp.path().join("one.json");
    let o = montage(&nodes[0].data_dir, &media, "1", &out, &plan);
    assert!(o.status.success(), "{}\n{}", stderr(&o), nodes[0].log());
    let job = last_job(&nodes[0]);
    let all: std::collections::BTreeSet<String> = ["a", "b", "c"].map(String::from).into();
    assert_eq!(peers_in_stage(&job, 0), all, "analysis shards: {job}");
    assert_eq!(peers_in_stage(&job, 1), all, "render shards: {job}");
    let (frames, _) = planned_cuts(&plan);
    assert_eq!(video_frames(&out), frames);
    assert_eq!(frames, 360);

    // another seed: analysis comes from the cache, the render runs; kill b in it
    let out2 = tmp.path().join("two.mp4");
    let plan2 = tmp.path().join("two.json");
    let (data, media2, out_bg, plan_bg) = (
        nodes[0].data_dir.clone(),
        media.clone(),
        out2.clone(),
        plan2.clone(),
    );
    let submit = std::thread::spawn(move || montage(&data, &media2, "2", &out_bg, &plan_bg));
    let running_on_b = |n: &Daemon| {
        n.api_get("/v1/jobs")
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter(|j| j["stage_name"] == "render")
            .flat_map(|j| j["shards"].as_array().cloned().unwrap_or_default())
            .any(|s| s["peer"] == "b" && s["state"] == "Running")
    };
    wait_for(Duration::from_secs(120), || running_on_b(&nodes[0]))
        .expect("b never got a render shard");
    let _ = nodes[1].child.kill();
    let _ = nodes[1].child.wait();
    let o = submit.join().unwrap();
    assert!(o.status.success(), "{}\n{}", stderr(&o), nodes[0].log());
    let job = last_job(&nodes[0]);
    assert_eq!(job["stage_name"], "render", "{job}");
    let rerun = job["shards"].as_array().unwrap().iter().any(|s| {
        s["retries"].as_u64() > Some(0)
            || s["note"]
                .as_str()
                .is_some_and(|n| n.contains("run on b failed"))
    });
    assert!(rerun, "no shard was run again after b died: {job}");
    let (frames, cuts) = planned_cuts(&plan2);
    assert_eq!(video_frames(&out2), frames);
    let found = submit_scenes(
        &nodes[0].data_dir,
        &out2,
        "4",
        &tmp.path().join("cuts.json"),
    );
    for c in &cuts {
        assert!(
            found.iter().any(|f| f.abs_diff(*c) <= 1),
            "cut {c} not in {found:?}"
        );
    }
    nodes.remove(1);
    no_panic(&nodes);
}
