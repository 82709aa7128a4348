//! Many files in one job on three real nodes: a library of mixed files with a broken one and
//! one that is not media; the coordinator killed mid-batch and the batch submitted again.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::batch::{bad_files, library};
use common::mesh::{last_job, last_job_opt, peers_of, start, three, three_env};
use common::{
    no_panic, rendermesh, stderr, stdout, stream_duration, video_frames, wait_for, Daemon,
};

fn has_audio(file: &Path) -> bool {
    !common::ffprobe(
        &[
            "-select_streams",
            "a",
            "-show_entries",
            "stream=index",
            "-of",
            "csv=p=0",
        ],
        file,
    )
    .trim()
    .is_empty()
}

/// Check an output against its source: every frame, and the audio as long.
fn same_frames_with_audio(src: &Path, out: &Path) {
    assert_eq!(
        video_frames(out),
        video_frames(src),
        "{} is not frame-exact",
        out.display()
    );
    assert!(has_audio(out), "{} lost its audio", out.display());
    let (a, b) = (stream_duration(src, "a:0"), stream_duration(out, "a:0"));
    assert!(
        (a - b).abs() < 0.1,
        "{}: audio {b:.3} s, source {a:.3} s",
        out.display()
    );
}

fn transcode_batch(
    data: &Path,
    inputs: &[PathBuf],
    out: &Path,
    extra: &[&str],
) -> std::process::Output {
    let mut args: Vec<String> = vec!["submit".into(), "transcode".into()];
    args.extend(inputs.iter().map(|p| p.display().to_string()));
    args.extend(["-o".to_string(), format!("{}/", out.display())]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    rendermesh(data, &refs)
}

#[test]
fn a_batch_of_twelve_files_on_three_nodes_writes_ten_and_names_the_two_failures() {
    let tmp = tempfile::tempdir().unwrap();
    let media = tmp.path().join("media");
    let good = library(&media);
    let (broken, text) = bad_files(&media, &good[0]);
    let nodes = three(tmp.path());
    let out = tmp.path().join("out");
    let mut inputs = good.clone();
    inputs.insert(3, broken.clone());
    inputs.insert(7, text.clone());
    let o = transcode_batch(
        &nodes[0].data_dir,
        &inputs,
        &out,
        &["--preset", "ultrafast", "--chunk-seconds", "2", "-q"],
    );
    let said = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{said}\n{}", stderr(&o));
    // every good file written, frame-exact with its audio; nothing else in the directory
    for src in &good {
        let name = format!("{}.mp4", src.file_stem().unwrap().to_string_lossy());
        assert!(out.join(&name).exists(), "{name} missing: {said}");
        same_frames_with_audio(src, &out.join(name));
    }
    let written: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(written.len(), 10, "{written:?}");
    // the summary names both failures with their causes
    assert!(said.contains("10 done"), "{said}");
    assert!(said.contains("2 failed"), "{said}");
    let failed: Vec<&str> = said
        .lines()
        .filter(|l| l.starts_with("  failed: "))
        .collect();
    assert_eq!(failed.len(), 2, "{said}");
    assert!(
        failed
            .iter()
            .any(|l| l.contains("k_broken.mp4") && l.contains("truncated or damaged")),
        "{said}"
    );
    assert!(
        failed
            .iter()
            .any(|l| l.contains("l_notes.mp4") && l.contains("not a media file")),
        "{said}"
    );
    // one auction for all files: every node ran some; the long file was cut into chunks
    let job = last_job(&nodes[0]);
    let ran: std::collections::BTreeSet<String> = peers_of(&job);
    let all: std::collections::BTreeSet<String> = ["a", "b", "c"].map(String::from).into();
    assert_eq!(ran, all, "{job}");
    let items = job["items"].as_array().unwrap();
    assert_eq!(items.len(), 12);
    let long = items
        .iter()
        .find(|i| i["name"].as_str().unwrap().ends_with("i_long.mp4"))
        .unwrap();
    assert!(long["shards"].as_u64().unwrap() >= 3, "{long}");
    let small = items
        .iter()
        .find(|i| i["name"].as_str().unwrap().ends_with("a_h264.mp4"))
        .unwrap();
    assert_eq!(small["shards"], 1, "{small}");

    // `status` counts the files and names the failures
    let st = rendermesh(&nodes[0].data_dir, &["status"]);
    let st = stdout(&st);
    assert!(st.contains("10 done, 0 from cache, 2 failed"), "{st}");
    assert!(
        st.contains("k_broken.mp4") && st.contains("l_notes.mp4"),
        "{st}"
    );

    // again: every output exists, so nothing is encoded
    let o = transcode_batch(
        &nodes[0].data_dir,
        &good,
        &out,
        &["--preset", "ultrafast", "-q"],
    );
    let said = stdout(&o);
    assert!(o.status.success(), "{said}\n{}", stderr(&o));
    assert!(said.contains("10 skipped"), "{said}");
    no_panic(&nodes);
}

#[test]
fn the_same_content_under_two_names_is_made_once_and_written_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let media = tmp.path().join("media");
    let good = library(&media);
    let twin = media.join("twin.mp4");
    std::fs::copy(&good[0], &twin).unwrap();
    // a pipe named like a video would be read forever: it fails alone, at once
    let fifo = media.join("camera.mp4");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let node = Daemon::start(&tmp.path().join("n"));
    let out = tmp.path().join("out");
    let o = transcode_batch(
        &node.data_dir,
        &[good[0].clone(), fifo, twin.clone()],
        &out,
        &["--preset", "ultrafast", "-q"],
    );
    let said = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{said}\n{}", stderr(&o));
    assert!(
        said.contains("2 done") && said.contains("1 failed"),
        "{said}"
    );
    assert!(
        said.contains("camera.mp4") && said.contains("not a regular file"),
        "{said}"
    );
    let a = std::fs::read(out.join("a_h264.mp4")).unwrap();
    let b = std::fs::read(out.join("twin.mp4")).unwrap();
    assert_eq!(a, b);
    let job = last_job(&node);
    assert_eq!(
        job["shards"].as_array().unwrap().len(),
        1,
        "made twice: {job}"
    );
    assert!(
        job["items"][2]["note"]
            .as_str()
            .unwrap_or_default()
            .contains("same content as"),
        "{job}"
    );
    // several inputs and an output that names a file: one clear line, nothing made
    let o = rendermesh(
        &node.data_dir,
        &[
            "submit",
            "transcode",
            good[0].to_str().unwrap(),
            good[1].to_str().unwrap(),
            "-o",
            tmp.path().join("one.mp4").to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("give -o a directory"), "{}", stderr(&o));
    assert!(!tmp.path().join("one.mp4").exists());
    // an output directory that cannot be written: every file named, nothing left behind
    let ro = tmp.path().join("ro");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::write(ro.join("blocker"), "").unwrap();
    let o = transcode_batch(
        &node.data_dir,
        &[good[0].clone(), twin],
        &ro.join("blocker").join("sub"),
        &["-q"],
    );
    let said = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{said}");
    assert_eq!(
        said.lines()
            .filter(|l| l.starts_with("  failed: ") && l.contains("cannot create"))
            .count(),
        2,
        "{said}"
    );
    assert_eq!(std::fs::read_dir(&ro).unwrap().count(), 1);
}

#[test]
fn a_coordinator_killed_mid_batch_reuses_finished_files_and_shards_when_submitted_again() {
    let tmp = tempfile::tempdir().unwrap();
    let media = tmp.path().join("media");
    let good = library(&media);
    // chunks are offered largest first: the short 720p file's four chunks are each more work
    // than any of the long 360p file's thirty, so the short one is finished while the long
    // one runs, whatever the chunks' byte sizes
    let short = common::clip_720p_open_gop(&media, 8);
    let long = common::small_clip(&media, "long360.mp4", 60, &["-vf", "scale=640:360"]);
    // b and c are slow boxes: the long file's chunks cannot all be done before the kill
    let mut nodes = three_env(tmp.path(), "", &[("RENDERMESH_FAULT", "slow-shards=100")]);
    let key = tmp.path().join("swarm.key");
    let out = tmp.path().join("out");
    let inputs: Vec<PathBuf> = vec![good[0].clone(), short.clone(), long.clone()];
    let args = ["--preset", "medium", "--chunk-seconds", "2", "-q"];
    let first = {
        let data = nodes[0].data_dir.clone();
        let (inputs, out) = (inputs.clone(), out.clone());
        std::thread::spawn(move || transcode_batch(&data, &inputs, &out, &args))
    };
    // the long file is the last item: wait until the short one is written and some of the
    // long one's chunks are in
    let long_done = |n: &Daemon| -> usize {
        last_job_opt(n)
            .and_then(|j| j["items"].as_array().cloned())
            .and_then(|items| items.last().cloned())
            .and_then(|i| i["shards_done"].as_u64())
            .unwrap_or(0) as usize
    };
    wait_for(Duration::from_secs(240), || {
        long_done(&nodes[0]) >= 3 && out.join("src720-8s.mp4").exists()
    })
    .unwrap_or_else(|| {
        let told: Vec<String> = nodes.iter().map(|n| n.story()).collect();
        panic!(
            "the batch did not get far: {}\n{}",
            last_job_opt(&nodes[0]).unwrap_or_default(),
            told.join("\n")
        )
    });
    let chunks_before = long_done(&nodes[0]);
    assert!(chunks_before < 30, "all chunks were in before the kill");
    let _ = nodes[0].child.kill();
    let _ = nodes[0].child.wait();
    let o = first.join().unwrap();
    assert!(!o.status.success(), "the submit outlived its node");
    assert!(!out.join("long360.mp4").exists());
    let written_before = std::fs::read_dir(&out)
        .unwrap()
        .filter(|e| {
            !e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count();
    assert!(
        (1..=3).contains(&written_before),
        "{written_before} written before the kill"
    );

    let a = start(tmp.path(), "a", &key, &[]);
    nodes[0] = a;
    let o = transcode_batch(&nodes[0].data_dir, &inputs, &out, &args);
    let said = stdout(&o);
    assert!(
        o.status.success(),
        "{said}\n{}\n{}",
        stderr(&o),
        nodes[0].log()
    );
    assert!(
        said.contains(&format!("{written_before} skipped")),
        "{said}"
    );
    for src in &inputs {
        let name = format!("{}.mp4", src.file_stem().unwrap().to_string_lossy());
        same_frames_with_audio(src, &out.join(name));
    }
    let job = last_job(&nodes[0]);
    let rows = job["shards"].as_array().unwrap();
    let reused = rows.iter().filter(|s| s["state"] == "Cached").count();
    assert!(
        reused >= chunks_before,
        "{chunks_before} chunks were in before the kill, {reused} reused: {job}"
    );
    let ran = rows.iter().filter(|s| s["state"] == "Done").count();
    assert_eq!(reused + ran, rows.len(), "{job}");
    assert!(ran >= 1, "nothing was left to run? {job}");
    // no stray temp files in the output directory
    let stray: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    no_panic(&nodes);
}
