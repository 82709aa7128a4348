//! The plan as timelines an editor opens: OpenTimelineIO ([`otio`]), CMX 3600 EDL ([`edl`])
//! and FCPXML 1.9 ([`fcpxml`]).
//!
//! All three describe exactly the rendered cut: one video clip per plan segment, in order,
//! each taking `frames` frames from `src_start` of its source and placed at `out_start`, all
//! counted in frames at the plan's output rate; and the song under the whole cut from
//! `music.start_s` (rounded to the nearest output frame). Everything is pure string
//! building; writing the files is the caller's job.
//!
//! The functions describe any plan they are given; a plan that passed
//! [`MontagePlan::validate`] gives a timeline an editor opens as it is. Paths in a plan are
//! absolute, so each becomes a `file://` URL as is.

// The montage command calls these; the binary does not use every one in each build.

mod edl;
mod fcpxml;
mod otio;

pub use {edl::edl, fcpxml::fcpxml, otio::otio};

use std::path::Path;

use rendermesh_protocol::media::Rational;
use rendermesh_protocol::montage::MontagePlan;

/// A `file://` URL of an absolute path: every byte other than ASCII letters, digits,
/// `-._~` and `/` is percent-encoded (spaces, `&`, `%`, non-ASCII as UTF-8 bytes), the way
/// Python's `pathlib.Path.as_uri()` writes it.
fn file_url(path: &Path) -> String {
    let mut url = String::from("file://");
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            url.push(char::from(b));
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url
}

/// The file name of `path` (the whole path when it has none), on one line.
fn file_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_string_lossy().into_owned());
    one_line(&name)
}

/// Replaces line breaks and other control characters with spaces, so `text` stays on one
/// line (and inside what XML 1.0 allows).
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A rate as a positive `f64`, or `None` when it is zero, negative or not finite.
fn positive_rate(rate: Rational) -> Option<f64> {
    let r = rate.as_f64();
    (r.is_finite() && r > 0.0).then_some(r)
}

/// `seconds` in whole frames at `fps`, rounded to the nearest; 0 for a negative or
/// non-finite time or an unusable rate.
fn seconds_to_frames(seconds: f64, fps: Rational) -> u64 {
    let frames = positive_rate(fps).map_or(0.0, |r| (seconds * r).round());
    if frames.is_finite() && frames > 0.0 {
        // `as` saturates at u64::MAX.
        frames as u64
    } else {
        0
    }
}

/// First frame of the song under the cut, in frames at the output rate.
fn music_start(plan: &MontagePlan) -> u64 {
    seconds_to_frames(plan.music.start_s, plan.fps)
}

/// The whole song's length in frames at the output rate.
fn music_frames(plan: &MontagePlan) -> u64 {
    seconds_to_frames(plan.music.duration_s, plan.fps)
}

#[cfg(test)]
pub(super) mod sample {
    //! Plans to export in the tests.

    use rendermesh_protocol::media::Rational;
    use rendermesh_protocol::montage::{
        MontagePlan, PlanMusic, PlanSegment, PlanSource, PLAN_VERSION,
    };

    /// Segment lengths of the sample plans: they sum to 1980 frames.
    pub const LENGTHS: [u64; 4] = [90, 1799, 31, 60];

    /// A valid plan at `fps`: three sources (25 fps with a space and an `&` in its path,
    /// 29.97 fps with non-ASCII, 60 fps with `<`, `>` and quotes) used by four segments.
    pub fn plan(fps: Rational) -> MontagePlan {
        let source = |path: &str, rate: Rational, has_audio: bool| PlanSource {
            path: path.into(),
            id: format!("{:x}", path.len() * 4099),
            width: 1920,
            height: 1080,
            rotation: 0,
            fps: rate,
            frames: (120.0 * rate.as_f64()).round() as u64,
            duration_s: 120.0,
            has_audio,
            cuts: vec![],
        };
        let picks = [(0, 0), (1, 120), (0, 1000), (2, 15)];
        let mut at = 0;
        let segments = LENGTHS
            .iter()
            .zip(picks)
            .map(|(&frames, (source, src_start))| {
                let seg = PlanSegment {
                    out_start: at,
                    frames,
                    source,
                    src_start,
                    scene: 0,
                    on_downbeat: true,
                    section: 0,
                    score: 0.5,
                };
                at += frames;
                seg
            })
            .collect();
        MontagePlan {
            version: PLAN_VERSION,
            width: 1280,
            height: 720,
            fps,
            frames: at,
            seed: 7,
            pace: "auto".into(),
            music: PlanMusic {
                path: "/media/music/Song & Dance.flac".into(),
                id: "cd34".into(),
                start_s: 12.5,
                duration_s: 200.25,
                tempo_bpm: 120.0,
            },
            sources: vec![
                source(
                    "/media/clips/Beach Day & Night.mp4",
                    Rational::new(25, 1),
                    true,
                ),
                source(
                    "/media/clips/Café/été.mov",
                    Rational::new(30000, 1001),
                    false,
                ),
                source("/media/clips/a<b>\"c\".mkv", Rational::new(60, 1), true),
            ],
            segments,
            notes: vec![],
        }
    }

    /// The sample plan at 30000/1001 fps.
    pub fn ntsc() -> MontagePlan {
        plan(Rational::new(30000, 1001))
    }

    /// The sample plan at 25 fps.
    pub fn pal() -> MontagePlan {
        plan(Rational::new(25, 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls_are_percent_encoded() {
        assert_eq!(
            file_url(Path::new("/media/clips/Beach Day & Night.mp4")),
            "file:///media/clips/Beach%20Day%20%26%20Night.mp4"
        );
        assert_eq!(
            file_url(Path::new("/a/Café/100%_~x-y.mov")),
            "file:///a/Caf%C3%A9/100%25_~x-y.mov"
        );
        assert_eq!(file_name(Path::new("/a/b\nc.mp4")), "b c.mp4");
        assert_eq!(file_name(Path::new("/")), "/");
    }

    #[test]
    fn seconds_round_to_output_frames() {
        let ntsc = Rational::new(30000, 1001);
        assert_eq!(seconds_to_frames(12.5, ntsc), 375);
        assert_eq!(seconds_to_frames(1.0, Rational::new(25, 1)), 25);
        assert_eq!(seconds_to_frames(-1.0, ntsc), 0);
        assert_eq!(seconds_to_frames(f64::NAN, ntsc), 0);
        assert_eq!(seconds_to_frames(5.0, Rational::new(1, 0)), 0);
        assert_eq!(sample::ntsc().validate(), Ok(()));
        assert_eq!(sample::pal().validate(), Ok(()));
    }

    /// Runs the reference check (tests/timeline_check.py, with the `opentimelineio` venv
    /// that tests/deps.sh makes) on a plan and three timeline texts written into `dir`.
    fn reference_check(dir: &Path, plan: &MontagePlan, files: [&str; 3]) -> (bool, String) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let python = root.join("target/py-otio/bin/python");
        assert!(
            python.exists(),
            "{} is missing: tests/deps.sh makes it",
            python.display()
        );
        let names = ["plan.json", "cut.otio", "cut.edl", "cut.fcpxml"];
        let plan_json = serde_json::to_string_pretty(plan).expect("plan JSON");
        for (name, text) in names
            .iter()
            .zip([plan_json.as_str()].into_iter().chain(files))
        {
            std::fs::write(dir.join(name), text).expect("write sample");
        }
        let out = std::process::Command::new(python)
            .arg(root.join("tests/timeline_check.py"))
            .args(names.iter().map(|n| dir.join(n)))
            .output()
            .expect("run python");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }

    /// The reference library reads the exports as the plan; a corrupted duration in any
    /// of them fails the check. Writes its files into `$TIMELINE_SAMPLE_DIR` (default: a
    /// folder in the temp dir) and leaves the good ones there.
    #[test]
    fn reference_library_reads_the_exports() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = std::env::var_os("TIMELINE_SAMPLE_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| tmp.path().to_path_buf());
        for (tag, plan) in [("ntsc", sample::ntsc()), ("pal", sample::pal())] {
            let dir = base.join(tag);
            std::fs::create_dir_all(&dir).expect("sample dir");
            let (o, e, f) = (
                otio(&plan, "Sample"),
                edl(&plan, "Sample"),
                fcpxml(&plan, "Sample"),
            );

            // One frame more in the second clip of the OTIO file.
            let mut doc: serde_json::Value = serde_json::from_str(&o).expect("otio JSON");
            let dur = &mut doc["tracks"]["children"][0]["children"][1]["source_range"]["duration"];
            dur["value"] = serde_json::json!(dur["value"].as_f64().expect("value") + 1.0);
            let bad_o = serde_json::to_string(&doc).expect("otio JSON");
            // One frame less (or more) on the second event's record out.
            let bad_e: String = e
                .lines()
                .map(|l| match (l.starts_with("002 "), l.len().checked_sub(2)) {
                    (true, Some(cut)) if &l[cut..] == "00" => format!("{}01\n", &l[..cut]),
                    (true, Some(cut)) => {
                        let ff: u32 = l[cut..].parse().expect("frames field");
                        format!("{}{:02}\n", &l[..cut], ff - 1)
                    }
                    _ => format!("{l}\n"),
                })
                .collect();
            // One second for the second spine clip.
            let at = f
                .match_indices("<asset-clip ref=")
                .nth(2)
                .expect("2nd spine clip")
                .0;
            let d = at + f[at..].find("duration=\"").expect("duration") + 10;
            let end = d + f[d..].find('"').expect("quote");
            let bad_f = format!("{}1s{}", &f[..d], &f[end..]);

            for (what, files) in [
                ("otio", [bad_o.as_str(), &e, &f]),
                ("edl", [&o, &bad_e, &f]),
                ("fcpxml", [&o, &e, &bad_f]),
            ] {
                let (ok, text) = reference_check(&dir, &plan, files);
                assert!(!ok, "{tag}: a corrupted {what} passed: {text}");
                assert!(
                    text.contains("timeline check failed"),
                    "{tag} {what}: {text}"
                );
                eprintln!("{tag}, corrupted {what}: {}", text.trim());
            }
            let (ok, text) = reference_check(&dir, &plan, [&o, &e, &f]);
            assert!(ok, "{tag}: {text}");
            assert_eq!(
                text.trim(),
                format!("timeline ok: 4 clips, {} frames", plan.frames)
            );
            eprintln!("{tag}: {} ({})", text.trim(), dir.display());
        }
    }
}
