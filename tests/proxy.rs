//! Editing proxies on a real two-node mesh: frame count, frame rate, start timecode and audio
//! length of the sources kept, for H.264, ProRes and DNxHR; asking again on the other node is
//! answered from the cache (the proxies fetched by hash, nothing encoded).

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::mesh::{last_job, meet, start};
use common::{
    ffmpeg, ffprobe, keygen, rendermesh, stderr, stdout, stream_duration, video_frames, wait_for,
};

/// A source with a start timecode: `size` at `rate`, H.264 + AAC in QuickTime.
fn source(dir: &Path, name: &str, size: &str, rate: &str, tc: &str) -> PathBuf {
    let out = dir.join(name);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc2=size={size}:rate={rate}"),
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        "2",
        "-pix_fmt",
        "yuv420p",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-c:a",
        "aac",
        "-timecode",
        tc,
        out.to_str().unwrap(),
    ]);
    out
}

fn probe_value(file: &Path, sel: &str, entry: &str) -> String {
    ffprobe(
        &[
            "-select_streams",
            sel,
            "-show_entries",
            entry,
            "-of",
            "default=nw=1:nk=1",
        ],
        file,
    )
    .lines()
    .next()
    .unwrap_or_default()
    .trim()
    .to_string()
}

/// The start timecode ffprobe sees (a timecode track or a tag), if any.
fn timecode(file: &Path) -> Option<String> {
    let all = ffprobe(
        &[
            "-show_entries",
            "stream_tags=timecode:format_tags=timecode",
            "-of",
            "default=nw=1:nk=1",
        ],
        file,
    );
    all.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

fn proxy(data: &Path, inputs: &[PathBuf], out: &Path, codec: &str) -> std::process::Output {
    let mut args: Vec<String> = vec!["submit".into(), "proxy".into()];
    args.extend(inputs.iter().map(|p| p.display().to_string()));
    args.extend(
        [
            "-o",
            &format!("{}/", out.display()),
            "--codec",
            codec,
            "--height",
            "240",
            "-q",
        ]
        .map(String::from),
    );
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    rendermesh(data, &refs)
}

#[test]
fn proxies_keep_frames_rate_timecode_and_audio_and_a_second_request_elsewhere_costs_no_encode() {
    let tmp = tempfile::tempdir().unwrap();
    let media = tmp.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    let sources = vec![
        source(&media, "cam_a.mov", "640x360", "25", "01:02:03:04"),
        source(&media, "cam_b.mov", "480x360", "30000/1001", "10:00:00;00"),
    ];
    let key = keygen(tmp.path(), "swarm.key");
    let a = start(tmp.path(), "a", &key, &[]);
    let b = start(tmp.path(), "b", &key, &[a.mesh_addr()]);
    let nodes = vec![a, b];
    meet(&nodes);

    // (codec, extension, video codec ffprobe names, audio codec)
    let kinds = [
        ("h264", "mp4", "h264", "aac"),
        ("prores", "mov", "prores", "pcm_s16le"),
        ("dnxhr", "mov", "dnxhd", "pcm_s16le"),
    ];
    for (codec, ext, vname, aname) in kinds {
        let out = tmp.path().join(format!("on-a-{codec}"));
        let o = proxy(&nodes[0].data_dir, &sources, &out, codec);
        assert!(
            o.status.success(),
            "{codec}: {}\n{}",
            stdout(&o),
            stderr(&o)
        );
        for src in &sources {
            let stem = src.file_stem().unwrap().to_string_lossy();
            let p = out.join(format!("{stem}_proxy.{ext}"));
            assert_eq!(
                probe_value(&p, "v:0", "stream=codec_name"),
                vname,
                "{}",
                p.display()
            );
            assert_eq!(
                probe_value(&p, "v:0", "stream=height"),
                "240",
                "{}",
                p.display()
            );
            assert_eq!(video_frames(&p), video_frames(src), "{}", p.display());
            assert_eq!(
                probe_value(&p, "v:0", "stream=r_frame_rate"),
                probe_value(src, "v:0", "stream=r_frame_rate"),
                "{}",
                p.display()
            );
            assert_eq!(timecode(&p), timecode(src), "{}", p.display());
            assert!(timecode(src).is_some());
            assert_eq!(
                probe_value(&p, "a:0", "stream=codec_name"),
                aname,
                "{}",
                p.display()
            );
            let (sa, pa) = (stream_duration(src, "a:0"), stream_duration(&p, "a:0"));
            assert!(
                (sa - pa).abs() < 0.03,
                "{}: audio {pa:.3} s, source {sa:.3} s",
                p.display()
            );
        }
    }
    let jobs_on_a = nodes[0]
        .api_get("/v1/jobs")
        .unwrap()
        .as_array()
        .unwrap()
        .len();

    // b has the finished proxies in its replica of the cache…
    let file_outputs = |n: &common::Daemon| {
        n.api_get("/v1/cache/entries")
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter(|e| e["kind"] == "file-output")
            .count()
    };
    wait_for(Duration::from_secs(20), || file_outputs(&nodes[1]) >= 6)
        .unwrap_or_else(|| panic!("b never learnt of the proxies: {}", nodes[1].log()));
    // …so asking b for them again encodes nothing: the proxies come from a, byte for byte
    for (codec, ext, _, _) in kinds {
        let out = tmp.path().join(format!("on-b-{codec}"));
        let o = proxy(&nodes[1].data_dir, &sources, &out, codec);
        let said = stdout(&o);
        assert!(o.status.success(), "{codec}: {said}\n{}", stderr(&o));
        assert!(said.contains("2 done (2 from cache)"), "{said}");
        let job = last_job(&nodes[1]);
        assert!(
            job["shards"].as_array().unwrap().is_empty(),
            "b encoded: {job}"
        );
        assert_eq!(job["stats"]["encoded_frames"], 0, "{job}");
        for src in &sources {
            let stem = src.file_stem().unwrap().to_string_lossy();
            let name = format!("{stem}_proxy.{ext}");
            let first =
                std::fs::read(tmp.path().join(format!("on-a-{codec}")).join(&name)).unwrap();
            let again = std::fs::read(out.join(&name)).unwrap();
            assert!(first == again, "{name} differs");
        }
    }
    assert_eq!(
        nodes[0]
            .api_get("/v1/jobs")
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        jobs_on_a,
        "a was asked to run a job"
    );
    // a DNxHR frame below its smallest size is refused per file, at once
    let out = tmp.path().join("tiny");
    let o = rendermesh(
        &nodes[0].data_dir,
        &[
            "submit",
            "proxy",
            sources[0].to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--codec",
            "dnxhr",
            "--height",
            "64",
            "-q",
        ],
    );
    let said = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{said}");
    assert!(
        said.contains("DNxHR needs a frame of at least 256x120"),
        "{said}"
    );
    common::no_panic(&nodes);
}
