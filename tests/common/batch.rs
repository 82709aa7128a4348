//! Media for the batch tests: a library of small files in mixed codecs, sizes, frame rates
//! and containers, each with audio, plus a broken file and one that is not media.

use std::path::{Path, PathBuf};

use super::ffmpeg;

/// One generated source: (file name, size, rate, seconds, video codec args, audio args).
struct Spec {
    name: &'static str,
    size: &'static str,
    rate: &'static str,
    secs: &'static str,
    video: &'static [&'static str],
    audio: &'static [&'static str],
}

const SPECS: [Spec; 10] = [
    Spec {
        name: "a_h264.mp4",
        size: "320x240",
        rate: "25",
        secs: "3",
        video: &["-c:v", "libx264", "-preset", "veryfast", "-g", "25"],
        audio: &["-c:a", "aac"],
    },
    Spec {
        name: "b_mpeg4.mov",
        size: "640x360",
        rate: "30",
        secs: "2",
        video: &["-c:v", "mpeg4", "-q:v", "5"],
        audio: &["-c:a", "libmp3lame"],
    },
    Spec {
        name: "c_vp9.webm",
        size: "256x144",
        rate: "24",
        secs: "2",
        video: &[
            "-c:v",
            "libvpx-vp9",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-b:v",
            "200k",
        ],
        audio: &["-c:a", "libopus"],
    },
    Spec {
        name: "d_h264.mkv",
        size: "480x270",
        rate: "30000/1001",
        secs: "2",
        video: &["-c:v", "libx264", "-preset", "veryfast", "-bf", "3"],
        audio: &["-c:a", "flac"],
    },
    Spec {
        name: "e_mjpeg.avi",
        size: "352x288",
        rate: "15",
        secs: "2",
        video: &["-c:v", "mjpeg", "-q:v", "5"],
        audio: &["-c:a", "pcm_s16le"],
    },
    Spec {
        name: "f_h265.mp4",
        size: "320x180",
        rate: "50",
        secs: "2",
        video: &[
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-x265-params",
            "log-level=error",
            "-tag:v",
            "hvc1",
        ],
        audio: &["-c:a", "aac"],
    },
    Spec {
        name: "g_h264.mov",
        size: "400x224",
        rate: "60",
        secs: "1",
        video: &["-c:v", "libx264", "-preset", "ultrafast"],
        audio: &["-c:a", "aac"],
    },
    Spec {
        name: "h_mpeg2.ts",
        size: "320x240",
        rate: "25",
        secs: "2",
        video: &["-c:v", "mpeg2video", "-q:v", "5"],
        audio: &["-c:a", "mp2"],
    },
    Spec {
        name: "i_long.mp4",
        size: "320x240",
        rate: "25",
        secs: "8",
        video: &["-c:v", "libx264", "-preset", "veryfast", "-g", "25"],
        audio: &["-c:a", "aac"],
    },
    Spec {
        name: "j_odd.mp4",
        size: "322x242",
        rate: "12",
        secs: "3",
        video: &["-c:v", "libx264", "-preset", "veryfast"],
        audio: &["-c:a", "aac"],
    },
];

/// Make the ten good files in `dir` (sorted by name); the first is a short H.264 + AAC mp4.
pub fn library(dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    SPECS
        .iter()
        .map(|s| {
            let out = dir.join(s.name);
            let video = format!("testsrc2=size={}:rate={}", s.size, s.rate);
            let mut args: Vec<&str> = vec![
                "-f",
                "lavfi",
                "-i",
                &video,
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000",
                "-t",
                s.secs,
                "-pix_fmt",
                "yuv420p",
            ];
            args.extend_from_slice(s.video);
            args.extend_from_slice(s.audio);
            let path = out.to_str().unwrap().to_string();
            args.push(&path);
            ffmpeg(&args);
            out
        })
        .collect()
}

/// A broken file (an mp4 cut short: its index is gone) and a text file named like a video.
pub fn bad_files(dir: &Path, good: &Path) -> (PathBuf, PathBuf) {
    let broken = dir.join("k_broken.mp4");
    let bytes = std::fs::read(good).unwrap();
    std::fs::write(&broken, &bytes[..bytes.len() / 3]).unwrap();
    let text = dir.join("l_notes.mp4");
    std::fs::write(&text, "shot list: 1. sunrise 2. coffee\n").unwrap();
    (broken, text)
}
