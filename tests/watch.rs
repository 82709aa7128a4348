//! Watched folders: a node with a `[[watch]]` table takes a file only once it has stopped
//! growing, makes it once (a restart redoes nothing), again when its content changes, lists
//! what failed, and `rendermesh watch --once` does the same from the command line.

use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;

/// These tests wait on a folder's settle time: one at a time, so a loaded box does not
/// stretch their timings.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

const SETTLE: f64 = 2.0;
const INTERVAL: f64 = 0.3;

/// A node config with one watch of `dir` into `out`.
fn watch_config(dir: &Path, out: &Path) -> String {
    format!(
        "listen = \"/ip4/127.0.0.1/tcp/0\"\n\n[[watch]]\ndir = \"{}\"\nout = \"{}\"\nmode = \"transcode\"\npreset = \"ultrafast\"\nsettle_seconds = {SETTLE}\ninterval_seconds = {INTERVAL}\n",
        dir.display(),
        out.display()
    )
}

/// The node's only watch, as `GET /v1/watches` shows it.
fn the_watch(node: &Daemon) -> Option<serde_json::Value> {
    let v = node.api_get("/v1/watches")?;
    let rows = v.as_array()?;
    assert_eq!(rows.len(), 1, "{v}");
    Some(rows[0].clone())
}

fn counter(node: &Daemon, name: &str) -> Option<u64> {
    the_watch(node)?[name].as_u64()
}

fn count(log: &str, what: &str) -> usize {
    log.lines().filter(|l| l.contains(what)).count()
}

/// Put `content` at `dest` at once: written under a hidden name (which a watch ignores),
/// then renamed.
fn drop_in(dest: &Path, content: &[u8]) {
    let name = dest.file_name().unwrap().to_string_lossy().into_owned();
    let tmp = dest.with_file_name(format!(".{name}.part"));
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, dest).unwrap();
}

fn mtime(p: &Path) -> std::time::SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

fn folders(tmp: &Path) -> (PathBuf, PathBuf) {
    let (dir, out) = (tmp.join("in"), tmp.join("out"));
    std::fs::create_dir_all(&dir).unwrap();
    (dir, out)
}

#[test]
fn a_file_copied_in_slowly_is_taken_only_when_complete_and_made_once() {
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let src = small_clip(tmp.path(), "src.mp4", 3, &[]);
    let (dir, out) = folders(tmp.path());
    let node = Daemon::start_with(&tmp.path().join("data"), &watch_config(&dir, &out));
    wait_for(Duration::from_secs(10), || the_watch(&node).is_some()).expect("watch listed");

    // six pieces, each after a pause longer than the scan interval, shorter than settle
    let bytes = std::fs::read(&src).unwrap();
    let dest = dir.join("clip.mp4");
    let mut f = std::fs::File::create(&dest).unwrap();
    let piece = bytes.len().div_ceil(6);
    let pause = Duration::from_millis(700);
    for (n, part) in bytes.chunks(piece).enumerate() {
        if n > 0 {
            std::thread::sleep(pause);
        }
        f.write_all(part).unwrap();
        f.flush().unwrap();
        assert_eq!(
            count(&node.log(), "watch: batch submitted"),
            0,
            "taken while still growing (piece {n}): {}",
            node.log()
        );
    }
    drop(f);
    let done = Instant::now();
    let made = out.join("clip.mp4");
    wait_for(Duration::from_secs(40), || {
        counter(&node, "processed") == Some(1)
    })
    .unwrap_or_else(|| panic!("not made: {}", node.log()));
    assert!(
        done.elapsed() >= Duration::from_secs_f64(SETTLE - INTERVAL),
        "taken before it had settled"
    );
    assert_eq!(video_frames(&made), video_frames(&src));
    assert_eq!(video_frames(&made), 75);
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1, "one output");

    // a few more scans: made once, nothing failed
    std::thread::sleep(Duration::from_secs_f64(SETTLE + 4.0 * INTERVAL));
    let log = node.log();
    assert_eq!(count(&log, "watch: batch submitted"), 1, "{log}");
    assert_eq!(count(&log, "watch: file made"), 1, "{log}");
    let w = the_watch(&node).unwrap();
    assert_eq!(
        (w["processed"].as_u64(), w["failed"].as_u64()),
        (Some(1), Some(0)),
        "{w}"
    );
    no_panic(&[&node]);
}

#[test]
fn a_restart_redoes_nothing_and_new_content_is_made_again() {
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let first = small_clip(tmp.path(), "first.mp4", 2, &[]);
    let second = small_clip(tmp.path(), "second.mp4", 3, &[]);
    let (dir, out) = folders(tmp.path());
    let data = tmp.path().join("data");
    let config = watch_config(&dir, &out);
    let made = out.join("clip.mp4");

    let mut node = Daemon::start_with(&data, &config);
    drop_in(&dir.join("clip.mp4"), &std::fs::read(&first).unwrap());
    wait_for(Duration::from_secs(40), || {
        counter(&node, "processed") == Some(1)
    })
    .unwrap_or_else(|| panic!("not made: {}", node.log()));
    assert_eq!(video_frames(&made), 50);
    let before = mtime(&made);
    let st = node.terminate(20).expect("node stops on SIGTERM");
    assert!(st.success(), "{}", node.log());
    // the watch stopped with the node: no task left behind
    let log = node.log();
    let report = log
        .lines()
        .rfind(|l| l.contains("shutdown report"))
        .unwrap_or_default();
    assert!(report.contains("tasks_left=0"), "{log}");

    // the same folder, the same node store: the file is known
    let node = Daemon::start_with(&data, &config);
    wait_for(Duration::from_secs(10), || {
        counter(&node, "processed") == Some(1)
    })
    .unwrap_or_else(|| panic!("counters not restored: {:?}", the_watch(&node)));
    std::thread::sleep(Duration::from_secs_f64(SETTLE + 5.0 * INTERVAL));
    assert_eq!(mtime(&made), before, "the output was written again");
    assert_eq!(counter(&node, "processed"), Some(1));
    let log = node.log();
    assert_eq!(count(&log, "watch: batch submitted"), 1, "{log}");
    assert_eq!(count(&log, "watch started"), 2, "{log}");

    // the user replaces the file: new content under the same name is made again
    drop_in(&dir.join("clip.mp4"), &std::fs::read(&second).unwrap());
    wait_for(Duration::from_secs(40), || {
        counter(&node, "processed") == Some(2)
    })
    .unwrap_or_else(|| panic!("not made again: {}", node.log()));
    assert_eq!(video_frames(&made), 75);
    assert_eq!(count(&node.log(), "watch: batch submitted"), 2);
    no_panic(&[&node]);
}

#[test]
fn a_file_that_is_not_media_is_listed_as_an_error_and_not_retried() {
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (dir, out) = folders(tmp.path());
    let node = Daemon::start_with(&tmp.path().join("data"), &watch_config(&dir, &out));
    drop_in(
        &dir.join("junk.mp4"),
        &b"this is not a video at all\n".repeat(200),
    );
    wait_for(Duration::from_secs(30), || {
        counter(&node, "failed") == Some(1)
    })
    .unwrap_or_else(|| panic!("no failure listed: {}", node.log()));
    let w = the_watch(&node).unwrap();
    let errors = w["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{w}");
    assert_eq!(errors[0]["file"], "junk.mp4");
    assert!(!errors[0]["error"].as_str().unwrap().is_empty());

    let o = rendermesh(&node.data_dir, &["status"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("0 done, 1 failed"), "{text}");
    assert!(text.contains("error: junk.mp4:"), "{text}");
    let o = rendermesh(&node.data_dir, &["status", "--watches", "--json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(rows[0]["failed"], 1);
    assert_eq!(rows[0]["errors"][0]["file"], "junk.mp4");

    // later scans leave it alone: one batch, one failure
    std::thread::sleep(Duration::from_secs_f64(SETTLE + 5.0 * INTERVAL));
    let log = node.log();
    assert_eq!(count(&log, "watch: batch submitted"), 1, "{log}");
    assert_eq!(count(&log, "watch: file failed"), 1, "{log}");
    assert_eq!(counter(&node, "failed"), Some(1));
    assert!(!out.join("junk.mp4").exists());
    no_panic(&[&node]);
}

#[test]
fn watch_once_from_the_command_line_makes_what_is_there_through_the_node() {
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (dir, out) = folders(tmp.path());
    small_clip(&dir, "a.mp4", 2, &[]);
    std::fs::create_dir_all(dir.join("day2")).unwrap();
    small_clip(&dir.join("day2"), "b.mkv", 2, &[]);
    std::fs::write(dir.join("notes.txt"), b"not a video").unwrap();
    let node = Daemon::start(&tmp.path().join("data"));
    let args = [
        "watch",
        dir.to_str().unwrap(),
        "--proxy",
        "-o",
        out.to_str().unwrap(),
        "--height",
        "120",
        "--settle",
        "0.5",
        "--interval",
        "0.2",
        "--once",
    ];
    let started = Instant::now();
    let o = rendermesh(&node.data_dir, &args);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(
        !stderr(&o).contains("mesh of one"),
        "did not use the node: {}",
        stderr(&o)
    );
    let text = stdout(&o);
    assert_eq!(count(&text, "done"), 2, "{text}");
    assert!(text.contains("2 made, 0 skipped"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(60));
    let (a, b) = (out.join("a_proxy.mp4"), out.join("day2/b_proxy.mp4"));
    assert_eq!((video_frames(&a), video_frames(&b)), (50, 50));
    for p in [&a, &b] {
        let size = common::ffprobe(
            &[
                "-select_streams",
                "v:0",
                "-show_entries",
                "stream=width,height",
                "-of",
                "csv=p=0",
            ],
            p,
        );
        assert_eq!(size.trim(), "160,120", "{}", p.display());
    }
    assert_eq!(
        count(&node.log(), "batch planned"),
        1,
        "one batch for both files"
    );

    // again: the node's store knows both files; nothing is made or written
    let before = (mtime(&a), mtime(&b));
    let o = rendermesh(&node.data_dir, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("0 made, 0 skipped (output exists), 0 failed"),
        "{}",
        stdout(&o)
    );
    assert_eq!((mtime(&a), mtime(&b)), before);
    assert_eq!(count(&node.log(), "batch planned"), 1);
    no_panic(&[&node]);
}
