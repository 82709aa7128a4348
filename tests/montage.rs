//! The montage job end to end on media generated here: six clips of three known scenes each
//! (640x360 25 fps, 854x480 30 fps, 1280x720 60 fps without audio, a portrait phone clip,
//! a variable frame rate clip, a full-range 23.976 fps clip) and a 120 BPM kick-drum song.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::audio::{chart_offset, decode};
use common::montage::{clips, song, TestClip};
use common::{rendermesh, stderr, stdout, submit_scenes, video_frames};
use serde_json::Value;

const FPS: f64 = 30.0;
const START: f64 = 2.0;
const LENGTH: f64 = 12.0;

/// Tests that use the first montage's data dir take turns (one process opens it at a time).
static DATA: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn data_turn() -> std::sync::MutexGuard<'static, ()> {
    DATA.lock().unwrap_or_else(|p| p.into_inner())
}

/// Media made once for every test here.
struct Media {
    dir: tempfile::TempDir,
    clips: Vec<TestClip>,
    song: PathBuf,
    beats: Vec<f64>,
}

fn media() -> &'static Media {
    static M: OnceLock<Media> = OnceLock::new();
    M.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let clips = clips(dir.path());
        let (song, beats) = song(dir.path(), 40.0);
        Media {
            dir,
            clips,
            song,
            beats,
        }
    })
}

/// The first montage, made once: its data dir, output, plan, and the command's output.
struct First {
    data: PathBuf,
    out: PathBuf,
    plan: Value,
    stdout: String,
    files: PathBuf,
}

fn montage_args<'a>(m: &'a Media, extra: &[&'a str]) -> Vec<String> {
    let mut args: Vec<String> = vec!["submit".into(), "montage".into()];
    args.extend(m.clips.iter().map(|c| c.path.display().to_string()));
    args.extend(["--music".into(), m.song.display().to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn run(data: &Path, args: &[String]) -> std::process::Output {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    rendermesh(data, &refs)
}

fn first() -> &'static First {
    static F: OnceLock<First> = OnceLock::new();
    F.get_or_init(|| {
        let m = media();
        let files = m.dir.path().join("first");
        std::fs::create_dir_all(&files).unwrap();
        let data = m.dir.path().join("data");
        let out = files.join("out.mp4");
        let p = |n: &str| files.join(n).display().to_string();
        let args = montage_args(
            m,
            &[
                "-o",
                out.to_str().unwrap(),
                "--length",
                "12",
                "--start",
                "2",
                "--size",
                "640x360",
                "--fps",
                "30",
                "--seed",
                "1",
                "-q",
            ],
        );
        let mut args = args;
        for (flag, name) in [
            ("--plan", "plan.json"),
            ("--otio", "cut.otio"),
            ("--edl", "cut.edl"),
            ("--fcpxml", "cut.fcpxml"),
        ] {
            args.push(flag.into());
            args.push(p(name));
        }
        let o = run(&data, &args);
        assert!(o.status.success(), "montage failed: {}", stderr(&o));
        let plan: Value =
            serde_json::from_slice(&std::fs::read(files.join("plan.json")).unwrap()).unwrap();
        First {
            data,
            out,
            plan,
            stdout: stdout(&o),
            files,
        }
    })
}

fn segments(plan: &Value) -> Vec<(u64, u64, usize, u64)> {
    plan["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["out_start"].as_u64().unwrap(),
                s["frames"].as_u64().unwrap(),
                s["source"].as_u64().unwrap() as usize,
                s["src_start"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The test clip a plan source is.
fn clip_of<'a>(plan: &Value, source: usize) -> &'a TestClip {
    let path = PathBuf::from(plan["sources"][source]["path"].as_str().unwrap());
    media()
        .clips
        .iter()
        .find(|c| std::fs::canonicalize(&c.path).unwrap() == path)
        .unwrap()
}

#[test]
fn the_montage_has_its_length_and_cuts_on_beats_inside_scenes() {
    let f = first();
    let m = media();
    assert_eq!(video_frames(&f.out), (LENGTH * FPS) as u64);
    let segs = segments(&f.plan);
    assert!(segs.len() >= 6, "{} segments", segs.len());
    // each cut on a beat of the song, within one output frame
    for &(out_start, ..) in &segs[1..] {
        let t = out_start as f64 / FPS + START;
        let near = m
            .beats
            .iter()
            .map(|b| (b - t).abs())
            .fold(f64::MAX, f64::min);
        assert!(
            near <= 1.0 / FPS,
            "cut at {t:.3} s is {near:.3} s from a beat"
        );
    }
    // each segment inside one scene of its source, and no range used twice
    let mut used: Vec<(usize, f64, f64)> = Vec::new();
    for &(_, frames, source, src_start) in &segs {
        let clip = clip_of(&f.plan, source);
        let (a, b) = (src_start as f64 / FPS, (src_start + frames) as f64 / FPS);
        assert!(b <= clip.secs, "{a}..{b} beyond {}", clip.path.display());
        for c in &clip.cuts {
            assert!(
                *c <= a - 0.05 || *c >= b + 0.05,
                "{a:.3}..{b:.3} s of {} crosses its cut at {c} s",
                clip.path.display()
            );
        }
        for &(s, x, y) in &used {
            assert!(s != source || b <= x || a >= y, "range used twice");
        }
        used.push((source, a, b));
    }
    // the sources are varied: at least 5 of the 6 clips appear
    let mut sources: Vec<usize> = segs.iter().map(|s| s.2).collect();
    sources.sort();
    sources.dedup();
    assert!(sources.len() >= 5, "{sources:?}");
    assert!(f.stdout.contains("plan: "), "{}", f.stdout);
}

#[test]
fn the_timelines_describe_the_rendered_cut_for_the_reference_library() {
    let f = first();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join("target/py-otio/bin/python");
    assert!(
        python.exists(),
        "{} is missing: tests/deps.sh makes it",
        python.display()
    );
    let out = std::process::Command::new(&python)
        .arg(root.join("tests/timeline_check.py"))
        .args(["plan.json", "cut.otio", "cut.edl", "cut.fcpxml"].map(|n| f.files.join(n)))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let n = segments(&f.plan).len();
    assert_eq!(
        text.trim(),
        format!("timeline ok: {n} clips, {} frames", (LENGTH * FPS) as u64)
    );
}

#[test]
fn scene_detection_on_the_output_finds_the_planned_cuts() {
    let f = first();
    let _turn = data_turn();
    let planned: Vec<u64> = segments(&f.plan)[1..].iter().map(|s| s.0).collect();
    let found = submit_scenes(&f.data, &f.out, "4", &f.files.join("found.json"));
    for p in &planned {
        assert!(
            found.iter().any(|c| c.abs_diff(*p) <= 1),
            "planned cut at frame {p} not found; found {found:?}, planned {planned:?}"
        );
    }
    for c in &found {
        assert!(
            planned.iter().any(|p| p.abs_diff(*c) <= 1),
            "a cut at frame {c} that was not planned; found {found:?}, planned {planned:?}"
        );
    }
}

#[test]
fn the_songs_audio_is_in_sync_and_fades_out() {
    let f = first();
    let m = media();
    let rate = 24_000;
    let out = decode(&f.out, rate);
    let secs = out.len() as f64 / rate as f64;
    assert!((secs - LENGTH).abs() < 0.05, "audio is {secs:.3} s");
    // the kicks of the song from --start, where the output's audio has its energy rises
    let beats: Vec<f64> = m
        .beats
        .iter()
        .map(|b| b - START)
        .filter(|b| *b > 0.1 && *b < LENGTH - 1.5)
        .collect();
    let song = decode(&m.song, rate);
    let from = (START * rate as f64) as usize;
    let reference = chart_offset(&song[from..], rate, &beats, 0.05);
    let shift = chart_offset(&out, rate, &beats, 0.05);
    assert!(
        (shift - reference).abs() <= 0.005,
        "the output's kicks are {:.1} ms off the song's",
        1000.0 * (shift - reference)
    );
    let rms = |a: f64, b: f64| {
        let s = &out[(a * rate as f64) as usize..(b * rate as f64) as usize];
        (s.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
    };
    assert!(rms(LENGTH - 0.15, LENGTH) < 0.2 * rms(LENGTH - 3.0, LENGTH - 1.5));
}

#[test]
fn another_seed_and_length_plans_from_the_cache_and_renders_only() {
    let f = first();
    let _turn = data_turn();
    let m = media();
    let out = f.files.join("second.mp4");
    let report = f.files.join("second.json");
    let plan = f.files.join("second-plan.json");
    let args = montage_args(
        m,
        &[
            "-o",
            out.to_str().unwrap(),
            "--length",
            "10",
            "--start",
            "2",
            "--size",
            "640x360",
            "--fps",
            "30",
            "--seed",
            "2",
            "--plan",
            plan.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
            "-q",
        ],
    );
    let o = run(&f.data, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(video_frames(&out), 300);
    let r = common::report(&report);
    let status = &r["status"];
    // one stage, the render: no analysis shard ran, from the cache or otherwise
    assert_eq!(status["stage"], 0, "{status}");
    assert_eq!(status["stage_name"], "render", "{status}");
    let p: Value = serde_json::from_slice(&std::fs::read(&plan).unwrap()).unwrap();
    assert_eq!(
        status["shards"].as_array().unwrap().len(),
        p["segments"].as_array().unwrap().len()
    );
    assert_ne!(segments(&p), segments(&f.plan));
}

#[test]
fn an_edited_plan_renders_as_edited() {
    let f = first();
    let _turn = data_turn();
    let mut plan = f.plan.clone();
    // swap the first two shots and drop the last one
    let segs = plan["segments"].as_array_mut().unwrap();
    segs.pop();
    segs.swap(0, 1);
    let mut at = 0;
    for s in segs.iter_mut() {
        s["out_start"] = at.into();
        at += s["frames"].as_u64().unwrap();
    }
    plan["frames"] = at.into();
    let edited = f.files.join("edited.json");
    std::fs::write(&edited, serde_json::to_vec_pretty(&plan).unwrap()).unwrap();
    let out = f.files.join("edited.mp4");
    let o = rendermesh(
        &f.data,
        &[
            "submit",
            "montage",
            "--from-plan",
            edited.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "-q",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(video_frames(&out), at);
    let planned: Vec<u64> = segments(&plan)[1..].iter().map(|s| s.0).collect();
    let found = submit_scenes(&f.data, &out, "4", &f.files.join("edited-found.json"));
    for p in &planned {
        assert!(
            found.iter().any(|c| c.abs_diff(*p) <= 1),
            "{p} not in {found:?}"
        );
    }
}

/// A montage of `clips` that is expected to fail: its one-line error, and no output left.
fn fails(clips: &[&Path], extra: &[&str]) -> String {
    let m = media();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.mp4");
    let mut args: Vec<String> = vec!["submit".into(), "montage".into()];
    args.extend(clips.iter().map(|c| c.display().to_string()));
    let has_music = extra.contains(&"--music");
    if !has_music {
        args.extend(["--music".into(), m.song.display().to_string()]);
    }
    if !extra.contains(&"-o") {
        args.extend(["-o".into(), out.display().to_string()]);
    }
    args.push("-q".into());
    args.extend(extra.iter().map(|s| s.to_string()));
    let o = run(&dir.path().join("data"), &args);
    assert!(!o.status.success(), "succeeded: {}", stdout(&o));
    assert!(!out.exists(), "a partial output was left");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "data")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let e = stderr(&o);
    assert!(!e.contains("panicked"), "{e}");
    e
}

#[test]
fn bad_inputs_get_one_clear_line_and_no_output() {
    let m = media();
    let good: Vec<&Path> = m.clips.iter().map(|c| c.path.as_path()).collect();
    let dir = tempfile::tempdir().unwrap();
    // no clips: none given, or a directory without video files
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = fails(&[&empty], &[]);
    assert!(e.contains("no clips"), "{e}");
    // a song that is missing, or is not audio
    let missing = dir.path().join("nope.wav");
    let e = fails(&good, &["--music", missing.to_str().unwrap()]);
    assert!(e.contains("nope.wav") && e.contains("no such file"), "{e}");
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a song").unwrap();
    let e = fails(&good, &["--music", text.to_str().unwrap()]);
    assert!(e.contains("notes.txt"), "{e}");
    let silent = m
        .clips
        .iter()
        .find(|c| c.path.to_string_lossy().contains("silent"))
        .unwrap();
    let e = fails(&good, &["--music", silent.path.to_str().unwrap()]);
    assert!(e.contains("audio"), "{e}");
    // only broken clips
    let broken = dir.path().join("broken.mp4");
    std::fs::write(&broken, vec![7u8; 50_000]).unwrap();
    let e = fails(&[&broken], &[]);
    assert!(
        e.contains("no usable clips") && e.contains("broken.mp4"),
        "{e}"
    );
    // a length beyond the song names both
    let e = fails(&good, &["--length", "45", "--start", "2"]);
    assert!(e.contains("--length 45") && e.contains("song.wav"), "{e}");
    // a pace that does not exist is refused by the command line, before any work
    let e = fails(&good, &["--pace", "turbo"]);
    assert!(e.contains("turbo") && e.contains("fast"), "{e}");
    assert!(!e.contains("in-process"), "{e}");
    // an output that cannot be written
    let e = fails(&good, &["-o", "/proc/nope/out.mp4"]);
    assert!(e.contains("/proc/nope"), "{e}");
}

#[test]
fn a_broken_clip_is_skipped_and_too_little_footage_makes_a_shorter_montage() {
    let m = media();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broken = dir.path().join("broken.mp4");
    std::fs::write(&broken, vec![7u8; 50_000]).unwrap();
    let out = dir.path().join("short.mp4");
    let clip = &m.clips[0];
    let mut args: Vec<String> = vec![
        "submit".into(),
        "montage".into(),
        clip.path.display().to_string(),
        broken.display().to_string(),
    ];
    args.extend(
        [
            "--music",
            m.song.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--length",
            "20",
            "--size",
            "320x180",
            "--fps",
            "25",
            "-q",
        ]
        .map(String::from),
    );
    let o = run(&data, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("skipped a clip") && e.contains("broken.mp4"),
        "{e}"
    );
    assert!(e.contains("too little usable footage"), "{e}");
    let frames = video_frames(&out);
    // one 9 s clip without reuse: less than its length, far less than 20 s
    assert!(frames > 100 && frames < 9 * 25, "{frames}");
    // with reuse the length is filled
    let full = dir.path().join("full.mp4");
    let mut reuse = args.clone();
    let o_at = reuse.iter().position(|a| a == "-o").unwrap();
    reuse[o_at + 1] = full.display().to_string();
    reuse.push("--allow-reuse".into());
    let o = run(&data, &reuse);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(video_frames(&full), 500);
}

/// Real footage (tests/deps.sh puts it in target/footage) joined by a dissolve and a hard
/// cut: the `auto` detector tells them apart and a montage's shots stay clear of the dissolve.
#[test]
fn a_montage_keeps_its_shots_clear_of_a_dissolve_the_scene_list_names() {
    let footage = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/footage");
    assert!(
        footage.join("bikes.mp4").is_file(),
        "no footage in {} (tests/deps.sh fetches it)",
        footage.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("dissolve.mp4");
    // the film (132 frames) dissolves over its last 20 into the car (100 frames), then a
    // hard cut to a street shot (45 frames): 257 frames at 25 fps; the dissolve is 112..132
    let norm = "scale=640:360:force_original_aspect_ratio=increase,crop=640:360,fps=25,\
                setsar=1,format=yuv420p";
    let graph = format!(
        "[0:v]{norm},trim=end_frame=132,setpts=PTS-STARTPTS[a];\
         [1:v]{norm},trim=end_frame=100,setpts=PTS-STARTPTS[b];\
         [2:v]{norm},trim=start_frame=32:end_frame=77,setpts=PTS-STARTPTS[c];\
         [a][b]xfade=transition=fade:duration=0.8:offset=4.48[ab];\
         [ab][c]concat=n=2:v=1:a=0,settb=1/25,setpts=N[v]"
    );
    let o = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y"])
        .args(["-i", footage.join("bigbuckbunny.mp4").to_str().unwrap()])
        .args([
            "-i",
            footage.join("carphone_pristine.mp4").to_str().unwrap(),
        ])
        .args(["-i", footage.join("bikes.mp4").to_str().unwrap()])
        .args(["-filter_complex", &graph, "-map", "[v]"])
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-g", "50",
        ])
        .arg(&clip)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(video_frames(&clip), 257);
    let (dissolve, hard) = ((112u64, 132u64), 212u64);

    let data = common::data_with_weights(&dir.path().join("data"));
    let m = media();
    let plan_path = dir.path().join("plan.json");
    let out = dir.path().join("out.mp4");
    let args: Vec<String> = [
        "submit",
        "montage",
        clip.to_str().unwrap(),
        "--music",
        m.song.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--length",
        "6",
        "--start",
        "2",
        "--size",
        "320x180",
        "--fps",
        "25",
        "--seed",
        "3",
        "--plan",
        plan_path.to_str().unwrap(),
        "-q",
    ]
    .map(String::from)
    .to_vec();
    let o = run(&data, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let plan: Value = serde_json::from_slice(&std::fs::read(&plan_path).unwrap()).unwrap();
    // the analysis ran the cascade: its list, from the cache, names the dissolve and its span
    let json = dir.path().join("scenes.json");
    let o = rendermesh(
        &data,
        &[
            "submit",
            "scenes",
            clip.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
            "-q",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("answered from cache"), "{}", stdout(&o));
    let list: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let t = list["transitions"].as_array().unwrap();
    assert_eq!(t.len(), 1, "one gradual transition: {list}");
    assert_eq!(t[0]["kind"], "dissolve", "{list}");
    let (a, b) = (
        t[0]["first_frame"].as_u64().unwrap(),
        t[0]["end_frame"].as_u64().unwrap(),
    );
    assert!(
        a <= dissolve.0 + 4 && b + 4 >= dissolve.1 && b > a + 8,
        "span {a}..{b}, made as {dissolve:?}"
    );
    let cuts: Vec<u64> = serde_json::from_value(list["cuts"].clone()).unwrap();
    assert!(cuts.iter().any(|c| c.abs_diff(hard) <= 1), "{cuts:?}");
    // no shot shows a frame of the dissolve as made; one starts soon after it
    let mut after = false;
    for (_, frames, _, src_start) in segments(&plan) {
        // source frames at 25 fps, the plan counts at the output rate, also 25
        let (x, y) = (src_start, src_start + frames);
        assert!(
            y <= dissolve.0 || x >= dissolve.1,
            "a shot over source frames {x}..{y} shows the dissolve {dissolve:?}: {plan}"
        );
        after |= x >= dissolve.1 && x < dissolve.1 + 25;
    }
    assert!(
        after,
        "no shot starts within a second after the dissolve: {plan}"
    );
}
