//! Shards across the mesh: three real `rendermesh node` processes on loopback (static peers,
//! mDNS off). A job submitted on node A runs shards on all three nodes and its output is the
//! same as on one box; a worker killed mid-shard costs a re-award, not the job; a frozen one
//! loses its lease; a slow one gets its shard copied to an idle node and its run cancelled;
//! a peer's progress shows in the coordinator's shard table.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::mesh::*;
use common::*;

/// These tests start three nodes each: one at a time on 2 cores.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn a_job_on_one_node_runs_on_all_three_and_matches_one_box() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let nodes = three(tmp.path());
    let a = &nodes[0];

    // transcode: 12 one-second chunks over three one-slot nodes
    let src = clip_720p_open_gop(tmp.path(), 12);
    let out = tmp.path().join("out.mp4");
    let o = transcode_1s(&a.data_dir, &src, &out);
    assert!(o.status.success(), "{}\n{}", stderr(&o), a.log());
    assert_eq!(video_frames(&out), video_frames(&src), "not frame-exact");
    assert_eq!(frame_pts(&out), frame_pts(&src), "timestamps differ");
    let psnr = min_psnr(&out, &src);
    assert!(
        psnr > 30.0,
        "lowest per-frame PSNR {psnr:.1} dB: a frame is not its source frame"
    );
    let job = last_job(a);
    assert_eq!(job["state"], "Done");
    let ran_on = peers_of(&job);
    assert_eq!(
        ran_on,
        ["a", "b", "c"].iter().map(|s| s.to_string()).collect(),
        "{job}"
    );
    // a busy peer fetches the input of the shard it is expected to take next
    assert!(
        nodes[1..].iter().any(|n| n
            .log()
            .contains("running a shard for a peer (input fetched ahead)")),
        "no input was fetched ahead:\n{}\n{}",
        nodes[1].log(),
        nodes[2].log()
    );

    // scenes: same cut list as the known truth (and as one box, see tests/scenes.rs)
    let clip = scenes_clip(tmp.path());
    let json = tmp.path().join("s.json");
    let cuts = submit_scenes(&a.data_dir, &clip, "2", &json);
    assert_eq!(cuts, SCENE_CUTS);
    let job = last_job(a);
    assert_eq!(peers_of(&job).len(), 3, "{job}");
    // the peers ran shards for a, but no job of their own
    for n in &nodes[1..] {
        assert_eq!(n.api_get("/v1/jobs").unwrap().as_array().unwrap().len(), 0);
        assert!(
            n.log().contains("running a shard for a peer"),
            "{}",
            n.log()
        );
    }
    no_panic(&nodes);
}

#[test]
fn a_worker_killed_mid_shard_costs_a_reaward_not_the_job() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = three(tmp.path());
    let src = clip_720p_open_gop(tmp.path(), 16);
    let out = tmp.path().join("out.mp4");
    let submit = transcode_1s_in_background(&nodes[0].data_dir, &src, &out);
    // kill b as soon as it runs a shard
    let running_on_b = |n: &Daemon| {
        n.api_get("/v1/jobs")
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .flat_map(|j| j["shards"].as_array().cloned().unwrap_or_default())
            .any(|s| s["peer"] == "b" && s["state"] == "Running")
    };
    wait_for(Duration::from_secs(60), || running_on_b(&nodes[0])).expect("b never got a shard");
    let _ = nodes[1].child.kill();
    let _ = nodes[1].child.wait();

    let o = submit.join().unwrap();
    assert!(o.status.success(), "{}\n{}", stderr(&o), nodes[0].log());
    assert_eq!(video_frames(&out), video_frames(&src), "not frame-exact");
    let job = last_job(&nodes[0]);
    let shards = job["shards"].as_array().unwrap();
    let retried: Vec<&serde_json::Value> = shards
        .iter()
        .filter(|s| s["retries"].as_u64() > Some(0))
        .collect();
    assert!(!retried.is_empty(), "no re-award in the shard table: {job}");
    // the re-awarded shard finished on a live node
    for s in &retried {
        assert_ne!(s["peer"], "b", "{job}");
        assert_eq!(s["state"], "Done");
    }
    assert!(
        nodes[0].log().contains("peer lost a shard"),
        "{}",
        nodes[0].log()
    );
    nodes.remove(1);
    no_panic(&nodes);
}

#[test]
fn a_peer_returning_a_wrong_segment_is_caught_and_the_shard_runs_elsewhere() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let key = keygen(tmp.path(), "swarm.key");
    let a = start(tmp.path(), "a", &key, &[]);
    let addr = a.mesh_addr();
    // b serves corrupted blobs: every segment it returns fails verification
    let b = start_env(
        tmp.path(),
        "b",
        &key,
        std::slice::from_ref(&addr),
        &[("RENDERMESH_FAULT", "corrupt-blobs")],
    );
    let c = start(tmp.path(), "c", &key, &[addr]);
    let nodes = vec![a, b, c];
    wait_for(Duration::from_secs(10), || {
        nodes.iter().all(|n| n.peer_ids().len() == 2)
    })
    .expect("three nodes meet");
    let src = clip_720p_open_gop(tmp.path(), 8);
    let out = tmp.path().join("out.mp4");
    let o = transcode_1s(&nodes[0].data_dir, &src, &out);
    assert!(o.status.success(), "{}\n{}", stderr(&o), nodes[0].log());
    assert_eq!(video_frames(&out), video_frames(&src), "not frame-exact");
    let psnr = min_psnr(&out, &src);
    assert!(psnr > 30.0, "lowest per-frame PSNR {psnr:.1} dB");
    let job = last_job(&nodes[0]);
    let shards = job["shards"].as_array().unwrap();
    // b's result was refused: its shard was run again (a retry, or a speculative copy that
    // was already running elsewhere), and nothing of b's was used
    assert!(
        shards.iter().any(|s| s["retries"].as_u64() > Some(0)
            || s["note"]
                .as_str()
                .is_some_and(|n| n.contains("run on b failed"))),
        "{job}"
    );
    assert!(shards.iter().all(|s| s["peer"] != "b"), "{job}");
    let log = nodes[0].log();
    assert!(log.contains("failed verification"), "{log}");
    assert!(log.contains("peer lost a shard"), "{log}");
    no_panic(&nodes);
}

#[test]
fn a_worker_sent_sigterm_finishes_its_shard_and_takes_no_new_one() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = three(tmp.path());
    let src = clip_720p_open_gop(tmp.path(), 16);
    let out = tmp.path().join("out.mp4");
    let submit = transcode_1s_in_background(&nodes[0].data_dir, &src, &out);
    let shards_on_b = |n: &Daemon, state: &str| -> Vec<u64> {
        last_job_opt(n)
            .map(|j| {
                j["shards"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .filter(|s| s["peer"] == "b" && (state.is_empty() || s["state"] == state))
                    .filter_map(|s| s["index"].as_u64())
                    .collect()
            })
            .unwrap_or_default()
    };
    wait_for(Duration::from_secs(60), || {
        !shards_on_b(&nodes[0], "Running").is_empty()
    })
    .expect("b never got a shard");
    let running = shards_on_b(&nodes[0], "Running");
    let b_id = nodes[1].peer_id();
    let termed = std::time::Instant::now();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &nodes[1].child.id().to_string()])
        .status();
    wait_for(Duration::from_secs(10), || {
        nodes[1].log().contains("node draining")
    })
    .expect("b did not start draining");
    // from here on b takes nothing new
    let before = shards_on_b(&nodes[0], "");

    let o = submit.join().unwrap();
    assert!(o.status.success(), "{}\n{}", stderr(&o), nodes[0].log());
    assert_eq!(video_frames(&out), video_frames(&src), "not frame-exact");
    let job = last_job(&nodes[0]);
    let rows = job["shards"].as_array().unwrap();
    for i in &running {
        let row = rows
            .iter()
            .find(|r| r["index"].as_u64() == Some(*i))
            .unwrap();
        assert_eq!(
            row["peer"],
            "b",
            "b's running shard was taken away: {job}\nA:{}\nB:{}",
            nodes[0].log(),
            nodes[1].log()
        );
        assert_eq!(row["state"], "Done");
        assert_eq!(row["retries"], 0, "{job}");
    }
    let after = shards_on_b(&nodes[0], "");
    assert!(
        after.iter().all(|i| before.contains(i)),
        "b took a shard after it began draining: before {before:?}, after {after:?}"
    );
    // b exits by itself, cleanly, within 30 s of the SIGTERM, and says it left no task behind
    let st = nodes[1]
        .terminate(30)
        .expect("b did not exit after draining");
    assert!(st.success(), "{st:?}");
    assert!(
        termed.elapsed() < Duration::from_secs(30),
        "{:?}",
        termed.elapsed()
    );
    let log = nodes[1].log();
    assert!(log.contains("drained"), "{log}");
    let report = log
        .lines()
        .find(|l| l.contains("shutdown report"))
        .unwrap_or_else(|| panic!("no shutdown report: {log}"));
    assert!(report.contains("tasks_left=0"), "{report}");
    // the others saw it go
    wait_for(Duration::from_secs(10), || {
        nodes[0]
            .log()
            .lines()
            .any(|l| l.contains("peer left") && l.contains(&b_id))
    })
    .unwrap_or_else(|| panic!("a never saw b leave: {}", nodes[0].log()));
    assert!(!nodes[0].peer_ids().contains(&b_id));
    no_panic(&nodes);
}

#[test]
fn a_coordinator_killed_mid_job_resumes_with_only_the_missing_shards() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = three(tmp.path());
    let key = tmp.path().join("swarm.key");
    let src = clip_720p_open_gop(tmp.path(), 16);
    let out = tmp.path().join("out.mp4");
    let submit = transcode_1s_in_background(&nodes[0].data_dir, &src, &out);
    let done = |n: &Daemon| -> usize {
        last_job_opt(n)
            .map(|j| {
                j["shards"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .filter(|s| s["state"] == "Done")
                    .count()
            })
            .unwrap_or(0)
    };
    wait_for(Duration::from_secs(60), || done(&nodes[0]) >= 5).expect("shards never finished");
    let finished_before = done(&nodes[0]);
    let _ = nodes[0].child.kill();
    let _ = nodes[0].child.wait();
    let o = submit.join().unwrap();
    assert!(!o.status.success(), "the submit outlived its node");

    // restart the coordinator on the same data dir and submit again
    let a = start(tmp.path(), "a", &key, &[]);
    let o = transcode_1s(&a.data_dir, &src, &out);
    assert!(o.status.success(), "{}\n{}", stderr(&o), a.log());
    assert_eq!(video_frames(&out), video_frames(&src), "not frame-exact");
    let psnr = min_psnr(&out, &src);
    assert!(psnr > 30.0, "lowest per-frame PSNR {psnr:.1} dB");
    let job = last_job(&a);
    let rows = job["shards"].as_array().unwrap();
    let reused = rows.iter().filter(|s| s["state"] == "Cached").count();
    let ran = rows.iter().filter(|s| s["state"] == "Done").count();
    assert_eq!(reused + ran, rows.len(), "{job}");
    assert!(
        reused >= finished_before,
        "{finished_before} segments had arrived before the kill, {reused} reused"
    );
    assert!(ran >= 1, "nothing was left to run? {job}");
    nodes[0] = a;
    no_panic(&nodes);
}

#[test]
fn a_peer_whose_memory_limit_is_too_small_never_receives_the_shards() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let key = keygen(tmp.path(), "swarm.key");
    let a = start(tmp.path(), "a", &key, &[]);
    let addr = a.mesh_addr();
    let b = start(tmp.path(), "b", &key, std::slice::from_ref(&addr));
    // c allows 80 MB per shard; a 720p shard needs about 152 MB
    let c = Daemon::start_with(
        &tmp.path().join("c"),
        &format!(
            "mdns = false\nname = \"c\"\nlisten = \"/ip4/127.0.0.1/tcp/0\"\npeers = [{addr:?}]\nkey_file = {:?}\nslots = 1\nshard_ram_limit_bytes = 80000000\n",
            key.display().to_string()
        ),
    );
    let nodes = vec![a, b, c];
    wait_for(Duration::from_secs(10), || {
        nodes.iter().all(|n| n.peer_ids().len() == 2)
    })
    .expect("three nodes meet");
    // a sees c's limit
    let peers = nodes[0].api_get("/v1/peers").unwrap();
    let c_row = peers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "c")
        .unwrap()
        .clone();
    assert_eq!(c_row["shard_ram_bytes"], 80_000_000u64, "{c_row}");

    let src = clip_720p_open_gop(tmp.path(), 8);
    let out = tmp.path().join("out.mp4");
    let o = transcode_1s(&nodes[0].data_dir, &src, &out);
    assert!(o.status.success(), "{}\n{}", stderr(&o), nodes[0].log());
    assert_eq!(video_frames(&out), video_frames(&src), "not frame-exact");
    let job = last_job(&nodes[0]);
    let ran_on = peers_of(&job);
    assert!(ran_on.contains("b"), "{job}");
    assert!(
        !ran_on.contains("c"),
        "c received a shard it cannot hold: {job}"
    );
    // c said so itself: it declined every shard in its answer to the call for bids
    let shards = job["shards"].as_array().map_or(0, |a| a.len());
    let declined = format!("c declined {shards} shard(s): needs about");
    assert!(
        job["notes"].as_array().is_some_and(|n| n
            .iter()
            .any(|t| t.as_str().is_some_and(|t| t.contains(&declined)))),
        "no decline from c in the job's notes: {job}"
    );
    assert!(
        !nodes[2].log().contains("running a shard for a peer"),
        "{}",
        nodes[2].log()
    );
    no_panic(&nodes);
}

#[test]
fn a_frozen_worker_loses_its_lease_and_its_late_result_is_not_used() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let key = keygen(tmp.path(), "swarm.key");
    // a keeps the default lease; b is a little slow, so it is surely mid-shard
    let a = start(tmp.path(), "a", &key, &[]);
    let addr = a.mesh_addr();
    let peers = std::slice::from_ref(&addr);
    let b = start_env(
        tmp.path(),
        "b",
        &key,
        peers,
        &[("RENDERMESH_FAULT", "slow-shards=100")],
    );
    let c = start(tmp.path(), "c", &key, peers);
    let nodes = vec![a, b, c];
    meet(&nodes);
    // twenty shards: a and c are still busy with the rest when b's lease runs out, so the
    // shard is re-awarded (not just copied, see the speculation test); with ten, a fast box
    // had a and c idle, and a copy of b's shard done, before the lease ran out
    let src = clip_720p_open_gop(tmp.path(), 40);
    let out = tmp.path().join("out.mp4");
    let submit = transcode_1s_in_background(&nodes[0].data_dir, &src, &out);
    let on_b = |state: &str| {
        rows(&nodes[0])
            .iter()
            .any(|s| s["peer"] == "b" && s["state"] == state)
    };
    wait_for(Duration::from_secs(60), || on_b("Running")).expect("b never got a shard");
    // frozen: its connection stays up, it sends nothing
    signal(&nodes[1], "-STOP");
    let frozen = std::time::Instant::now();
    let lost = wait_for(Duration::from_secs(30), || {
        rows(&nodes[0]).iter().any(|s| {
            s["retries"].as_u64() > Some(0)
                && s["note"]
                    .as_str()
                    .is_some_and(|n| n.contains("lease lost on b"))
        })
    });
    let waited = frozen.elapsed();
    signal(&nodes[1], "-CONT");
    assert!(
        lost.is_some(),
        "no lease lost: {:?}",
        last_job_opt(&nodes[0])
    );
    // the last heartbeat came at most 2 s before the freeze; a home lab expects a lost
    // shard to move within 10 s of it
    eprintln!("MEASURED: shard of the frozen worker put up again {waited:?} after the freeze");
    assert!(
        waited >= Duration::from_millis(5500),
        "the lease ran out {waited:?} after the freeze: too soon for an 8 s lease"
    );
    assert!(
        waited <= Duration::from_secs(10),
        "the frozen worker's shard moved only {waited:?} after the freeze"
    );

    let o = submit.join().unwrap();
    assert!(o.status.success(), "{}\n{}", stderr(&o), nodes[0].log());
    assert_eq!(video_frames(&out), video_frames(&src), "not frame-exact");
    assert_eq!(frame_pts(&out), frame_pts(&src), "timestamps differ");
    let psnr = min_psnr(&out, &src);
    assert!(psnr > 30.0, "lowest per-frame PSNR {psnr:.1} dB");
    let job = last_job(&nodes[0]);
    let shards = job["shards"].as_array().unwrap();
    let retried: Vec<&serde_json::Value> = shards
        .iter()
        .filter(|s| s["retries"].as_u64() > Some(0))
        .collect();
    assert!(!retried.is_empty(), "no re-award in the shard table: {job}");
    // nothing of b's was used: its late answer is dropped, and it takes no more of the job
    assert!(shards.iter().all(|s| s["peer"] != "b"), "{job}");
    for s in &retried {
        assert_eq!(s["state"], "Done", "{job}");
    }
    let log = nodes[0].log();
    assert!(log.contains("lease lost"), "{log}");
    // b, thawed, stops the shard: told so by the answer to its next heartbeat, or by the
    // coordinator's CancelShard if that reaches it first
    wait_for(Duration::from_secs(10), || {
        let log = nodes[1].log();
        log.contains("no longer wants this run") || log.contains("shard run cancelled")
    })
    .unwrap_or_else(|| panic!("b went on with a revoked shard: {}", nodes[1].log()));
    let mut nodes = nodes;
    assert!(nodes[1].alive(), "b died: {}", nodes[1].log());
    no_panic(&nodes);
}

#[test]
fn a_slow_shard_gets_a_copy_on_an_idle_node_and_the_slow_run_is_cancelled() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let key = keygen(tmp.path(), "swarm.key");
    let a = start(tmp.path(), "a", &key, &[]);
    let addr = a.mesh_addr();
    let peers = std::slice::from_ref(&addr);
    // b spends two seconds per frame: a 30-frame shard takes it 60 s at least, far above
    // the bound below (a loaded machine has run the whole job in 23 s)
    let b = start_env(
        tmp.path(),
        "b",
        &key,
        peers,
        &[("RENDERMESH_FAULT", "slow-shards=2000")],
    );
    let c = start(tmp.path(), "c", &key, peers);
    let nodes = vec![a, b, c];
    meet(&nodes);
    let src = clip_720p_open_gop(tmp.path(), 6);
    let out = tmp.path().join("out.mp4");
    let t = std::time::Instant::now();
    let o = transcode_1s(&nodes[0].data_dir, &src, &out);
    let took = t.elapsed();
    assert!(o.status.success(), "{}\n{}", stderr(&o), nodes[0].log());
    assert!(
        took < Duration::from_secs(45),
        "took {took:?}: the slow run was waited for\n{}",
        nodes[0].log()
    );
    assert_eq!(video_frames(&out), video_frames(&src), "not frame-exact");
    assert_eq!(frame_pts(&out), frame_pts(&src), "timestamps differ");
    let psnr = min_psnr(&out, &src);
    assert!(psnr > 30.0, "lowest per-frame PSNR {psnr:.1} dB");
    let job = last_job(&nodes[0]);
    let shards = job["shards"].as_array().unwrap();
    let copied: Vec<&serde_json::Value> = shards
        .iter()
        .filter(|s| s["copies"].as_u64() > Some(0))
        .collect();
    assert!(!copied.is_empty(), "no speculative copy: {job}");
    // b's shard: the copy on a or c won, b's run was cancelled
    let from_b = copied
        .iter()
        .find(|s| {
            s["note"]
                .as_str()
                .is_some_and(|n| n.contains("run on b cancelled"))
        })
        .unwrap_or_else(|| panic!("b's shard was not copied: {job}"));
    assert_eq!(from_b["state"], "Done", "{job}");
    assert_ne!(from_b["peer"], "b", "{job}");
    assert!(shards.iter().all(|s| s["peer"] != "b"), "{job}");
    // a cancelled copy is no failure: no retry, b not counted as lost
    assert_eq!(from_b["retries"], 0, "{job}");
    assert!(
        !nodes[0].log().contains("peer lost a shard"),
        "{}",
        nodes[0].log()
    );
    wait_for(Duration::from_secs(10), || {
        nodes[1].log().contains("shard run cancelled")
    })
    .unwrap_or_else(|| panic!("b's run did not end as cancelled: {}", nodes[1].log()));
    assert!(
        nodes[1].log().contains("the coordinator cancelled a shard"),
        "{}\n{}",
        nodes[1].log(),
        nodes[0].log()
    );
    no_panic(&nodes);
}

#[test]
fn a_peers_progress_shows_in_the_coordinators_shard_table() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let key = keygen(tmp.path(), "swarm.key");
    let a = start(tmp.path(), "a", &key, &[]);
    let addr = a.mesh_addr();
    // b takes 200 ms a frame: its 30-frame shard runs for 6 s, heartbeats come every 2 s
    let b = start_env(
        tmp.path(),
        "b",
        &key,
        std::slice::from_ref(&addr),
        &[("RENDERMESH_FAULT", "slow-shards=200")],
    );
    let nodes = vec![a, b];
    meet(&nodes);
    let src = clip_720p_open_gop(tmp.path(), 4);
    let out = tmp.path().join("out.mp4");
    let submit = transcode_1s_in_background(&nodes[0].data_dir, &src, &out);
    let mut seen = None;
    wait_for(Duration::from_secs(60), || {
        seen = rows(&nodes[0]).into_iter().find(|s| {
            s["peer"] == "b"
                && s["state"] == "Running"
                && s["frames_done"].as_u64() > Some(0)
                && s["frames_done"].as_u64() < s["frames"].as_u64()
        });
        seen.is_some()
    })
    .unwrap_or_else(|| {
        panic!(
            "no progress of b's shard shown: {:?}",
            last_job_opt(&nodes[0])
        )
    });
    let o = submit.join().unwrap();
    assert!(o.status.success(), "{}\n{}", stderr(&o), nodes[0].log());
    assert_eq!(video_frames(&out), video_frames(&src), "not frame-exact");
    let job = last_job(&nodes[0]);
    assert_eq!(job["state"], "Done", "{job}");
    // `status JOB` shows it too: frames as done/total while running, copies and notes
    let id = job["id"].as_str().unwrap();
    let o = rendermesh(&nodes[0].data_dir, &["status", id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("copies"), "{}", stdout(&o));
    no_panic(&nodes);
}
