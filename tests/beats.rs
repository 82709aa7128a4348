//! Beat tracking through the real binary: metronomes made here with known beats (clicks and
//! kick drums at 60, 128 and 190 BPM, a tempo step, bars of 3 and 4), silence and bad input;
//! the songs of Debian's `fretsonfire-songs-sectoid` against the beat grids of their charts;
//! a grid answered from a peer's replica with no decode.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::audio::{
    chart_offset, decode, errors, f_measure, metronome, midi_grid, write_pcm, write_wav, Voice,
};
use common::mesh::{last_job, three};
use common::*;

fn beats_of(json: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap()
}

fn times(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_f64().unwrap())
        .collect()
}

/// `submit beats` of `inputs` in-process (a mesh of one) with `--json DIR/{name}.json`;
/// returns the grid of each input.
fn submit(dir: &Path, inputs: &[PathBuf]) -> Vec<serde_json::Value> {
    let mut args = vec!["submit".to_string(), "beats".to_string()];
    args.extend(inputs.iter().map(|p| p.display().to_string()));
    let json = dir.join("{name}.json");
    args.extend(["--json", json.to_str().unwrap(), "--local", "-q"].map(String::from));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = rendermesh(&dir.join("data"), &refs);
    assert!(o.status.success(), "{}", stderr(&o));
    inputs
        .iter()
        .map(|p| {
            let stem = p.file_stem().unwrap().to_string_lossy();
            let out = if inputs.len() > 1 {
                dir.join(format!("{stem}.json"))
            } else {
                json.clone()
            };
            beats_of(&out)
        })
        .collect()
}

fn wav(
    dir: &Path,
    name: &str,
    parts: &[(f64, f64)],
    meter: usize,
    voice: Voice,
) -> (PathBuf, Vec<(f64, bool)>) {
    let (x, beats) = metronome(parts, meter, voice, 0.5);
    let path = dir.join(format!("{name}.wav"));
    write_wav(&path, &x);
    (path, beats)
}

#[test]
fn metronomes_at_60_128_and_190_bpm_give_every_beat_within_10_ms_and_the_tempo_within_1_percent() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cases = Vec::new();
    for bpm in [60.0, 128.0, 190.0] {
        for (voice, tag) in [(Voice::Click, "click"), (Voice::Kick, "kick")] {
            let (path, truth) = wav(tmp.path(), &format!("{tag}{bpm}"), &[(bpm, 30.0)], 4, voice);
            cases.push((bpm, path, truth));
        }
    }
    let inputs: Vec<PathBuf> = cases.iter().map(|c| c.1.clone()).collect();
    let grids = submit(tmp.path(), &inputs);
    for ((bpm, path, truth), g) in cases.iter().zip(&grids) {
        let name = path.file_name().unwrap().to_string_lossy();
        let beats = times(&g["beats"]);
        let want: Vec<f64> = truth.iter().map(|b| b.0).collect();
        assert_eq!(beats.len(), want.len(), "{name}: {g}");
        let worst = errors(&beats, &want)
            .into_iter()
            .map(f64::abs)
            .fold(0.0, f64::max);
        assert!(
            worst <= 0.010,
            "{name}: a beat {:.1} ms off",
            worst * 1000.0
        );
        let tempo = g["tempo_bpm"].as_f64().unwrap();
        assert!((tempo / bpm - 1.0).abs() < 0.01, "{name}: {tempo} BPM");
        assert_eq!(g["meter"], 4, "{name}");
        let bars: Vec<f64> = truth.iter().filter(|b| b.1).map(|b| b.0).collect();
        let downs = times(&g["downbeats"]);
        assert_eq!(downs.len(), bars.len(), "{name}: {downs:?}");
        assert!(
            f_measure(&downs, &bars, 0.010) == 1.0,
            "{name}: downbeats {downs:?}, bars at {bars:?}"
        );
        assert_eq!(g["beat_loudness"].as_array().unwrap().len(), beats.len());
        assert_eq!(g["beat_onset"].as_array().unwrap().len(), beats.len());
        assert!(g.get("note").is_none(), "{name}: {g}");
    }
}

#[test]
fn the_grid_follows_a_tempo_step_from_100_to_140_bpm() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, truth) = wav(
        tmp.path(),
        "step",
        &[(100.0, 24.0), (140.0, 24.0)],
        4,
        Voice::Kick,
    );
    let g = &submit(tmp.path(), &[path])[0];
    let beats = times(&g["beats"]);
    let want: Vec<f64> = truth.iter().map(|b| b.0).collect();
    assert_eq!(beats.len(), want.len(), "{g}");
    let errs = errors(&beats, &want);
    let worst = errs.iter().copied().map(f64::abs).fold(0.0, f64::max);
    assert!(
        worst <= 0.010,
        "a beat {:.1} ms off: {errs:?}",
        worst * 1000.0
    );
    // the tempo of each half, from the grid's own gaps
    let gap = |from: f64, to: f64| {
        let b: Vec<f64> = beats
            .iter()
            .copied()
            .filter(|t| (from..to).contains(t))
            .collect();
        (b[b.len() - 1] - b[0]) / (b.len() - 1) as f64
    };
    assert!((60.0 / gap(2.0, 22.0) - 100.0).abs() < 1.0);
    assert!((60.0 / gap(27.0, 46.0) - 140.0).abs() < 1.4);
}

#[test]
fn bars_of_three_and_of_four_get_their_meter_and_downbeats() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        wav(tmp.path(), "waltz-clicks", &[(90.0, 30.0)], 3, Voice::Click),
        wav(tmp.path(), "waltz-kicks", &[(150.0, 30.0)], 3, Voice::Kick),
        wav(tmp.path(), "four-clicks", &[(120.0, 30.0)], 4, Voice::Click),
        wav(tmp.path(), "four-kicks", &[(100.0, 30.0)], 4, Voice::Kick),
    ];
    let inputs: Vec<PathBuf> = cases.iter().map(|c| c.0.clone()).collect();
    let grids = submit(tmp.path(), &inputs);
    for ((path, truth), g) in cases.iter().zip(&grids) {
        let name = path.file_name().unwrap().to_string_lossy();
        let meter = if name.starts_with("waltz") { 3 } else { 4 };
        assert_eq!(g["meter"], meter, "{name}: {g}");
        let bars: Vec<f64> = truth.iter().filter(|b| b.1).map(|b| b.0).collect();
        let downs = times(&g["downbeats"]);
        assert_eq!(
            f_measure(&downs, &bars, 0.010),
            1.0,
            "{name}: {downs:?} vs {bars:?}"
        );
    }
    // the CSV of the waltz (answered from the cache): a row per beat, bars counted in threes
    let csv = tmp.path().join("waltz.csv");
    let o = rendermesh(
        &tmp.path().join("data"),
        &[
            "submit",
            "beats",
            inputs[0].to_str().unwrap(),
            "--csv",
            csv.to_str().unwrap(),
            "--local",
            "-q",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(
        text.lines().next(),
        Some("time_s,is_downbeat,bar,beat_in_bar,loudness,onset")
    );
    assert_eq!(rows.len(), cases[0].1.len());
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r[1], if i % 3 == 0 { "1" } else { "0" }, "row {i}: {r:?}");
        assert_eq!(r[2], (i / 3 + 1).to_string(), "row {i}: {r:?}");
        assert_eq!(r[3], (i % 3 + 1).to_string(), "row {i}: {r:?}");
    }
}

#[test]
fn silence_a_short_clip_and_bad_input_get_one_clear_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let silent = tmp.path().join("silence.wav");
    write_wav(&silent, &vec![0.0; 44_100 * 10]);
    let (short, _) = wav(tmp.path(), "short", &[(120.0, 1.5)], 4, Voice::Click);
    let grids = submit(tmp.path(), &[silent.clone(), short.clone()]);
    for (g, word) in grids.iter().zip(["silent", "too short"]) {
        assert!(g["beats"].as_array().unwrap().is_empty(), "{g}");
        assert_eq!(g["tempo_bpm"], 0.0);
        let note = g["note"].as_str().unwrap_or_default();
        assert!(note.contains(word), "{note}");
    }
    let o = rendermesh(
        &tmp.path().join("data"),
        &["submit", "beats", silent.to_str().unwrap(), "--local", "-q"],
    );
    assert!(
        stdout(&o).contains("no beats: the audio is silent"),
        "{}",
        stdout(&o)
    );

    // not media, a video without sound, a missing file: one line naming the file, no panic
    let text = tmp.path().join("notes.txt");
    std::fs::write(&text, "not a song\n".repeat(100)).unwrap();
    let mute = small_clip(tmp.path(), "mute.mp4", 1, &["-an"]);
    // (ffmpeg reads a .txt file as a picture of text: it has no sound)
    for (file, cause) in [
        (text.clone(), "no audio stream"),
        (mute.clone(), "no audio stream"),
        (tmp.path().join("gone.wav"), "no such file"),
    ] {
        let o = rendermesh(
            &tmp.path().join("data"),
            &["submit", "beats", file.to_str().unwrap(), "--local", "-q"],
        );
        let err = stderr(&o);
        assert!(!o.status.success());
        assert!(
            err.contains(cause) && err.contains(file.file_name().unwrap().to_str().unwrap()),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    // a tempo range that cannot hold a beat and its double
    let o = rendermesh(
        &tmp.path().join("data"),
        &[
            "submit",
            "beats",
            short.to_str().unwrap(),
            "--min-bpm",
            "100",
            "--max-bpm",
            "120",
            "--local",
        ],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("too narrow"), "{}", stderr(&o));
}

#[test]
fn a_video_is_tracked_from_its_sound() {
    let tmp = tempfile::tempdir().unwrap();
    let (song, truth) = wav(tmp.path(), "song", &[(128.0, 20.0)], 4, Voice::Kick);
    let video = tmp.path().join("clip.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=320x240:r=25:d=21",
        "-i",
        song.to_str().unwrap(),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "aac",
        "-b:a",
        "128k",
        "-shortest",
        video.to_str().unwrap(),
    ]);
    let g = &submit(tmp.path(), &[video])[0];
    let want: Vec<f64> = truth.iter().map(|b| b.0).collect();
    // AAC adds its own delay; the grid must still hold every beat within 20 ms
    let f = f_measure(&times(&g["beats"]), &want, 0.020);
    assert!(f >= 0.95, "F {f}: {g}");
    assert!(
        (g["tempo_bpm"].as_f64().unwrap() - 128.0).abs() < 1.3,
        "{g}"
    );
}

/// The songs of Debian's fretsonfire-songs-sectoid: (folder, chart tempo).
const SONGS: [(&str, f64); 4] = [
    ("Escape from chaosland", 135.0),
    ("Feelings", 95.0),
    ("Metal madness", 150.0),
    ("War of freedom", 140.0),
];
const SONG_DIR: &str = "/usr/share/games/fretsonfire/data/songs/sectoid";

#[test]
fn real_songs_match_the_beat_grids_of_their_charts() {
    let dir = Path::new(SONG_DIR);
    assert!(
        dir.is_dir(),
        "{SONG_DIR} is missing: tests/deps.sh installs Debian's fretsonfire-songs-sectoid"
    );
    let tmp = tempfile::tempdir().unwrap();
    // the song as a listener hears it: backing and guitar stems mixed
    let mut mixes = Vec::new();
    for (name, _) in SONGS {
        let out = tmp.path().join(format!("{}.flac", name.replace(' ', "-")));
        let folder = dir.join(name);
        ffmpeg(&[
            "-i",
            folder.join("song.ogg").to_str().unwrap(),
            "-i",
            folder.join("guitar.ogg").to_str().unwrap(),
            "-filter_complex",
            "amix=inputs=2:normalize=0",
            "-ac",
            "1",
            out.to_str().unwrap(),
        ]);
        mixes.push(out);
    }
    let grids = submit(tmp.path(), &mixes);
    let mut lines = Vec::new();
    let mut failed = Vec::new();
    for (((name, bpm), mix), g) in SONGS.iter().zip(&mixes).zip(&grids) {
        let duration = g["duration_s"].as_f64().unwrap();
        let (chart, chart_bars) = midi_grid(&dir.join(name).join("notes.mid"), duration);
        // the charts sit a constant few tens of ms before the audio's own onsets; measured
        // here from the audio's energy, independently of the tracker, within ±80 ms
        let offset = chart_offset(&decode(mix, 24_000), 24_000, &chart, 0.08);
        let shift = |v: &[f64]| v.iter().map(|t| t + offset).collect::<Vec<_>>();
        let (reference, bars) = (shift(&chart), shift(&chart_bars));
        let beats = times(&g["beats"]);
        let downs = times(&g["downbeats"]);
        let f = f_measure(&beats, &reference, 0.07);
        let fd = f_measure(&downs, &bars, 0.07);
        let raw = f_measure(&beats, &chart, 0.07);
        let tempo = g["tempo_bpm"].as_f64().unwrap();
        lines.push(format!(
            "{name}: chart offset {:+.0} ms, F {f:.3} (against the raw chart {raw:.3}), downbeat F {fd:.3}, {tempo:.2} BPM (chart {bpm}), meter {}",
            offset * 1000.0,
            g["meter"]
        ));
        if f < 0.95 || fd < 0.9 || (tempo / bpm - 1.0).abs() > 0.01 || g["meter"] != 4 {
            failed.push(name);
        }
        assert!(
            offset.abs() < 0.075,
            "{name}: the chart is {offset} s off its audio"
        );
    }
    eprintln!("{}", lines.join("\n"));
    assert!(failed.is_empty(), "{failed:?}:\n{}", lines.join("\n"));
}

#[test]
fn a_second_request_on_another_node_is_answered_from_its_replica_without_decoding() {
    let tmp = tempfile::tempdir().unwrap();
    let nodes = three(tmp.path());
    let (song, _) = wav(tmp.path(), "song", &[(128.0, 20.0)], 4, Voice::Kick);
    let run = |node: &Daemon, input: &Path, json: &Path| {
        let o = rendermesh(
            &node.data_dir,
            &[
                "submit",
                "beats",
                input.to_str().unwrap(),
                "--json",
                json.to_str().unwrap(),
                "-q",
            ],
        );
        assert!(o.status.success(), "{}\n{}", stderr(&o), node.log());
        last_job(node)
    };
    let first = run(&nodes[0], &song, &tmp.path().join("a.json"));
    assert_eq!(first["from_cache"], false, "{first}");
    assert!(
        first["stats"]["decoded_frames"].as_u64().unwrap() > 0,
        "{first}"
    );
    let grid_a = beats_of(&tmp.path().join("a.json"));
    // b holds a copy of the file under another name; it waits for a's entry to arrive
    let copy = tmp.path().join("copy-on-b.wav");
    std::fs::copy(&song, &copy).unwrap();
    let has_grid = |n: &Daemon| {
        n.api_get("/v1/cache/entries")
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .any(|e| e["kind"] == "beat-grid")
    };
    wait_for(Duration::from_secs(10), || has_grid(&nodes[1]))
        .unwrap_or_else(|| panic!("b never received the grid: {}", nodes[1].log()));
    let second = run(&nodes[1], &copy, &tmp.path().join("b.json"));
    assert_eq!(second["from_cache"], true, "{second}");
    assert_eq!(second["stats"]["decoded_frames"], 0, "{second}");
    assert!(second["shards"].as_array().unwrap().is_empty(), "{second}");
    let grid_b = beats_of(&tmp.path().join("b.json"));
    assert_eq!(grid_a["beats"], grid_b["beats"]);
    assert_eq!(grid_b["file"], "copy-on-b.wav");
    no_panic(&nodes);
}

/// Run the binary with `args` to its end; its exit status and its own peak resident memory in
/// MiB (from `wait4`, so the processes of other tests running beside it do not count).
fn run_measured(data_dir: &Path, args: &[&str]) -> (i32, u64) {
    let child = std::process::Command::new(bin())
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("RENDERMESH_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("run rendermesh");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: wait4 writes only the status and the rusage it is given; `child` is not
    // waited for again.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4 failed");
    std::mem::forget(child);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (code, usage.ru_maxrss as u64 / 1024)
}

#[test]
fn a_three_hour_file_streams_in_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    // 3 h of 8-bit 8 kHz sound (86 MB), a click every half second (120 BPM)
    let rate = 8_000usize;
    let seconds = 3 * 3600;
    let mut data = vec![128u8; rate * seconds];
    for beat in 0..seconds * 2 {
        let start = beat * rate / 2;
        for k in 0..40 {
            let phase = (k % 8) as f32 / 8.0 * std::f32::consts::TAU;
            data[start + k] = (128.0 + 100.0 * phase.sin() * (1.0 - k as f32 / 40.0)) as u8;
        }
    }
    let path = tmp.path().join("long.wav");
    write_pcm(&path, &data, rate as u32, 8);
    drop(data);
    let json = tmp.path().join("long.json");
    let t = std::time::Instant::now();
    let (code, peak) = run_measured(
        &tmp.path().join("data"),
        &[
            "submit",
            "beats",
            path.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
            "--local",
            "-q",
        ],
    );
    let took = t.elapsed();
    assert_eq!(code, 0);
    let g = &beats_of(&json);
    eprintln!(
        "3 h of audio: {:.1} s, peak memory {peak} MiB",
        took.as_secs_f64()
    );
    assert!(
        (g["duration_s"].as_f64().unwrap() - 10_800.0).abs() < 1.0,
        "{}",
        g["duration_s"]
    );
    assert!(
        (g["tempo_bpm"].as_f64().unwrap() - 120.0).abs() < 1.2,
        "{}",
        g["tempo_bpm"]
    );
    let n = g["beats"].as_array().unwrap().len();
    assert!(n.abs_diff(21_600) <= 2, "{n} beats");
    // identical clicks: nothing marks bars, so common time
    assert_eq!(g["meter"], 4);
    // the samples alone at 24 kHz would be 1 GiB: the decode is streamed
    assert!(peak < 400, "peak {peak} MiB");
}

#[test]
fn a_change_of_sound_starts_a_section() {
    let tmp = tempfile::tempdir().unwrap();
    // 24 s of clicks, then 24 s of kick drums, at one tempo: one grid, two sections
    let (mut x, _) = metronome(&[(120.0, 24.0)], 4, Voice::Click, 0.5);
    x.truncate((24.5 * 44_100.0) as usize);
    let (kicks, _) = metronome(&[(120.0, 24.0)], 4, Voice::Kick, 0.0);
    x.extend(kicks);
    let path = tmp.path().join("two-parts.wav");
    write_wav(&path, &x);
    let g = &submit(tmp.path(), &[path])[0];
    let sections = times(&g["sections"]);
    assert_eq!(sections.len(), 2, "{sections:?}");
    assert!((sections[0] - 0.5).abs() < 0.02, "{sections:?}");
    assert!((sections[1] - 24.5).abs() < 0.02, "{sections:?}");
    let beats = times(&g["beats"]);
    assert!(beats.len().abs_diff(96) <= 1, "{} beats", beats.len());
}
