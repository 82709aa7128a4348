//! Transcode through the shard path: frame-exact output, clean joins, audio muxed once.

use crate::common;

use common::*;

#[test]
fn open_gop_720p_transcode_is_frame_exact_with_clean_joins() {
    let tmp = tempfile::tempdir().unwrap();
    let src = clip_720p_open_gop(tmp.path(), 30);
    let out = tmp.path().join("out.mp4");
    let rep = tmp.path().join("report.json");
    let o = rendermesh(
        &tmp.path().join("data"),
        &[
            "submit",
            "transcode",
            src.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--preset",
            "veryfast",
            "--chunk-seconds",
            "5",
            "--report",
            rep.to_str().unwrap(),
            "-q",
        ],
    );
    assert!(o.status.success(), "transcode failed: {}", stderr(&o));
    assert!(
        stderr(&o).contains("mesh of one"),
        "should say it runs in-process: {}",
        stderr(&o)
    );

    // the job really was split: at least 4 shards, each run, frames adding up
    let r = report(&rep);
    let shards = r["status"]["shards"].as_array().unwrap();
    assert!(
        shards.len() >= 4,
        "expected >= 4 chunks, got {}",
        shards.len()
    );
    assert!(shards.iter().all(|s| s["state"] == "Done"));
    let per_shard: Vec<u64> = shards
        .iter()
        .map(|s| s["frames"].as_u64().unwrap())
        .collect();
    assert_eq!(per_shard.iter().sum::<u64>(), 900);

    // same frame count, duration within one frame, audio present and as long
    assert_eq!(video_frames(&src), 900);
    assert_eq!(video_frames(&out), 900);
    let (vs, vo) = (stream_duration(&src, "v:0"), stream_duration(&out, "v:0"));
    assert!(
        (vs - vo).abs() <= 1.0 / 30.0 + 1e-6,
        "video duration {vo} vs source {vs}"
    );
    let (as_, ao) = (stream_duration(&src, "a:0"), stream_duration(&out, "a:0"));
    assert!(ao > 29.0, "audio missing or short: {ao}");
    assert!((as_ - ao).abs() < 1e-3, "audio length {ao} vs source {as_}");

    // per-frame pts strictly increasing and equal to the source's: nothing missing or doubled
    let pts_out = frame_pts(&out);
    assert_eq!(pts_out.len(), 900);
    assert!(
        pts_out.windows(2).all(|w| w[0] < w[1]),
        "pts not strictly increasing"
    );
    assert_eq!(
        pts_out,
        frame_pts(&src),
        "output timeline differs from the source's"
    );

    // no duplicate frame at any join (the pattern moves every frame)
    let hashes = frame_hashes(&out);
    assert_eq!(hashes.len(), 900);
    let mut join = 0usize;
    for f in &per_shard[..per_shard.len() - 1] {
        join += *f as usize;
        assert_ne!(
            hashes[join - 1],
            hashes[join],
            "duplicate frame at the join before frame {join}"
        );
    }
    // and every frame is the right picture: a shifted or dropped frame would collapse PSNR
    let psnr = min_psnr(&out, &src);
    assert!(
        psnr > 30.0,
        "lowest per-frame PSNR {psnr:.1} dB: some frame is not its source frame"
    );
    // nothing left behind in the blob store
    let leftovers = std::fs::read_dir(tmp.path().join("data/cache/blobs/tmp"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn every_available_codec_is_frame_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let src = small_clip(tmp.path(), "small.mp4", 4, &[]);
    let data = tmp.path().join("data");
    for (codec, ext, preset) in [
        ("h264", "mp4", "veryfast"),
        ("h265", "mkv", "ultrafast"),
        ("vp9", "webm", "8"),
        ("av1", "mkv", "12"),
    ] {
        let out = tmp.path().join(format!("out-{codec}.{ext}"));
        let o = rendermesh(
            &data,
            &[
                "submit",
                "transcode",
                src.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
                "--codec",
                codec,
                "--crf",
                "30",
                "--preset",
                preset,
                "--chunk-seconds",
                "1",
                "-q",
            ],
        );
        // Debian's FFmpeg has all four: a build without one is a broken setup, not a skip
        assert!(o.status.success(), "{codec}: {}", stderr(&o));
        assert_eq!(video_frames(&out), 100, "{codec}: frame count");
        // every frame at its source frame's time, and the source frame's picture (the
        // pattern moves every frame: a shifted, doubled or dropped frame collapses PSNR)
        // (Matroska starts the video at the encoder's reorder delay, as FFmpeg's own
        // muxing does: under one frame, the same for every frame)
        let (t_out, t_src) = (frame_times(&out), frame_times(&src));
        assert_eq!(t_out.len(), t_src.len(), "{codec}: frame count");
        let start = t_out[0] - t_src[0];
        assert!(
            (0.0..0.04).contains(&start),
            "{codec}: starts {start} s after the source"
        );
        for (i, (a, b)) in t_out.iter().zip(&t_src).enumerate() {
            assert!(
                (a - start - b).abs() <= 0.001,
                "{codec}: frame {i} at {a} s, its source frame at {b} s"
            );
        }
        let psnr = min_psnr(&out, &src);
        assert!(psnr > 25.0, "{codec}: lowest per-frame PSNR {psnr:.1} dB");
        // audio: copied (AAC) where the container takes it, encoded once (Opus) for WebM
        let acodec = ffprobe(
            &[
                "-select_streams",
                "a:0",
                "-show_entries",
                "stream=codec_name",
                "-of",
                "csv=p=0",
            ],
            &out,
        );
        let want = if ext == "webm" { "opus" } else { "aac" };
        assert_eq!(acodec.trim(), want, "{codec}");
        let (a_src, a_out) = (stream_duration(&src, "a:0"), stream_duration(&out, "a:0"));
        assert!(
            (a_src - a_out).abs() < 0.05,
            "{codec}: audio {a_out}s vs source {a_src}s"
        );
    }
}

/// The same shard encodes to the same bytes whatever the memory under the encoder held
/// before. glibc's MALLOC_PERTURB_ fills every block it hands out with a different byte per
/// run, as a node that has run other jobs differs from a fresh process. x264's AVX-512
/// routines let such bytes steer its rate control (on a CPU with AVX-512, three runs gave
/// three different files), so one job's shards re-run or resumed on another node no longer
/// matched; held to AVX2, the encoder depends on its frames and options alone.
#[test]
fn an_h264_shard_encodes_to_the_same_bytes_whatever_memory_the_encoder_finds() {
    let tmp = tempfile::tempdir().unwrap();
    let src = small_clip(tmp.path(), "small.mp4", 2, &[]);
    let codec = ["--codec", "h264", "--preset", "medium", "--crf", "20"];
    assert_same_frames_whatever_memory(&src, "mp4", &codec, &["", "1", "77", "200"], 50);
}

/// Transcode `src` (into a file of extension `ext`, with `options`) once per MALLOC_PERTURB_
/// byte in `perturbs` ("" for none), each in a fresh process, and assert that every run
/// decodes to the same `frames` frames.
fn assert_same_frames_whatever_memory(
    src: &std::path::Path,
    ext: &str,
    options: &[&str],
    perturbs: &[&str],
    frames: usize,
) {
    let dir = src.parent().expect("a file in a directory");
    let mut digests = Vec::new();
    for &perturb in perturbs {
        let out = dir.join(format!("out-{perturb}.{ext}"));
        let data = dir.join(format!("data-{perturb}"));
        let args = transcode_args(src, &out, options);
        let o = rendermesh_env(&data, &[("MALLOC_PERTURB_", perturb)], &args);
        assert!(o.status.success(), "perturb {perturb:?}: {}", stderr(&o));
        let hashes = frame_hashes(&out);
        assert_eq!(hashes.len(), frames, "perturb {perturb:?}: frames hashed");
        digests.push((perturb, hashes));
    }
    for (perturb, d) in &digests[1..] {
        let first = d.iter().zip(&digests[0].1).position(|(a, b)| a != b);
        assert_eq!(
            first, None,
            "with MALLOC_PERTURB_={perturb} the encode differs from frame {first:?} on"
        );
    }
}

/// The frames that showed x265 reading memory it never wrote: 30 frames of a Game of Life
/// scene, 480x270, as the soak's second clip holds them (frames 210-239 after an H.264
/// encode of three scenes), stored lossless (FFV1) so the node decodes exactly these frames.
fn life_frames(dir: &std::path::Path) -> std::path::PathBuf {
    let scene = |src: &str| {
        format!("{src}s=480x270:r=30,trim=end_frame=90,setpts=PTS-STARTPTS,setsar=1,format=yuv420p")
    };
    let graph = format!(
        "{}[a];{}[b];{}[c];[a][b][c]concat=n=3:v=1:a=0[v]",
        scene("testsrc2=") + ",hue=h=60",
        scene("testsrc="),
        scene("life=ratio=0.3:seed=5:mold=8:"),
    );
    let scenes = dir.join("scenes.mp4");
    let out = dir.join("life.mkv");
    ffmpeg(&[
        "-filter_complex",
        &graph,
        "-map",
        "[v]",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "20",
        "-bf",
        "2",
        "-x264-params",
        "keyint=30:min-keyint=30:scenecut=0",
        "-fflags",
        "+bitexact",
        scenes.to_str().unwrap(),
    ]);
    ffmpeg(&[
        "-i",
        scenes.to_str().unwrap(),
        "-vf",
        "select=between(n\\,210\\,239),setpts=N/30/TB",
        "-c:v",
        "ffv1",
        out.to_str().unwrap(),
    ]);
    out
}

/// The same for x265: its weighted prediction reads rows of a weighted reference it has not
/// written yet, so with weights on, one 30-frame shard came out one way in a fresh process
/// and another under any MALLOC_PERTURB_ byte. Without weighted prediction it depends on its
/// frames and options alone.
#[test]
fn an_h265_shard_encodes_to_the_same_bytes_whatever_memory_the_encoder_finds() {
    let tmp = tempfile::tempdir().unwrap();
    let src = life_frames(tmp.path());
    let codec = ["--codec", "h265", "--preset", "slow", "--crf", "26"];
    assert_same_frames_whatever_memory(&src, "mkv", &codec, &["", "1"], 30);
}
