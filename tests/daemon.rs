//! `rendermesh node` as a daemon: the CLI finds it, jobs run there, `status` shows the shard
//! table, the control API wants its token, SIGTERM stops it cleanly.

use crate::common;

use std::io::{Read, Write};

use common::*;

fn http_status(addr: &str, request: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.lines().next().unwrap_or_default().to_string()
}

#[test]
fn node_runs_jobs_for_the_cli_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Daemon::start(&tmp.path().join("data"));

    // transcode through the node
    let src = small_clip(tmp.path(), "clip.mp4", 4, &[]);
    let out = tmp.path().join("out.mkv");
    let rep = tmp.path().join("t.json");
    let o = rendermesh(
        &node.data_dir,
        &[
            "submit",
            "transcode",
            src.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--chunk-seconds",
            "1",
            "--report",
            rep.to_str().unwrap(),
            "-q",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !stderr(&o).contains("mesh of one"),
        "did not use the node: {}",
        stderr(&o)
    );
    assert_eq!(report(&rep)["mode"], "node");
    assert_eq!(video_frames(&out), 100);
    // the node dropped its copy of the output once the CLI had it
    let blobs = walk_files(&node.data_dir.join("cache/blobs"));
    assert!(blobs.is_empty(), "node kept blobs: {blobs:?}");

    // scenes through the node, same answer as the known truth
    let clip = scenes_clip(tmp.path());
    let json = tmp.path().join("s.json");
    let cuts = submit_scenes(&node.data_dir, &clip, "2", &json);
    assert_eq!(cuts.len(), SCENE_CUTS.len());

    // status: both jobs, done, with their shard tables and who ran each shard
    let o = rendermesh(&node.data_dir, &["status", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let jobs: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(jobs.len(), 2);
    let scenes = jobs.iter().find(|j| j["kind"] == "scenes").unwrap();
    assert_eq!(scenes["state"], "Done");
    let shards = scenes["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 8);
    assert!(shards
        .iter()
        .all(|s| s["state"] == "Done" && s["peer"].is_string()));
    let id = scenes["id"].as_str().unwrap();
    let o = rendermesh(&node.data_dir, &["status", id]);
    assert!(
        stdout(&o).contains("shard") && stdout(&o).contains("Done"),
        "{}",
        stdout(&o)
    );

    // the control API: health is open, jobs need the token
    let health = http_status(&node.addr, "GET /v1/health HTTP/1.0\r\n\r\n");
    assert!(health.contains("200"), "{health}");
    let denied = http_status(&node.addr, "GET /v1/jobs HTTP/1.0\r\n\r\n");
    assert!(denied.contains("401"), "{denied}");
    let wrong = http_status(
        &node.addr,
        "GET /v1/jobs HTTP/1.0\r\nAuthorization: Bearer 00\r\n\r\n",
    );
    assert!(wrong.contains("401"), "{wrong}");
    // a job request without the token is refused before its body is read
    for body in ["{}", "not json at all"] {
        let post = http_status(
            &node.addr,
            &format!(
                "POST /v1/jobs HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        );
        assert!(post.contains("401"), "{post}");
    }
    let mode = std::fs::metadata(node.data_dir.join("control.token")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600,
        "the token is the node user's alone"
    );

    // SIGTERM: clean exit, control file removed
    let st = node
        .terminate(15)
        .expect("node did not stop within 15 s of SIGTERM");
    assert!(st.success(), "exit status {st:?}");
    assert!(!node.data_dir.join("control.json").exists());
    no_panic(&[&node]);
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk_files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn under_systemd_the_node_reports_ready_pings_the_watchdog_and_says_stopping() {
    use std::os::unix::net::UnixDatagram;
    let tmp = tempfile::tempdir().unwrap();
    let sock_path = tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut node = Daemon::start_with_env(
        &tmp.path().join("data"),
        "listen = \"/ip4/127.0.0.1/tcp/0\"\n",
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !(seen.contains(&"READY=1".to_string())
        && seen.iter().filter(|s| *s == "WATCHDOG=1").count() >= 2)
    {
        let n = sock
            .recv(&mut buf)
            .expect("no notification from the node within 20 s");
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert_eq!(seen[0], "READY=1", "READY must come first: {seen:?}");
    assert!(node.terminate(15).expect("stops on SIGTERM").success());
    let mut stopping = false;
    while let Ok(n) = sock.recv(&mut buf) {
        if &buf[..n] == b"STOPPING=1" {
            stopping = true;
            break;
        }
    }
    assert!(stopping, "no STOPPING=1 after SIGTERM");
}

#[test]
fn rendermesh_drain_stops_the_node_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Daemon::start(&tmp.path().join("data"));
    let o = rendermesh(&node.data_dir, &["drain"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("draining"), "{}", stdout(&o));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let st = loop {
        if let Ok(Some(st)) = node.child.try_wait() {
            break st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node still running after drain"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(st.success(), "{st:?}");
    assert!(node.log().contains("drained"), "{}", node.log());
    // with no node left, drain says so
    let o = rendermesh(&node.data_dir, &["drain"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no node is running"), "{}", stderr(&o));
}

#[test]
fn sigterm_does_not_wait_for_a_long_calibration() {
    let tmp = tempfile::tempdir().unwrap();
    // a fresh data dir calibrates its encoders on the blocking pool; make that take long
    let mut node = Daemon::start_with_env(
        &tmp.path().join("data"),
        "listen = \"/ip4/127.0.0.1/tcp/0\"\n",
        &[("RENDERMESH_CALIBRATION_FRAMES", "400")],
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    let t = std::time::Instant::now();
    let st = node
        .terminate(10)
        .expect("node did not stop within 10 s of SIGTERM while calibrating");
    assert!(st.success(), "{st:?}");
    eprintln!("stopped {} ms after SIGTERM", t.elapsed().as_millis());
}

#[test]
fn two_identical_transcodes_at_once_both_finish() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Daemon::start_with(
        &tmp.path().join("data"),
        "mdns = false\nlisten = \"/ip4/127.0.0.1/tcp/0\"\nslots = 2\n",
    );
    let src = clip_720p_open_gop(tmp.path(), 6);
    let runs: Vec<_> = ["one.mp4", "two.mp4"]
        .into_iter()
        .map(|name| {
            let (data, src, out) = (node.data_dir.clone(), src.clone(), tmp.path().join(name));
            std::thread::spawn(move || {
                let o = rendermesh(&data, &transcode_args(&src, &out, &[]));
                (o, out)
            })
        })
        .collect();
    for run in runs {
        let (o, out) = run.join().unwrap();
        assert!(o.status.success(), "{}\n{}", stderr(&o), node.log());
        assert_eq!(video_frames(&out), video_frames(&src));
    }
    no_panic(&[node]);
}

/// The blobs of the store, not its temp dir.
fn blob_files(data: &std::path::Path) -> Vec<std::path::PathBuf> {
    let blobs = data.join("cache/blobs");
    walk_files(&blobs)
        .into_iter()
        .filter(|p| !p.starts_with(blobs.join("tmp")))
        .collect()
}

#[test]
fn ctrl_c_on_a_submit_cancels_its_job_on_the_node_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Daemon::start_with(
        &tmp.path().join("data"),
        "mdns = false\nlisten = \"/ip4/127.0.0.1/tcp/0\"\nslots = 1\n",
    );
    // veryslow on 1 slot: a minute of work, so the interrupt lands mid-job
    let src = clip_720p_open_gop(tmp.path(), 6);
    let out = tmp.path().join("out").join("cut.mp4");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let mut cli = std::process::Command::new(bin())
        .arg("--data-dir")
        .arg(&node.data_dir)
        .args(transcode_args(&src, &out, &["--preset", "veryslow"]))
        .env("RENDERMESH_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let running = wait_for(std::time::Duration::from_secs(60), || {
        common::mesh::last_job_opt(&node).is_some_and(|j| j["state"] == "Running")
    });
    assert!(running.is_some(), "the job never ran: {}", node.log());
    let job = common::mesh::last_job(&node);
    let id = job["id"].as_str().unwrap().to_string();

    let pid = cli.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let mut code = None;
    wait_for(std::time::Duration::from_secs(20), || {
        code = cli.try_wait().unwrap();
        code.is_some()
    });
    let Some(code) = code else {
        let _ = cli.kill();
        panic!("the CLI did not exit within 20 s of Ctrl-C");
    };
    let mut err = String::new();
    cli.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(code.code(), Some(130), "{err}");
    assert!(err.contains(&format!("cancelling job {id}")), "{err}");

    // the job on the node ended cancelled, not done: nobody would have fetched it
    let ended = wait_for(std::time::Duration::from_secs(15), || {
        common::mesh::last_job(&node)["state"] == "Cancelled"
    });
    assert!(
        ended.is_some(),
        "job state: {}",
        common::mesh::last_job(&node)["state"]
    );
    // nothing written for the user, and the job's chunks are gone from the store
    let left: Vec<_> = std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let clean = wait_for(std::time::Duration::from_secs(15), || {
        blob_files(&node.data_dir).is_empty()
    });
    assert!(
        clean.is_some(),
        "the cancelled job's blobs stayed: {:?}",
        blob_files(&node.data_dir)
    );
    no_panic(&[node]);
}

#[test]
fn a_start_sweeps_what_killed_runs_left_in_the_temp_dir_and_gc_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let temp = data.join("cache/blobs/tmp");
    std::fs::create_dir_all(&temp).unwrap();
    // a killed writer's empty temp file (a pid no process has), a fetch given up on hours
    // ago, and one from a minute ago that a retry may still resume
    let dead = temp.join("4294967295-3-put");
    std::fs::write(&dead, b"").unwrap();
    let old = temp.join(format!("fetch1-{}.part", "ab".repeat(32)));
    let recent = temp.join(format!("fetch1-{}.part", "cd".repeat(32)));
    for (p, age) in [(&old, 3 * 3600), (&recent, 60)] {
        let mut f = std::fs::File::create(p).unwrap();
        f.write_all(b"piece").unwrap();
        f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(age))
            .unwrap();
    }
    let mut node = Daemon::start(&data);
    assert!(!dead.exists(), "the dead writer's temp file stayed");
    assert!(!old.exists(), "the stale partial fetch stayed");
    assert!(recent.exists(), "a recent partial fetch was removed");
    node.terminate(15).expect("node did not stop");

    // with no node running, gc takes every partial fetch too
    let o = rendermesh(&data, &["cache", "gc"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!recent.exists(), "gc left a partial fetch: {}", stdout(&o));
    assert!(stdout(&o).contains("1 temp files"), "{}", stdout(&o));
}

/// A one-slot node in `dir` and a transcode of a 6 s 720p clip at `preset` submitted to it
/// from another thread, returned once the job runs: the node, the source, the output and the
/// submit's thread.
fn one_slot_node_running_a_transcode(
    dir: &std::path::Path,
    preset: &'static str,
) -> (
    Daemon,
    std::path::PathBuf,
    std::path::PathBuf,
    std::thread::JoinHandle<std::process::Output>,
) {
    let node = Daemon::start_with(
        &dir.join("data"),
        "mdns = false\nlisten = \"/ip4/127.0.0.1/tcp/0\"\nslots = 1\n",
    );
    let src = clip_720p_open_gop(dir, 6);
    let out = dir.join("out.mp4");
    let job = {
        let (data, src, out) = (node.data_dir.clone(), src.clone(), out.clone());
        std::thread::spawn(move || {
            rendermesh(&data, &transcode_args(&src, &out, &["--preset", preset]))
        })
    };
    let running = wait_for(std::time::Duration::from_secs(60), || {
        common::mesh::last_job_opt(&node).is_some_and(|j| j["state"] == "Running")
    });
    assert!(running.is_some(), "the job never ran: {}", node.log());
    (node, src, out, job)
}

#[test]
fn a_draining_node_finishes_the_job_it_coordinates_and_refuses_new_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut node, src, out, job) = one_slot_node_running_a_transcode(tmp.path(), "slow");
    let o = rendermesh(&node.data_dir, &["drain"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let waiting = wait_for(std::time::Duration::from_secs(10), || {
        node.log().contains("letting the jobs of this node end")
    });
    assert!(waiting.is_some(), "{}", node.log());

    // a new job is refused with a line that says why, not run in-process on a locked store
    let other = tmp.path().join("other.mp4");
    let o = rendermesh(
        &node.data_dir,
        &[
            "submit",
            "transcode",
            src.to_str().unwrap(),
            "-o",
            other.to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is draining"), "{}", stderr(&o));
    assert!(!other.exists());

    // the running job ends, and its CLI gets the whole output
    let o = job.join().unwrap();
    assert!(o.status.success(), "{}\n{}", stderr(&o), node.log());
    assert_eq!(video_frames(&out), video_frames(&src));
    // then the node stops by itself
    let mut st = None;
    wait_for(std::time::Duration::from_secs(40), || {
        st = node.child.try_wait().unwrap();
        st.is_some()
    });
    let st = st.unwrap_or_else(|| panic!("node still running after its job: {}", node.log()));
    assert!(st.success(), "{st:?}");
    let log = node.log();
    assert!(log.contains("the jobs of this node ended"), "{log}");
    assert!(log.contains("jobs_stopped=0"), "{log}");
}

#[test]
fn a_second_sigterm_stops_a_draining_node_without_waiting_for_its_job() {
    let tmp = tempfile::tempdir().unwrap();
    // veryslow on 1 slot: a minute of work the drain would wait for
    let (mut node, _src, out, job) = one_slot_node_running_a_transcode(tmp.path(), "veryslow");
    common::mesh::signal(&node, "-TERM");
    let waiting = wait_for(std::time::Duration::from_secs(10), || {
        node.log().contains("letting the jobs of this node end")
    });
    assert!(waiting.is_some(), "{}", node.log());
    assert!(node.alive(), "the first SIGTERM did not wait for the job");
    let asked = std::time::Instant::now();
    let st = node
        .terminate(30)
        .unwrap_or_else(|| panic!("the second SIGTERM did not stop the node: {}", node.log()));
    assert!(st.success(), "{st:?}");
    let log = node.log();
    assert!(log.contains("stop asked again"), "{log}");
    assert!(log.contains("jobs_stopped=1"), "{log}");
    eprintln!(
        "stopped {} ms after the second SIGTERM",
        asked.elapsed().as_millis()
    );
    // the CLI following the job is told, and no output file appears
    let o = job.join().unwrap();
    assert!(!o.status.success(), "{}", stderr(&o));
    assert!(!out.exists());
}
