//! Job history across restarts: a node stopped with SIGTERM and started again on the same
//! data dir still lists the jobs it ran (state, kind, shard table, error); a job the node
//! was killed in the middle of (SIGKILL) shows as failed, with why.

use crate::common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// One slot: the long job of the last part stays running long enough to be killed.
const CONFIG: &str = "mdns = false\nlisten = \"/ip4/127.0.0.1/tcp/0\"\nslots = 1\n";

const STOPPED: &str = "the node stopped before the job ended";

fn jobs(node: &Daemon) -> Vec<Value> {
    node.api_get("/v1/jobs")
        .and_then(|v| v.as_array().cloned())
        .expect("the node lists its jobs")
}

fn job<'a>(list: &'a [Value], id: &str) -> &'a Value {
    list.iter()
        .find(|j| j["id"] == id)
        .unwrap_or_else(|| panic!("job {id} is not listed: {list:#?}"))
}

/// The first line of the answer to GET `path` (e.g. `HTTP/1.1 410 Gone`).
fn http_status(node: &Daemon, path: &str) -> String {
    let token = std::fs::read_to_string(node.data_dir.join("control.token")).unwrap();
    let mut s = std::net::TcpStream::connect(&node.addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nAuthorization: Bearer {}\r\n\r\n",
        token.trim()
    )
    .unwrap();
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.lines().next().unwrap_or_default().to_string()
}

/// The done and the failed job as they must read before and after a restart.
fn check_done_and_failed(list: &[Value], done: &str, failed: &str) {
    let d = job(list, done);
    assert_eq!(d["state"], "Done", "{d:#}");
    assert_eq!(d["kind"], "transcode", "{d:#}");
    assert_eq!(d["error"], Value::Null, "{d:#}");
    let shards = d["shards"].as_array().expect("a shard table");
    // 4 s at 25 fps in 1 s chunks: four shards of 25 frames, every one done
    assert_eq!(shards.len(), 4, "{d:#}");
    assert!(shards.iter().all(|s| s["state"] == "Done"), "{d:#}");
    let frames: u64 = shards.iter().map(|s| s["frames"].as_u64().unwrap()).sum();
    assert_eq!(frames, 100, "{d:#}");
    assert_eq!(d["frames_total"], 100, "{d:#}");
    let f = job(list, failed);
    assert_eq!(f["state"], "Failed", "{f:#}");
    assert_eq!(f["kind"], "transcode", "{f:#}");
    let error = f["error"].as_str().expect("an error line");
    assert!(
        error.contains("notes.mp4") && error.contains("not a media file"),
        "{error}"
    );
}

#[test]
fn jobs_are_listed_after_a_restart_a_killed_job_shows_as_failed_and_a_failed_one_runs_again() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut node = Daemon::start_with(&data, CONFIG);

    let clip = small_clip(tmp.path(), "clip.mp4", 4, &[]);
    let o = transcode_1s(&data, &clip, &tmp.path().join("out.mkv"));
    assert!(o.status.success(), "{}", stderr(&o));
    let text = tmp.path().join("notes.mp4");
    std::fs::write(&text, "not frames\n".repeat(100)).unwrap();
    let o = transcode_1s(&data, &text, &tmp.path().join("notes.mkv"));
    assert!(!o.status.success(), "a text file transcoded");

    let before = jobs(&node);
    assert_eq!(before.len(), 2, "{before:#?}");
    let id_of = |state: &str| {
        before
            .iter()
            .find(|j| j["state"] == state)
            .and_then(|j| j["id"].as_str())
            .unwrap_or_else(|| panic!("no {state} job: {before:#?}"))
            .to_string()
    };
    let (done, failed) = (id_of("Done"), id_of("Failed"));
    check_done_and_failed(&before, &done, &failed);

    // SIGTERM, then a new life on the same data dir
    let st = node.terminate(20).expect("the node stops on SIGTERM");
    assert!(st.success(), "exit status {st:?}");
    let mut node = Daemon::start_with(&data, CONFIG);
    let after = jobs(&node);
    assert_eq!(after.len(), 2, "{after:#?}");
    check_done_and_failed(&after, &done, &failed);
    // what the node had to say of each job is what it says now
    for id in [&done, &failed] {
        let (mut a, mut b) = (job(&before, id).clone(), job(&after, id).clone());
        // a job's elapsed time is final once it ended
        a["elapsed_ms"] = Value::Null;
        b["elapsed_ms"] = Value::Null;
        assert_eq!(a, b, "job {id} changed across the restart");
    }
    // one job by its id; its result is gone with the run that made it
    let one = node.api_get(&format!("/v1/jobs/{done}")).expect("the job");
    assert_eq!(one["state"], "Done");
    let result = http_status(&node, &format!("/v1/jobs/{done}/result"));
    assert!(result.contains(" 410"), "{result}");
    let none = http_status(&node, "/v1/jobs/0123456789abcdef");
    assert!(none.contains(" 404"), "{none}");
    // `status` lists them too
    let o = rendermesh(&data, &["status", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let listed: Vec<Value> = serde_json::from_str(&stdout(&o)).unwrap();
    check_done_and_failed(&listed, &done, &failed);
    let o = rendermesh(&data, &["status"]);
    assert!(
        stdout(&o).contains(&done) && stdout(&o).contains(&failed),
        "{}",
        stdout(&o)
    );

    // a long job, and the node killed while it runs
    let long = clip_720p_open_gop(tmp.path(), 30);
    let mut cli = std::process::Command::new(bin())
        .arg("--data-dir")
        .arg(&data)
        .args(["submit", "transcode", long.to_str().unwrap(), "-o"])
        .arg(tmp.path().join("long.mkv"))
        .args(["--chunk-seconds", "2", "-q"])
        .env("RENDERMESH_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run rendermesh");
    let mut running = None;
    wait_for(Duration::from_secs(30), || {
        running = jobs(&node)
            .into_iter()
            .find(|j| j["state"] == "Running" && j["id"] != done.as_str());
        running.is_some()
    })
    .expect("the long job runs");
    let running = running.unwrap();
    let killed = running["id"].as_str().unwrap().to_string();
    // the store writes its log to disk every half second
    std::thread::sleep(Duration::from_millis(1500));
    let still = node
        .api_get(&format!("/v1/jobs/{killed}"))
        .expect("the long job");
    assert_eq!(still["state"], "Running", "the long job ended too soon");
    mesh::signal(&node, "-KILL");
    let _ = node.child.wait();
    let _ = cli.kill();
    let _ = cli.wait();

    let node = Daemon::start_with(&data, CONFIG);
    let after = jobs(&node);
    assert_eq!(after.len(), 3, "{after:#?}");
    check_done_and_failed(&after, &done, &failed);
    let k = job(&after, &killed);
    assert_eq!(k["state"], "Failed", "{k:#}");
    assert_eq!(k["kind"], "transcode", "{k:#}");
    assert_eq!(k["error"], STOPPED, "{k:#}");
    // newest first: the killed job, then the failed one, then the done one
    let order: Vec<&str> = after.iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(order, vec![killed.as_str(), failed.as_str(), done.as_str()]);

    // the failed job of an earlier life runs again, as it was submitted: its input is now a
    // clip, so this time it ends done
    std::fs::copy(&clip, &text).unwrap();
    let token = std::fs::read_to_string(data.join("control.token")).unwrap();
    let bearer = format!("Bearer {}", token.trim());
    let path = format!("/v1/jobs/{failed}/rerun");
    let unauth = common::http::request(&node.addr, "POST", &path, &[], "");
    assert_eq!(unauth.status, 401, "{}", unauth.body);
    let a = common::http::request(&node.addr, "POST", &path, &[("Authorization", &bearer)], "");
    assert_eq!(a.status, 200, "{}", a.body);
    let again = a.json()["ok"]
        .as_str()
        .expect("the new job's id")
        .to_string();
    assert_ne!(again, failed);
    let mut state = Value::Null;
    wait_for(Duration::from_secs(60), || {
        state = node
            .api_get(&format!("/v1/jobs/{again}"))
            .unwrap_or_default()["state"]
            .clone();
        state == "Done" || state == "Failed"
    })
    .expect("the job run again ends");
    assert_eq!(state, "Done", "{}", node.log());
    let rerun = node.api_get(&format!("/v1/jobs/{again}")).unwrap();
    assert_eq!(rerun["inputs"], job(&after, &failed)["inputs"]);
    assert_eq!(rerun["frames_total"], job(&after, &done)["frames_total"]);
    no_panic(&[&node]);
}
