//! Scene detection through the shard path: known cuts found exactly once, across shard
//! boundaries; PySceneDetect's CSV layout; the second run answered from the cache.

use crate::common;

use common::*;

const PYSCENEDETECT_COLUMNS: [&str; 10] = [
    "Scene Number",
    "Start Frame",
    "Start Timecode",
    "Start Time (seconds)",
    "End Frame",
    "End Timecode",
    "End Time (seconds)",
    "Length (frames)",
    "Length (timecode)",
    "Length (seconds)",
];

fn assert_cuts_match(found: &[u64], truth: &[u64]) {
    assert_eq!(found.len(), truth.len(), "found {found:?}, truth {truth:?}");
    for (f, t) in found.iter().zip(truth) {
        assert!(
            f.abs_diff(*t) <= 1,
            "cut {f} does not match {t} (found {found:?})"
        );
    }
}

#[test]
fn known_cuts_are_found_once_across_shard_boundaries_and_then_cached() {
    let tmp = tempfile::tempdir().unwrap();
    let src = scenes_clip(tmp.path());
    let data = tmp.path().join("data");
    let (csv, json, edl, rep) = (
        tmp.path().join("c.csv"),
        tmp.path().join("c.json"),
        tmp.path().join("c.edl"),
        tmp.path().join("r.json"),
    );
    let o = rendermesh(
        &data,
        &[
            "submit",
            "scenes",
            src.to_str().unwrap(),
            "--chunk-seconds",
            "2",
            "--csv",
            csv.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
            "--edl",
            edl.to_str().unwrap(),
            "--report",
            rep.to_str().unwrap(),
            "-q",
        ],
    );
    assert!(o.status.success(), "scenes failed: {}", stderr(&o));

    // time-sharded: one shard per 60-frame GOP
    let r = report(&rep);
    let shards = r["status"]["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 8, "expected 8 shards of 60 frames");
    assert!(r["status"]["stats"]["decoded_frames"].as_u64().unwrap() >= SCENE_FRAMES);

    // every known cut within ±1 frame, nothing extra; boundary cuts present once
    let cuts = cuts_of_json(&json);
    assert_cuts_match(&cuts, &SCENE_CUTS);
    for on_boundary in [60, 240, 420] {
        assert_eq!(
            cuts.iter()
                .filter(|&&c| c.abs_diff(on_boundary) <= 1)
                .count(),
            1
        );
    }

    // CSV: PySceneDetect list-scenes layout
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(lines[0][0], "Timecode List:");
    assert_eq!(lines[0].len(), 1 + SCENE_CUTS.len());
    assert_eq!(lines[1], PYSCENEDETECT_COLUMNS);
    let rows = &lines[2..];
    assert_eq!(rows.len(), SCENE_CUTS.len() + 1);
    let mut expected_start = 1u64;
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.len(), 10);
        assert_eq!(row[0].parse::<usize>().unwrap(), i + 1);
        let start: u64 = row[1].parse().unwrap();
        let end: u64 = row[4].parse().unwrap();
        assert_eq!(start, expected_start, "row {i}");
        assert_eq!(row[7].parse::<u64>().unwrap(), end - start + 1);
        let secs: f64 = row[3].parse().unwrap();
        assert!((secs - (start - 1) as f64 / 30.0).abs() < 0.0015);
        expected_start = end + 1;
    }
    assert_eq!(expected_start - 1, SCENE_FRAMES);
    // EDL: one event per scene
    let edl_text = std::fs::read_to_string(&edl).unwrap();
    assert!(edl_text.starts_with("TITLE:"));
    assert_eq!(
        edl_text.lines().filter(|l| l.starts_with("0")).count(),
        SCENE_CUTS.len() + 1
    );

    // the shards are cached compact: scores only, the edge frames that joined them dropped
    // (two frames at the analysis size, 320x180 HSV, would be 345 600 bytes)
    let o = rendermesh(&data, &["cache", "ls", "--kind", "scene-shard", "--long"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let sizes: Vec<u64> = stdout(&o)
        .lines()
        .map(|l| l.split_whitespace().last().unwrap().parse().unwrap())
        .collect();
    assert_eq!(sizes.len(), 8, "{}", stdout(&o));
    assert!(sizes.iter().all(|&b| b < 4096), "{sizes:?}");

    // second submit: from the cache, no hashing, no decoding (counted in the process)
    let rep2 = tmp.path().join("r2.json");
    let json2 = tmp.path().join("c2.json");
    let o = rendermesh(
        &data,
        &[
            "submit",
            "scenes",
            src.to_str().unwrap(),
            "--chunk-seconds",
            "2",
            "--json",
            json2.to_str().unwrap(),
            "--report",
            rep2.to_str().unwrap(),
            "-q",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r2 = report(&rep2);
    assert_eq!(r2["status"]["from_cache"], true);
    assert_eq!(r2["status"]["stats"]["decoded_frames"], 0);
    assert_eq!(r2["status"]["stats"]["hashed_bytes"], 0);
    assert_eq!(
        r2["process_decoded_frames"], 0,
        "the process decoded frames on a cache hit"
    );
    assert_eq!(r2["status"]["shards"].as_array().unwrap().len(), 0);
    assert_eq!(cuts_of_json(&json2), cuts);

    // another threshold: a new scene list, but from the cached per-shard scores, no decode
    let rescored = |threshold: &str| {
        let (json, rep) = (
            tmp.path().join(format!("t{threshold}.json")),
            tmp.path().join(format!("t{threshold}-report.json")),
        );
        let o = rendermesh(
            &data,
            &[
                "submit",
                "scenes",
                src.to_str().unwrap(),
                "--chunk-seconds",
                "2",
                "--threshold",
                threshold,
                "--json",
                json.to_str().unwrap(),
                "--report",
                rep.to_str().unwrap(),
                "-q",
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let r = report(&rep);
        assert_eq!(r["status"]["from_cache"], false);
        assert_eq!(
            r["process_decoded_frames"], 0,
            "cached shard scores were not reused"
        );
        assert_eq!(r["status"]["stats"]["cache_hits"], 8);
        cuts_of_json(&json)
    };
    assert!(
        rescored("200").is_empty(),
        "threshold 200 should cut nothing"
    );
    // a threshold just below the default, from the compact shards alone: the same cuts, the
    // ones on shard boundaries included (their scores were joined before the edges went)
    assert_eq!(rescored("26.5"), cuts);
}

#[test]
fn sharding_does_not_change_the_cut_list_and_adaptive_finds_the_cuts() {
    let tmp = tempfile::tempdir().unwrap();
    let src = scenes_clip(tmp.path());
    let one = tmp.path().join("one.json");
    let many = tmp.path().join("many.json");
    let adaptive = tmp.path().join("adaptive.json");
    for (dir, chunk, out, extra) in [
        ("d1", "100", &one, None),
        ("d2", "2", &many, None),
        ("d3", "2", &adaptive, Some("adaptive")),
    ] {
        let mut args = vec![
            "submit",
            "scenes",
            src.to_str().unwrap(),
            "--chunk-seconds",
            chunk,
            "--json",
            out.to_str().unwrap(),
            "-q",
        ];
        if let Some(d) = extra {
            args.extend(["--detector", d]);
        }
        let o = rendermesh(&tmp.path().join(dir), &args);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert_eq!(
        cuts_of_json(&one),
        cuts_of_json(&many),
        "one shard vs eight shards"
    );
    assert_cuts_match(&cuts_of_json(&adaptive), &SCENE_CUTS);
}

#[test]
fn several_files_give_one_list_each() {
    let tmp = tempfile::tempdir().unwrap();
    let a = small_clip(tmp.path(), "a.mp4", 2, &[]);
    let b = scenes_clip(tmp.path());
    let csv = tmp.path().join("cuts.csv");
    let o = rendermesh(
        &tmp.path().join("data"),
        &[
            "submit",
            "scenes",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--csv",
            csv.to_str().unwrap(),
            "-q",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let ca = std::fs::read_to_string(tmp.path().join("cuts-a.csv")).unwrap();
    let cb = std::fs::read_to_string(tmp.path().join("cuts-scenes.csv")).unwrap();
    assert_eq!(ca.lines().count(), 3, "one scene for the plain clip: {ca}");
    assert_eq!(cb.lines().count(), 2 + SCENE_CUTS.len() + 1);
}

/// The cut-list assertions rely on the clip being the same every time it is generated.
#[test]
fn the_scenes_clip_is_reproducible() {
    let decoded_md5 = |dir: &std::path::Path| {
        let clip = scenes_clip(dir);
        let out = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-nostdin", "-i"])
            .arg(&clip)
            .args(["-map", "0:v", "-f", "md5", "-"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = decoded_md5(a.path());
    assert!(first.starts_with("MD5="), "{first}");
    assert_eq!(
        first,
        decoded_md5(b.path()),
        "two generations of the scenes clip differ"
    );
}
