//! The cache on disk through the real binary: `rendermesh cache stat|ls|get|verify|gc`, a
//! scenes job SIGKILLed at several points leaving a cache that verifies clean and still gives
//! the right answer, and the commands refusing while a node holds the data dir.

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::*;
use rendermesh_cache::BlobStore;

fn ok(o: &std::process::Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({:?}): {}{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

fn assert_known_cuts(found: &[u64]) {
    assert_eq!(found.len(), SCENE_CUTS.len(), "found {found:?}");
    for (f, t) in found.iter().zip(SCENE_CUTS) {
        assert!(f.abs_diff(t) <= 1, "cut {f} is not {t} (found {found:?})");
    }
}

fn scenes(data: &Path, src: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "submit",
        "scenes",
        src.to_str().unwrap(),
        "--local",
        "--chunk-seconds",
        "2",
        "-q",
    ];
    args.extend_from_slice(extra);
    rendermesh(data, &args)
}

#[test]
fn stat_ls_get_verify_gc_after_one_submit() {
    let tmp = tempfile::tempdir().unwrap();
    let src = scenes_clip(tmp.path());
    let data = tmp.path().join("data");

    // before anything was cached: empty, not an error
    let o = rendermesh(&data, &["cache", "verify"]);
    assert!(ok(&o, "verify of no cache").contains("0 checked"));

    let json = tmp.path().join("cuts.json");
    ok(
        &scenes(&data, &src, &["--json", json.to_str().unwrap()]),
        "scenes",
    );
    assert_known_cuts(&cuts_of_json(&json));

    // stat: entries by kind (a probe, 8 shards of scores, one scene list), blobs, quota
    let cfg = tmp.path().join("node.toml");
    std::fs::write(&cfg, "blob_quota_bytes = 5000000\n").unwrap();
    let o = rendermesh(
        &data,
        &["--config", cfg.to_str().unwrap(), "cache", "stat", "--json"],
    );
    let st: serde_json::Value = serde_json::from_str(&ok(&o, "stat")).unwrap();
    assert_eq!(st["entries"]["count"], 10, "{st}");
    assert_eq!(st["entries"]["by_kind"]["probe"], 1, "{st}");
    assert_eq!(st["entries"]["by_kind"]["scene-shard"], 8, "{st}");
    assert_eq!(st["entries"]["by_kind"]["scene-list"], 1, "{st}");
    assert_eq!(st["blob_quota_bytes"], 5_000_000, "{st}");
    let text = ok(&rendermesh(&data, &["cache", "stat"]), "stat");
    assert!(text.contains("scene-list 1"), "{text}");
    assert!(text.contains("quota    unbounded"), "{text}");

    // ls: one hex key per line
    let keys = ok(&rendermesh(&data, &["cache", "ls"]), "ls");
    let keys: Vec<&str> = keys.lines().collect();
    assert_eq!(keys.len(), 10, "{keys:?}");
    assert!(keys
        .iter()
        .all(|k| k.len() == 64 && k.chars().all(|c| c.is_ascii_hexdigit())));
    let list_keys = ok(
        &rendermesh(&data, &["cache", "ls", "--kind", "scene-list"]),
        "ls --kind",
    );
    let list_keys: Vec<&str> = list_keys.lines().collect();
    assert_eq!(list_keys.len(), 1, "{list_keys:?}");
    assert!(keys.contains(&list_keys[0]));

    // get: the scene list as JSON, with the cut list
    let o = rendermesh(&data, &["cache", "get", list_keys[0]]);
    let doc: serde_json::Value = serde_json::from_str(&ok(&o, "get")).unwrap();
    assert_eq!(doc["kind"], "scene-list");
    assert_eq!(doc["format"], 2);
    assert_eq!(doc["value"]["frames"], SCENE_FRAMES);
    let cuts: Vec<u64> = doc["value"]["cuts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .collect();
    assert_known_cuts(&cuts);
    // the other kinds decode too
    for k in &keys {
        let o = rendermesh(&data, &["cache", "get", k]);
        let doc: serde_json::Value = serde_json::from_str(&ok(&o, "get")).unwrap();
        assert!(doc["value"].is_object(), "{k}: {doc}");
    }
    let o = rendermesh(&data, &["cache", "get", &"0".repeat(64)]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no entry"), "{}", stderr(&o));
    let o = rendermesh(&data, &["cache", "get", "xyz"]);
    assert!(!o.status.success());

    // verify: all intact
    let text = ok(&rendermesh(&data, &["cache", "verify"]), "verify");
    assert!(text.contains("entries  10 checked, 0 bad"), "{text}");

    // blobs: the job removed its chunks; plant two, flip one, verify names it and exits 2
    let blobs = BlobStore::open(&data.join("cache/blobs")).unwrap();
    let good = blobs.put_bytes(&[7u8; 3000]).unwrap();
    let bad = blobs.put_bytes(&[9u8; 500]).unwrap();
    let mut bytes = std::fs::read(blobs.path(&bad)).unwrap();
    bytes[100] ^= 0x10;
    std::fs::write(blobs.path(&bad), &bytes).unwrap();
    let ls = ok(
        &rendermesh(&data, &["cache", "ls", "--blobs"]),
        "ls --blobs",
    );
    assert!(ls.contains(&format!("{good}  3000")), "{ls}");
    let o = rendermesh(&data, &["cache", "verify"]);
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains(&format!("removed blob {bad}")),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("blobs    2 checked"), "{}", stdout(&o));
    assert!(!blobs.contains(&bad) && blobs.contains(&good));

    // gc: frees the unpinned blob, says how many bytes
    let text = ok(&rendermesh(&data, &["cache", "gc"]), "gc");
    assert!(text.starts_with("freed 3000 bytes"), "{text}");
    assert!(!blobs.contains(&good));
    let text = ok(&rendermesh(&data, &["cache", "gc"]), "gc");
    assert!(text.starts_with("freed 0 bytes"), "{text}");

    // entries survive gc: a resubmit is answered from the cache
    let o = scenes(&data, &src, &[]);
    assert!(ok(&o, "resubmit").contains("answered from cache"));
}

/// When to SIGKILL a round's `submit scenes`.
#[derive(Clone, Copy, Debug)]
enum KillAt {
    /// This fraction of a whole run's time after the start.
    Time(f64),
    /// As soon as sled's log file has changed (size or mtime) this many times since the
    /// start. A run writes it at its open (a new store), for the probe entry (a new file), and
    /// at the job's end for the shard scores and the scene list (the flush).
    LogWrites(usize),
}

/// The size and mtime of sled's log (sled 0.34's layout; if it changes, the event kills
/// below fall back to their deadline and still kill).
fn sled_log(data: &Path) -> (u64, Option<std::time::SystemTime>) {
    std::fs::metadata(data.join("cache/db/db"))
        .map(|m| (m.len(), m.modified().ok()))
        .unwrap_or((0, None))
}

#[test]
fn scenes_killed_at_any_point_leave_a_cache_that_verifies_and_answers_right() {
    let tmp = tempfile::tempdir().unwrap();
    let src = scenes_clip(tmp.path());
    let data = tmp.path().join("data");
    // How long a whole run takes here (on a throwaway data dir, at the widest analysis width
    // of the rounds below), so the timed kills can be spread over a run.
    let started = Instant::now();
    ok(
        &scenes(
            &tmp.path().join("calibrate"),
            &src,
            &["--analysis-width", "320"],
        ),
        "calibration run",
    );
    let whole = started.elapsed();
    eprintln!("a whole run takes {:.2}s", whole.as_secs_f64());
    // Each round analyses at another width, so it has fresh work (its shard scores have new
    // keys) for the kill to interrupt; round 0 uses the defaults the final run uses.
    let rounds = [
        (KillAt::Time(0.1), "0"),
        (KillAt::Time(0.3), "112"),
        (KillAt::Time(0.5), "128"),
        (KillAt::Time(0.7), "144"),
        (KillAt::Time(0.85), "160"),
        (KillAt::Time(1.0), "176"),
        (KillAt::LogWrites(1), "192"),
        (KillAt::LogWrites(2), "208"),
        (KillAt::LogWrites(1), "224"),
        (KillAt::LogWrites(2), "240"),
        (KillAt::LogWrites(1), "0"),
        (KillAt::LogWrites(1), "256"),
        (KillAt::LogWrites(2), "272"),
    ];
    let (mut interrupted, mut mid_write) = (0, 0);
    for (at, width) in rounds {
        let mut seen = sled_log(&data);
        let mut child = Command::new(bin())
            .arg("--data-dir")
            .arg(&data)
            .args(["submit", "scenes"])
            .arg(&src)
            .args([
                "--local",
                "--chunk-seconds",
                "2",
                "--analysis-width",
                width,
                "-q",
            ])
            .env("RENDERMESH_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        let mut fired = false;
        match at {
            // the kill point itself is the variable under test
            KillAt::Time(f) => std::thread::sleep(whole.mul_f64(f)),
            KillAt::LogWrites(n) => {
                let deadline = t0 + whole * 3 + std::time::Duration::from_secs(5);
                let mut writes = 0;
                while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                    let log = sled_log(&data);
                    if log != seen {
                        seen = log;
                        writes += 1;
                    }
                    fired = writes >= n;
                    if fired {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
            }
        }
        let running = matches!(child.try_wait(), Ok(None));
        let killed = Command::new("kill")
            .args(["-KILL", &child.id().to_string()])
            .stderr(Stdio::null())
            .status()
            .unwrap();
        let status = child.wait().unwrap();
        let hit = running && killed.success();
        interrupted += hit as usize;
        mid_write += (hit && fired) as usize;
        eprintln!(
            "kill {at:?} after {:.3}s (width {width}): running = {running}, event = {fired}, exit {status:?}",
            t0.elapsed().as_secs_f64()
        );

        // the lock died with the process; every entry left behind is intact
        let o = rendermesh(&data, &["cache", "verify"]);
        assert!(
            o.status.success(),
            "verify after kill {at:?} ({:?}): {}{}",
            o.status.code(),
            stdout(&o),
            stderr(&o)
        );
        let st = ok(&rendermesh(&data, &["cache", "stat", "--json"]), "stat");
        let st: serde_json::Value = serde_json::from_str(&st).unwrap();
        eprintln!("  entries now {}, blobs {}", st["entries"], st["blobs"]);
        // (verify decoded every entry of a known kind; a finished list is served whole)
        let lists = ok(
            &rendermesh(&data, &["cache", "ls", "--kind", "scene-list"]),
            "ls",
        );
        for key in lists.lines() {
            let o = rendermesh(&data, &["cache", "get", key]);
            let doc: serde_json::Value = serde_json::from_str(&ok(&o, "get")).unwrap();
            assert_eq!(doc["value"]["frames"], SCENE_FRAMES, "{key}: {doc}");
        }
    }
    // how many timed kills land mid-run depends on the machine's load; the early ones do
    assert!(
        interrupted >= 3,
        "only {interrupted} of {} kills hit a running job",
        rounds.len()
    );
    assert!(mid_write >= 1, "no kill landed while sled was writing");

    // temp files of the killed writers go with gc; then a full run gives the known cuts
    ok(&rendermesh(&data, &["cache", "gc"]), "gc");
    let tmp_dir = data.join("cache/blobs/tmp");
    let left = std::fs::read_dir(&tmp_dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(
        left, 0,
        "temp files of killed processes left in {tmp_dir:?}"
    );
    let json = tmp.path().join("cuts.json");
    let started = Instant::now();
    ok(
        &scenes(&data, &src, &["--json", json.to_str().unwrap()]),
        "scenes after the kills",
    );
    eprintln!("final run: {:.1}s", started.elapsed().as_secs_f64());
    assert_known_cuts(&cuts_of_json(&json));
    let o = rendermesh(&data, &["cache", "verify"]);
    assert!(o.status.success(), "{}", stdout(&o));
}

#[test]
fn cache_commands_refuse_while_a_node_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut node = Daemon::start(&data);
    for args in [
        &["cache", "stat"][..],
        &["cache", "verify"],
        &["cache", "gc"],
    ] {
        let o = rendermesh(&data, args);
        assert!(!o.status.success(), "{args:?} succeeded beside a node");
        let err = stderr(&o);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.contains("a node is running") && err.contains("stop it or use its API"),
            "{args:?}: {err}"
        );
    }
    // listing goes through the running node's API instead
    let o = rendermesh(&data, &["cache", "ls", "-l"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    assert!(node.alive(), "the node died: {}", node.log());
}

/// Whether this box can give a test a small disk of its own (root, for a tmpfs in a private
/// mount namespace); a loud skip where it cannot, a failure in CI.
fn can_fill_a_disk(what: &str) -> bool {
    let unshare = Command::new("unshare").arg("--help").output().is_ok();
    if !is_root() || !unshare {
        assert!(
            !must_run(),
            "the {what} test needs root and unshare (util-linux)"
        );
        eprintln!("SKIPPED: {what} test: needs root (a tmpfs in a mount namespace)");
        return false;
    }
    true
}

/// Run `script` in a private mount namespace (its tmpfs mounts vanish with it); stdout and
/// stderr together.
fn in_mount_namespace(script: &str) -> String {
    let o = Command::new("unshare")
        .args(["-m", "bash", "-c", script])
        .env("RENDERMESH_LOG", "warn")
        .env("RENDERMESH_CALIBRATION_FRAMES", "2")
        .output()
        .unwrap();
    let out = format!("{}{}", stdout(&o), stderr(&o));
    assert!(o.status.success(), "{out}");
    out
}

/// A full disk, in a private mount namespace (a small tmpfs that only this test sees): the
/// store still opens (its reserve is released), `cache stat` and `cache gc` run and free the
/// space, and a node starts there.
#[test]
fn on_a_full_disk_the_store_opens_gc_frees_space_and_a_node_starts() {
    if !can_fill_a_disk("full-disk") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = small_clip(tmp.path(), "clip.mp4", 2, &[]);
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let cfg = tmp.path().join("node.toml");
    std::fs::write(
        &cfg,
        no_mdns_unless_asked("listen = \"/ip4/127.0.0.1/tcp/0\"\n"),
    )
    .unwrap();
    let stray = format!("{}/{}", "ab", "ab".repeat(32));
    let script = format!(
        r#"set -u
M={mnt}; BIN={bin}; D=$M/data
mount -t tmpfs -o size=48m tmpfs "$M" || exit 90
$BIN --data-dir "$D" submit transcode {src} -o "$M/out.mp4" -q --local || exit 91
echo "reserve $(stat -c %s "$D/cache/reserve")"
# a blob nobody holds, then a disk filled to the last byte
mkdir -p "$D/cache/blobs/ab"
head -c 5242880 /dev/urandom > "$D/cache/blobs/{stray}"
dd if=/dev/zero of="$M/fill" bs=1M count=100 2>/dev/null
echo "free $(df --output=avail "$M" | tail -1 | tr -d " ")"
$BIN --data-dir "$D" cache stat >/dev/null 2>"$M/stat.err"; echo "stat rc=$?"
$BIN --data-dir "$D" cache gc 2>/dev/null; echo "gc rc=$?"
RENDERMESH_LOG=info $BIN --config {cfg} --data-dir "$D" node --control-listen 127.0.0.1:0 2>"$M/node.log" &
for i in $(seq 200); do [ -s "$D/control.json" ] && break; sleep 0.1; done
[ -s "$D/control.json" ] && echo "node started" || {{ echo "node did not start"; cat "$M/node.log"; }}
$BIN --data-dir "$D" drain >/dev/null 2>&1
wait
cat "$M/stat.err"
"#,
        mnt = mnt.display(),
        bin = bin().display(),
        src = src.display(),
        cfg = cfg.display(),
    );
    let out = in_mount_namespace(&script);
    assert!(out.contains("reserve 8388608"), "{out}");
    assert!(out.contains("free 0"), "the disk was not full: {out}");
    assert!(out.contains("stat rc=0"), "{out}");
    assert!(out.contains("the disk is full"), "{out}");
    assert!(out.contains("gc rc=0"), "{out}");
    assert!(out.contains("freed 5242880 bytes"), "{out}");
    assert!(out.contains("node started"), "{out}");
}

/// A job that runs out of disk (a small tmpfs in a private mount namespace): it fails with the
/// cause in one line, leaves no chunk, segment, temp file or half-written output behind (the
/// free space is back to what it was), and the next job that fits runs.
#[test]
fn a_job_that_fills_the_disk_fails_clearly_cleans_up_and_the_next_one_runs() {
    if !can_fill_a_disk("full-disk job") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let small = small_clip(tmp.path(), "small.mp4", 2, &[]);
    // about 4 MB of source: its chunks, segments and output need about three times that
    let big = clip_720p_open_gop(tmp.path(), 12);
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let script = format!(
        r#"set -u
M={mnt}; BIN={bin}; D=$M/data
mount -t tmpfs -o size=40m tmpfs "$M" || exit 90
$BIN --data-dir "$D" submit transcode {small} -o "$M/first.mp4" -q --local || exit 91
rm "$M/first.mp4"
$BIN --data-dir "$D" cache gc >/dev/null || exit 92
# leave 6 MB free
avail=$(df --output=avail -B1 "$M" | tail -1 | tr -d " ")
head -c $((avail - 6 * 1048576)) /dev/zero > "$M/fill"
before=$(df --output=avail -B1 "$M" | tail -1 | tr -d " ")
echo "before $before"
$BIN --data-dir "$D" submit transcode {big} -o "$M/big.mp4" -q --local --preset ultrafast \
    --crf 10 --chunk-seconds 2 2>"$M/big.err"
echo "big rc=$?"
echo "said: $(cat "$M/big.err")"
echo "after $(df --output=avail -B1 "$M" | tail -1 | tr -d " ")"
echo "blobs $($BIN --data-dir "$D" cache ls --blobs | wc -l)"
echo "left: $(find "$M" -type f ! -path "$D/cache/db/*" ! -name fill ! -name '*.err' | sort | tr '\n' ' ')"
$BIN --data-dir "$D" submit transcode {small} -o "$M/again.mp4" -q --local
echo "again rc=$? $(stat -c %s "$M/again.mp4" 2>/dev/null)"
"#,
        mnt = mnt.display(),
        bin = bin().display(),
        small = small.display(),
        big = big.display(),
    );
    let out = in_mount_namespace(&script);
    let figure = |name: &str| -> i64 {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} figure: {out}"))
    };
    assert!(out.contains("big rc=1"), "{out}");
    assert!(
        out.contains("No space left on device") || out.contains("disk is full"),
        "the cause is not named: {out}"
    );
    // tmpfs counts whole pages: a few kB of the store's database may stay
    let (before, after) = (figure("before"), figure("after"));
    assert!(
        after >= before - 256 * 1024,
        "{} kB not freed: {out}",
        (before - after) / 1024
    );
    assert_eq!(figure("blobs"), 0, "{out}");
    let left = out.lines().find(|l| l.starts_with("left:")).unwrap();
    // the store's own files only: nothing under the blobs (temp files included), no output
    assert!(
        left.split_whitespace().skip(1).all(|f| f
            .split_once("/mnt/data/")
            .is_some_and(|(_, own)| !own.starts_with("cache/blobs/"))),
        "{left}"
    );
    assert!(out.contains("again rc=0"), "{out}");
}
