//! A job kind the mesh crate knows nothing of: the two-stage `checksum` kind (digest every
//! file on the mesh, then combine the digests) on three real nodes, through the auction, a
//! lease lost by a frozen worker, and a coordinator killed mid-stage and resumed. Every digest
//! is checked against the same chain of blake3 computed here.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::mesh::*;
use common::*;

/// `n` files of 256 KiB of deterministic bytes, each different (and different for each `seed`).
fn files(dir: &Path, seed: u64, n: usize) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ (seed << 32) ^ (i as u64 + 1);
            let bytes: Vec<u8> = (0..256 * 1024)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let p = dir.join(format!("f{i}.bin"));
            std::fs::write(&p, bytes).unwrap();
            p
        })
        .collect()
}

/// The known truth: blake3 of each file, `rounds` more rounds over the digest, and blake3
/// over the digests in order.
fn expected(files: &[PathBuf], rounds: u64) -> (Vec<String>, String) {
    let mut combined = blake3::Hasher::new();
    let parts = files
        .iter()
        .map(|f| {
            let mut h = *blake3::hash(&std::fs::read(f).unwrap()).as_bytes();
            for _ in 0..rounds {
                h = *blake3::hash(&h).as_bytes();
            }
            combined.update(&h);
            blake3::Hash::from(h).to_hex().to_string()
        })
        .collect();
    (parts, combined.finalize().to_hex().to_string())
}

/// Rounds that take this machine about `secs` (measured here, so shards last long enough to
/// freeze a worker in the middle of one whatever the machine's speed).
fn rounds_for(secs: f64) -> u64 {
    let t = Instant::now();
    let mut h = [0u8; 32];
    for _ in 0..200_000 {
        h = *blake3::hash(&h).as_bytes();
    }
    std::hint::black_box(h);
    let per_s = 200_000.0 / t.elapsed().as_secs_f64().max(1e-6);
    ((per_s * secs) as u64).clamp(1_000_000, 400_000_000)
}

fn submit(data: &Path, files: &[PathBuf], rounds: u64, json: &Path) -> std::process::Output {
    let mut args: Vec<String> = vec!["submit".into(), "checksum".into()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    args.extend([
        "--rounds".into(),
        rounds.to_string(),
        "--json".into(),
        json.display().to_string(),
        "-q".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    rendermesh(data, &args)
}

fn submit_in_background(
    data: &Path,
    files: &[PathBuf],
    rounds: u64,
    json: &Path,
) -> std::thread::JoinHandle<std::process::Output> {
    let (data, files, json) = (data.to_path_buf(), files.to_vec(), json.to_path_buf());
    std::thread::spawn(move || submit(&data, &files, rounds, &json))
}

/// The digests a finished submit wrote.
fn written(json: &Path) -> (Vec<String>, String) {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    let parts = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["digest"].as_str().unwrap().to_string())
        .collect();
    (parts, v["combined"].as_str().unwrap().to_string())
}

fn count(rows: &[serde_json::Value], state: &str) -> usize {
    rows.iter().filter(|s| s["state"] == state).count()
}

#[test]
fn a_two_stage_kind_runs_on_three_nodes_through_lease_loss_and_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = three_with(tmp.path(), "shard_lease_seconds = 5\n");
    let rounds = rounds_for(3.0);

    // 1. nine files over three one-slot nodes; b is frozen in the middle of a shard
    let inputs = files(tmp.path(), 1, 9);
    let json = tmp.path().join("one.json");
    let job = submit_in_background(&nodes[0].data_dir, &inputs, rounds, &json);
    let on_b = || {
        rows(&nodes[0])
            .iter()
            .any(|s| s["peer"] == "b" && s["state"] == "Running")
    };
    wait_for(Duration::from_secs(60), on_b).unwrap_or_else(|| {
        panic!(
            "b never got a shard: {:?}\n{}",
            last_job_opt(&nodes[0]),
            nodes[0].log()
        )
    });
    signal(&nodes[1], "-STOP");
    let lost = wait_for(Duration::from_secs(30), || {
        rows(&nodes[0]).iter().any(|s| {
            s["note"]
                .as_str()
                .is_some_and(|n| n.contains("lease lost on b"))
        })
    });
    signal(&nodes[1], "-CONT");
    assert!(
        lost.is_some(),
        "no lease lost: {:?}",
        last_job_opt(&nodes[0])
    );
    let o = job.join().unwrap();
    assert!(o.status.success(), "{}\n{}", stderr(&o), nodes[0].log());
    assert_eq!(written(&json), expected(&inputs, rounds), "wrong digests");
    let job = last_job(&nodes[0]);
    let all = job["shards"].as_array().unwrap();
    // stage 1: one shard per file, on more than one node, the lost one re-run and not on b;
    // stage 2: one combine shard
    let stage = |n: u64| -> Vec<&serde_json::Value> {
        all.iter()
            .filter(|s| s["stage"].as_u64() == Some(n))
            .collect()
    };
    assert_eq!(stage(0).len(), 9, "{job}");
    assert_eq!(stage(1).len(), 1, "{job}");
    assert!(all.iter().all(|s| s["state"] == "Done"), "{job}");
    assert!(peers_of(&job).len() >= 2, "{job}");
    let retried: Vec<_> = stage(0)
        .into_iter()
        .filter(|s| s["retries"].as_u64() > Some(0))
        .collect();
    assert!(!retried.is_empty(), "{job}");
    assert!(retried.iter().all(|s| s["peer"] != "b"), "{job}");
    assert_eq!(
        (job["stage"].as_u64(), job["stage_name"].as_str()),
        (Some(1), Some("combine"))
    );

    // 2. the coordinator killed in the middle of stage 1, restarted and asked again: only
    // the digests that had not arrived are computed
    let dir = tmp.path().join("two");
    std::fs::create_dir_all(&dir).unwrap();
    let inputs = files(&dir, 2, 8);
    let json = tmp.path().join("two.json");
    let job = submit_in_background(&nodes[0].data_dir, &inputs, rounds, &json);
    // the rows of this job (not of the one before)
    let these = |n: &Daemon| -> Vec<serde_json::Value> {
        last_job_opt(n)
            .filter(|j| j["inputs"][0].as_str().is_some_and(|i| i.contains("two")))
            .and_then(|j| j["shards"].as_array().cloned())
            .unwrap_or_default()
    };
    wait_for(Duration::from_secs(90), || {
        count(&these(&nodes[0]), "Done") >= 3
    })
    .expect("no digests arrived");
    let before = count(&these(&nodes[0]), "Done");
    let at_kill = last_job_opt(&nodes[0]);
    let _ = nodes[0].child.kill();
    let _ = nodes[0].child.wait();
    let o = job.join().unwrap();
    assert!(
        !o.status.success(),
        "the submit outlived its node ({before} done at the kill: {at_kill:?}): {}\n{}",
        stdout(&o),
        stderr(&o)
    );
    assert!(
        before < 8,
        "stage 1 ended before the kill ({before} done): no resume to test"
    );

    let key = tmp.path().join("swarm.key");
    let a = start(tmp.path(), "a", &key, &[]);
    let o = submit(&a.data_dir, &inputs, rounds, &json);
    assert!(o.status.success(), "{}\n{}", stderr(&o), a.log());
    assert_eq!(
        written(&json),
        expected(&inputs, rounds),
        "wrong digests after resume"
    );
    let job = last_job(&a);
    let all = job["shards"].as_array().unwrap().clone();
    let reused = count(&all, "Cached");
    assert!(
        reused >= before,
        "{before} digests had arrived before the kill, {reused} reused: {job}"
    );
    assert_eq!(reused + count(&all, "Done"), 9, "{job}");
    nodes[0] = a;
    no_panic(&nodes);
}
