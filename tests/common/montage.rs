//! Media for the montage tests, made by the ffmpeg CLI: clips of three visually distinct
//! scenes each (known cut times) in mixed sizes and rates (a portrait phone clip, a variable
//! frame rate clip, a clip without audio, a full-range clip), and a kick-drum song of known
//! tempo that is quiet first and loud later.

use std::path::{Path, PathBuf};

use super::audio::{metronome, write_wav, Voice};
use super::ffmpeg;

/// Patterns the scenes are made of; each clip's scenes use three of them, hue-rotated by
/// 0, 120 and 240 degrees, so no two scenes of the set look alike.
const PATTERNS: [&str; 6] = [
    "testsrc2",
    "smptebars",
    "smptehdbars",
    "rgbtestsrc",
    "testsrc",
    "pal100bars",
];

/// One test clip: its file, its scene cut times (seconds from its first frame) and length.
#[derive(Clone, Debug)]
pub struct TestClip {
    pub path: PathBuf,
    pub cuts: Vec<f64>,
    pub secs: f64,
}

/// How one clip is made.
struct Spec {
    name: &'static str,
    w: u32,
    h: u32,
    /// Frame rate as ffmpeg takes it.
    rate: &'static str,
    scene_secs: [f64; 3],
    audio: bool,
    extra_in: &'static [&'static str],
    extra_out: &'static [&'static str],
    /// A filter applied after the scenes are joined (e.g. variable timestamps).
    post: &'static str,
}

const SPECS: [Spec; 6] = [
    Spec {
        name: "a-640x360-25.mp4",
        w: 640,
        h: 360,
        rate: "25",
        scene_secs: [3.0, 2.6, 3.4],
        audio: true,
        extra_in: &[],
        extra_out: &[],
        post: "",
    },
    Spec {
        name: "b-854x480-30.mp4",
        w: 854,
        h: 480,
        rate: "30",
        scene_secs: [2.8, 3.2, 3.0],
        audio: true,
        extra_in: &[],
        extra_out: &[],
        post: "",
    },
    Spec {
        name: "c-1280x720-60-silent.mp4",
        w: 1280,
        h: 720,
        rate: "60",
        scene_secs: [3.2, 2.8, 3.0],
        audio: false,
        extra_in: &[],
        extra_out: &[],
        post: "",
    },
    Spec {
        name: "d-phone-portrait-30.mp4",
        w: 640,
        h: 360,
        rate: "30",
        scene_secs: [3.0, 3.0, 3.0],
        audio: true,
        extra_in: &[],
        extra_out: &[],
        post: "",
    },
    Spec {
        // 30 fps for 4.5 s, then 15 fps
        name: "e-480x270-vfr.mkv",
        w: 480,
        h: 270,
        rate: "30",
        scene_secs: [3.0, 3.0, 3.0],
        audio: true,
        extra_in: &[],
        extra_out: &["-fps_mode", "passthrough"],
        post: ",select='lt(n\\,135)+eq(mod(n\\,2)\\,0)',setpts='if(lt(N\\,135)\\,N/30\\,4.5+(N-135)/15)/TB'",
    },
    Spec {
        name: "f-320x240-23.976-fullrange.mp4",
        w: 320,
        h: 240,
        rate: "24000/1001",
        scene_secs: [3.1, 2.9, 3.0],
        audio: true,
        extra_in: &[],
        extra_out: &["-color_range", "pc"],
        post: ",format=yuvj420p",
    },
];

/// The six clips in `dir`.
pub fn clips(dir: &Path) -> Vec<TestClip> {
    SPECS
        .iter()
        .enumerate()
        .map(|(i, s)| make(dir, i, s))
        .collect()
}

fn make(dir: &Path, index: usize, s: &Spec) -> TestClip {
    let out = dir.join(s.name);
    let mut args: Vec<String> = s.extra_in.iter().map(|a| a.to_string()).collect();
    let mut graph = String::new();
    for (k, secs) in s.scene_secs.iter().enumerate() {
        let pattern = PATTERNS[(index + 2 * k) % PATTERNS.len()];
        let sep = if pattern.contains('=') { ':' } else { '=' };
        args.extend([
            "-f".into(),
            "lavfi".into(),
            "-t".into(),
            format!("{secs}"),
            "-i".into(),
            format!("{pattern}{sep}s={}x{}:r={}", s.w, s.h, s.rate),
        ]);
        graph.push_str(&format!(
            "[{k}:v]hue=h={},setpts=PTS-STARTPTS,format=yuv420p,setsar=1[v{k}];",
            120 * k
        ));
    }
    graph.push_str(&format!("[v0][v1][v2]concat=n=3:v=1:a=0{}[v]", s.post));
    let total: f64 = s.scene_secs.iter().sum();
    if s.audio {
        args.extend(
            [
                "-f",
                "lavfi",
                "-t",
                &format!("{total}"),
                "-i",
                "sine=f=220:r=48000",
            ]
            .map(String::from),
        );
    }
    args.extend(["-filter_complex".into(), graph, "-map".into(), "[v]".into()]);
    if s.audio {
        args.extend(["-map", "3:a", "-c:a", "aac", "-b:a", "64k"].map(String::from));
    }
    args.extend(
        [
            "-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-g", "30",
        ]
        .map(String::from),
    );
    args.extend(s.extra_out.iter().map(|a| a.to_string()));
    args.push(out.to_str().unwrap().into());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    ffmpeg(&refs);
    if s.name.contains("portrait") {
        rotate_90(&out, s.h);
    }
    let cuts = vec![s.scene_secs[0], s.scene_secs[0] + s.scene_secs[1]];
    TestClip {
        path: out,
        cuts,
        secs: total,
    }
}

/// Mark the first track of an MP4 as shown rotated 90° clockwise, as phones do: the
/// display matrix of its track header becomes (0, 1, -1, 0) with the coded height as the
/// x translation.
fn rotate_90(path: &Path, coded_height: u32) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes
        .windows(4)
        .position(|w| w == b"tkhd")
        .expect("an mp4 track header");
    // version 0: 4 version/flags, 5×4 times and ids, 8 reserved, 4 layer/group, 4 volume
    let matrix = at + 4 + 4 + 20 + 8 + 4 + 4;
    let values: [i32; 9] = [
        0,
        0x10000,
        0,
        -0x10000,
        0,
        0,
        (coded_height as i32) << 16,
        0,
        0x4000_0000,
    ];
    for (i, v) in values.iter().enumerate() {
        bytes[matrix + 4 * i..matrix + 4 * i + 4].copy_from_slice(&v.to_be_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

/// Beat period of [`song`], and where its first beat is.
pub const SONG_BPM: f64 = 120.0;
pub const SONG_LEAD: f64 = 0.5;

/// A kick drum at 120 BPM in 4/4 for `secs` seconds: the first half quiet, the second
/// loud. Returns the WAV and the beat times.
pub fn song(dir: &Path, secs: f64) -> (PathBuf, Vec<f64>) {
    let (mut x, beats) = metronome(&[(SONG_BPM, secs)], 4, Voice::Kick, SONG_LEAD);
    let half = x.len() / 2;
    for s in &mut x[..half] {
        *s *= 0.3;
    }
    let path = dir.join("song.wav");
    write_wav(&path, &x);
    (path, beats.into_iter().map(|b| b.0).collect())
}
