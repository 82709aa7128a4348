//! Scene-list output formats.
//!
//! This module owns turning cut points into scenes and rendering a scene list
//! as text: PySceneDetect-compatible `list-scenes` CSV, a JSON document, and a
//! CMX 3600 EDL. Everything is pure string building; writing files is the
//! caller's job.

use std::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};

/// A scene as `[start, end)` frame indices (0-based, end exclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scene {
    /// First frame of the scene.
    pub start: u32,
    /// One past the last frame of the scene.
    pub end: u32,
}

/// Frame rate as a rational (e.g. 30000/1001).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fps {
    /// Numerator (frames).
    pub num: u32,
    /// Denominator (seconds).
    pub den: u32,
}

impl Fps {
    /// The rate in frames per second; 0.0 if `num` or `den` is zero.
    pub fn as_f64(self) -> f64 {
        if self.num == 0 || self.den == 0 {
            0.0
        } else {
            f64::from(self.num) / f64::from(self.den)
        }
    }

    /// Nominal integer rate used for SMPTE `HH:MM:SS:FF` timecodes: `round(fps)`, at least 1.
    pub fn nominal(self) -> u32 {
        // `as` saturates; the value is at most u32::MAX anyway.
        (self.as_f64().round() as u32).max(1)
    }
}

impl fmt::Display for Fps {
    /// Formats as `num/den`, e.g. `30000/1001`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.num, self.den)
    }
}

/// A gradual transition into the scene that starts at `cut`: how (`"dissolve"`, `"fade"`)
/// and the frames `[first, end)` it spans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gradual {
    pub cut: u32,
    pub kind: &'static str,
    pub first: u32,
    pub end: u32,
}

/// The gradual transition into `scene`, if the list has one at its start.
fn into(scene: &Scene, gradual: &[Gradual]) -> Option<Gradual> {
    gradual.iter().copied().find(|g| g.cut == scene.start)
}

/// Presentation time of `frame` in seconds (0.0 for an invalid rate).
///
/// `frame · den / num` rounded once to `f64` (exact while `frame · den < 2⁵³`),
/// which is what PySceneDetect 0.7 gets from a constant-rate stream's
/// PTS × time base.
fn seconds(frame: u32, fps: Fps) -> f64 {
    if fps.num == 0 || fps.den == 0 {
        return 0.0;
    }
    (u64::from(frame) * u64::from(fps.den)) as f64 / f64::from(fps.num)
}

/// Builds scenes from cut frame indices and the total frame count.
///
/// Cuts are expected ascending and within `1..total_frames`; any cut that is
/// not strictly after the previous one or not below `total_frames` is
/// ignored. No cuts gives one scene of all frames; zero frames gives no scenes.
pub fn scenes_from_cuts(cuts: &[u32], total_frames: u32) -> Vec<Scene> {
    let mut scenes = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for &cut in cuts {
        if cut > start && cut < total_frames {
            scenes.push(Scene { start, end: cut });
            start = cut;
        }
    }
    if total_frames > start {
        scenes.push(Scene {
            start,
            end: total_frames,
        });
    }
    scenes
}

/// Formats `frame` as `HH:MM:SS.mmm` (milliseconds rounded).
///
/// Mirrors PySceneDetect 0.7's `FrameTimecode.get_timecode()` for PTS-backed
/// times: the time is `frame · den / num` as an `f64`, the seconds field is
/// rounded to 3 decimals (ties to even on the binary value) and a rounded
/// `60.000` carries into the minutes. An invalid rate gives `00:00:00.000`.
pub fn timecode(frame: u32, fps: Fps) -> String {
    let secs = seconds(frame, fps);
    let mut hours = (secs / 3600.0).trunc();
    let rest = secs - hours * 3600.0;
    let mut minutes = (rest / 60.0).trunc();
    let rest = (rest - minutes * 60.0).max(0.0);
    let mut sec_field = format!("{rest:06.3}");
    if sec_field.starts_with("60") {
        sec_field = "00.000".to_owned();
        minutes += 1.0;
        if minutes >= 60.0 {
            minutes = 0.0;
            hours += 1.0;
        }
    }
    format!("{:02}:{:02}:{sec_field}", hours as u64, minutes as u64)
}

/// Formats `frame` as a non-drop SMPTE timecode `HH:MM:SS:FF` at the nominal rate.
fn smpte_timecode(frame: u32, fps: Fps) -> String {
    let rate = fps.nominal();
    let (secs, ff) = (frame / rate, frame % rate);
    format!(
        "{:02}:{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ff
    )
}

/// The header row of the `list-scenes` CSV.
const CSV_HEADER: &str = "Scene Number,Start Frame,Start Timecode,Start Time (seconds),\
End Frame,End Timecode,End Time (seconds),Length (frames),Length (timecode),Length (seconds)";

/// PySceneDetect 0.7 `list-scenes` CSV.
///
/// Line 1 is `Timecode List:` followed by one cell per cut (the start
/// timecodes of scenes 2..n); with no cuts PySceneDetect writes an empty line
/// here, and so does this. Line 2 is the header, then one row per scene:
/// 1-based scene number, Start Frame = `start + 1` (1-based), start timecode
/// and seconds, End Frame = `end` (the 1-based last frame), end timecode and
/// seconds (the time at which the scene ends, i.e. of 0-based frame `end`),
/// Length (frames) = `end - start`, and the length as timecode and seconds.
/// Timecodes are `HH:MM:SS.mmm`, seconds have 3 decimals, lines end in `\n`.
///
/// When the list has gradual transitions (`gradual`), every row has two more cells: how the
/// scene begins (`cut`, `dissolve` or `fade`; empty for the first) and the transition's
/// frames (0 for a cut). Without, the file is PySceneDetect's to the byte.
pub fn to_csv(scenes: &[Scene], gradual: &[Gradual], fps: Fps) -> String {
    let mut out = String::new();
    if scenes.len() > 1 {
        out.push_str("Timecode List:");
        for scene in &scenes[1..] {
            out.push(',');
            out.push_str(&timecode(scene.start, fps));
        }
    }
    out.push('\n');
    out.push_str(CSV_HEADER);
    if !gradual.is_empty() {
        out.push_str(",Transition In,Transition Frames");
    }
    out.push('\n');
    for (number, s) in (1u64..).zip(scenes) {
        let len = s.end.saturating_sub(s.start);
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "{number},{},{},{:.3},{},{},{:.3},{len},{},{:.3}",
            u64::from(s.start) + 1,
            timecode(s.start, fps),
            seconds(s.start, fps),
            s.end,
            timecode(s.end, fps),
            seconds(s.end, fps),
            timecode(len, fps),
            seconds(len, fps),
        );
        if !gradual.is_empty() {
            let _ = match (number, into(s, gradual)) {
                (1, _) => write!(out, ",,"),
                (_, Some(g)) => write!(out, ",{},{}", g.kind, g.end.saturating_sub(g.first)),
                (_, None) => write!(out, ",cut,0"),
            };
        }
        out.push('\n');
    }
    out
}

/// One scene in the JSON export.
#[derive(Serialize)]
struct JsonScene {
    index: usize,
    start_frame: u32,
    end_frame: u32,
    start_seconds: f64,
    end_seconds: f64,
    start_timecode: String,
    end_timecode: String,
    /// How the scene begins (none for the first).
    #[serde(skip_serializing_if = "Option::is_none")]
    transition_in: Option<JsonTransition>,
}

/// A boundary in the JSON export: a hard cut spans no frames.
#[derive(Serialize)]
struct JsonTransition {
    kind: &'static str,
    cut: u32,
    first_frame: u32,
    end_frame: u32,
    frames: u32,
}

impl JsonTransition {
    fn of(g: Gradual) -> Self {
        Self {
            kind: g.kind,
            cut: g.cut,
            first_frame: g.first,
            end_frame: g.end,
            frames: g.end.saturating_sub(g.first),
        }
    }

    fn cut(at: u32) -> Self {
        Self::of(Gradual {
            cut: at,
            kind: "cut",
            first: at,
            end: at,
        })
    }
}

/// The JSON export document.
#[derive(Serialize)]
struct JsonDoc<'a> {
    title: &'a str,
    fps: f64,
    fps_rational: String,
    frames: u32,
    cuts: Vec<u32>,
    /// The gradual transitions among the cuts.
    transitions: Vec<JsonTransition>,
    scenes: Vec<JsonScene>,
}

/// Pretty-printed JSON document describing the scene list.
///
/// Keys, in order: `title`, `fps` (`num / den` as a float), `fps_rational`
/// (`"num/den"`), `frames` (end of the last scene), `cuts` (start frames of
/// scenes 2..n) and `scenes`, each with a 1-based `index`, 0-based
/// `start_frame`, exclusive `end_frame`, `start_seconds`/`end_seconds`
/// (unrounded `frame / fps`) and `start_timecode`/`end_timecode`
/// (`HH:MM:SS.mmm`), and for every scene but the first `transition_in`: its `kind` (`cut`,
/// `dissolve`, `fade`), `cut`, the frames `[first_frame, end_frame)` it spans and their
/// number (`frames`, 0 for a cut). `transitions`, after `cuts`, lists the gradual ones.
pub fn to_json(scenes: &[Scene], gradual: &[Gradual], fps: Fps, title: &str) -> String {
    let doc = JsonDoc {
        title,
        fps: fps.as_f64(),
        fps_rational: fps.to_string(),
        frames: scenes.iter().map(|s| s.end).max().unwrap_or(0),
        cuts: scenes.iter().skip(1).map(|s| s.start).collect(),
        transitions: scenes
            .iter()
            .skip(1)
            .filter_map(|s| into(s, gradual))
            .map(JsonTransition::of)
            .collect(),
        scenes: scenes
            .iter()
            .enumerate()
            .map(|(i, s)| JsonScene {
                index: i + 1,
                start_frame: s.start,
                end_frame: s.end,
                start_seconds: seconds(s.start, fps),
                end_seconds: seconds(s.end, fps),
                start_timecode: timecode(s.start, fps),
                end_timecode: timecode(s.end, fps),
                transition_in: (i > 0).then(|| {
                    into(s, gradual).map_or(JsonTransition::cut(s.start), JsonTransition::of)
                }),
            })
            .collect(),
    };
    // Plain structs with string keys always serialise (non-finite floats become null).
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// Replaces line breaks and other control characters so `text` stays on one EDL line.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// CMX 3600 EDL with one cut event per scene.
///
/// Starts with `TITLE: <title>` and `FCM: NON-DROP FRAME`, then a blank line
/// and one event per scene, separated by blank lines:
///
/// ```text
/// 001  AX       V     C        00:00:00:00 00:00:02:10 00:00:00:00 00:00:02:10
/// * FROM CLIP NAME: <title>
/// ```
///
/// Source in/out are the scene's start and (exclusive) end frame and the record
/// in/out repeat them. Timecodes are `HH:MM:SS:FF` at the nominal integer rate
/// (`round(fps)`), counted in frames, without drop-frame compensation.
///
/// A scene that begins with a gradual transition (`gradual`) is a dissolve event: the scene
/// before ends where the transition starts, and the event is two lines of the same number,
/// the outgoing scene at that frame (`C`, no length) and the incoming one from there (`D`
/// with the transition's frames), then a comment naming a fade through black as such.
pub fn to_edl(scenes: &[Scene], gradual: &[Gradual], fps: Fps, title: &str) -> String {
    let title = one_line(title);
    let tc = |f: u32| smpte_timecode(f, fps);
    let mut out = format!("TITLE: {title}\nFCM: NON-DROP FRAME\n");
    for (k, (number, s)) in (1u64..).zip(scenes).enumerate() {
        // the scene ends where the next one's transition begins
        let end = scenes
            .get(k + 1)
            .and_then(|next| into(next, gradual))
            .map_or(s.end, |g| g.first.clamp(s.start, s.end));
        let g = into(s, gradual).filter(|_| k > 0);
        // …and this one begins there (never before the scene before it)
        let start = g.map_or(s.start, |g| g.first.clamp(scenes[k - 1].start, s.start));
        let (tc_in, tc_out) = (tc(start), tc(end));
        // Writing to a String cannot fail.
        let _ = match g {
            None => write!(
                out,
                "\n{number:03}  {:<8} {:<5} {:<8} {tc_in} {tc_out} {tc_in} {tc_out}\n",
                "AX", "V", "C"
            ),
            Some(g) => write!(
                out,
                "\n{number:03}  {:<8} {:<5} {:<8} {tc_in} {tc_in} {tc_in} {tc_in}\n\
                 {number:03}  {:<8} {:<5} {:<4} {:03} {tc_in} {tc_out} {tc_in} {tc_out}\n",
                "AX",
                "V",
                "C",
                "AX",
                "V",
                "D",
                g.end.saturating_sub(g.first).min(999),
            ),
        };
        let _ = writeln!(out, "* FROM CLIP NAME: {title}");
        if let Some(g) = g.filter(|g| g.kind != "dissolve") {
            let _ = writeln!(out, "* TRANSITION: {} THROUGH BLACK", g.kind.to_uppercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NTSC: Fps = Fps {
        num: 30000,
        den: 1001,
    };
    const PAL: Fps = Fps { num: 25, den: 1 };

    #[test]
    fn scenes_from_cuts_basic() {
        assert_eq!(
            scenes_from_cuts(&[], 300),
            vec![Scene { start: 0, end: 300 }]
        );
        assert_eq!(
            scenes_from_cuts(&[100, 250], 300),
            vec![
                Scene { start: 0, end: 100 },
                Scene {
                    start: 100,
                    end: 250
                },
                Scene {
                    start: 250,
                    end: 300
                },
            ]
        );
        // Out-of-range, zero, duplicate and descending cuts are ignored.
        assert_eq!(
            scenes_from_cuts(&[0, 10, 10, 5, 20, 300, 400], 300),
            vec![
                Scene { start: 0, end: 10 },
                Scene { start: 10, end: 20 },
                Scene {
                    start: 20,
                    end: 300
                },
            ]
        );
        assert!(scenes_from_cuts(&[], 0).is_empty());
    }

    #[test]
    fn timecodes() {
        assert_eq!(timecode(0, NTSC), "00:00:00.000");
        assert_eq!(timecode(90, NTSC), "00:00:03.003");
        assert_eq!(timecode(250, NTSC), "00:00:08.342");
        // 59.9996 s rounds to 60.000 and carries into the minutes (and hours).
        let fine = Fps {
            num: 100_000,
            den: 1,
        };
        assert_eq!(timecode(5_999_960, fine), "00:01:00.000");
        assert_eq!(timecode(359_999_960, fine), "01:00:00.000");
        assert_eq!(timecode(107_892, NTSC), "00:59:59.996");
        assert_eq!(timecode(1800, NTSC), "00:01:00.060");
        assert_eq!(timecode(90_000, PAL), "01:00:00.000");
        assert_eq!(timecode(1, Fps { num: 16, den: 1 }), "00:00:00.062");
        assert_eq!(timecode(u32::MAX, PAL), "47721:51:31.800");
        assert_eq!(timecode(42, Fps { num: 0, den: 1 }), "00:00:00.000");
    }

    fn parse_csv(csv: &str) -> Vec<Vec<String>> {
        csv.lines()
            .map(|l| l.split(',').map(str::to_owned).collect())
            .collect()
    }

    #[test]
    fn csv_layout_ntsc() {
        let scenes = scenes_from_cuts(&[90, 250], 400);
        let csv = to_csv(&scenes, &[], NTSC);
        assert!(csv.ends_with('\n'));
        let rows = parse_csv(&csv);
        assert_eq!(rows.len(), 2 + 3);
        assert_eq!(rows[0], ["Timecode List:", "00:00:03.003", "00:00:08.342"]);
        assert_eq!(
            rows[1],
            [
                "Scene Number",
                "Start Frame",
                "Start Timecode",
                "Start Time (seconds)",
                "End Frame",
                "End Timecode",
                "End Time (seconds)",
                "Length (frames)",
                "Length (timecode)",
                "Length (seconds)"
            ]
        );
        assert_eq!(
            rows[2],
            [
                "1",
                "1",
                "00:00:00.000",
                "0.000",
                "90",
                "00:00:03.003",
                "3.003",
                "90",
                "00:00:03.003",
                "3.003"
            ]
        );
        assert_eq!(
            rows[3],
            [
                "2",
                "91",
                "00:00:03.003",
                "3.003",
                "250",
                "00:00:08.342",
                "8.342",
                "160",
                "00:00:05.339",
                "5.339"
            ]
        );
        assert_eq!(
            rows[4],
            [
                "3",
                "251",
                "00:00:08.342",
                "8.342",
                "400",
                "00:00:13.347",
                "13.347",
                "150",
                "00:00:05.005",
                "5.005"
            ]
        );
    }

    #[test]
    fn csv_pal_and_no_cuts() {
        let csv = to_csv(&scenes_from_cuts(&[], 1500), &[], PAL);
        let rows = parse_csv(&csv);
        // PySceneDetect writes an empty cut-list row when there are no cuts.
        assert_eq!(rows[0], [""]);
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[2].join(","),
            "1,1,00:00:00.000,0.000,1500,00:01:00.000,60.000,1500,00:01:00.000,60.000"
        );
        let rows = parse_csv(&to_csv(&scenes_from_cuts(&[37], 100), &[], PAL));
        assert_eq!(rows[0], ["Timecode List:", "00:00:01.480"]);
        assert_eq!(rows[3][1], "38");
        assert_eq!(rows[3][3], "1.480");
        assert_eq!(rows[3][4], "100");
        assert_eq!(rows[3][6], "4.000");
        assert_eq!(rows[3][7], "63");
        assert_eq!(rows[3][9], "2.520");
    }

    #[test]
    fn json_round_trips() {
        let scenes = scenes_from_cuts(&[90, 250], 400);
        let text = to_json(&scenes, &[], NTSC, "clip \"one\"");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["title"], "clip \"one\"");
        assert_eq!(v["fps"].as_f64(), Some(30000.0 / 1001.0));
        assert_eq!(v["fps_rational"], "30000/1001");
        assert_eq!(v["frames"], 400);
        assert_eq!(v["cuts"], serde_json::json!([90, 250]));
        let list = v["scenes"].as_array().unwrap();
        assert_eq!(list.len(), 3);
        for (i, (js, s)) in list.iter().zip(&scenes).enumerate() {
            assert_eq!(js["index"].as_u64(), Some(i as u64 + 1));
            assert_eq!(js["start_frame"].as_u64(), Some(u64::from(s.start)));
            assert_eq!(js["end_frame"].as_u64(), Some(u64::from(s.end)));
            assert_eq!(js["start_seconds"].as_f64(), Some(seconds(s.start, NTSC)));
            assert_eq!(js["end_seconds"].as_f64(), Some(seconds(s.end, NTSC)));
            assert_eq!(js["start_timecode"], timecode(s.start, NTSC));
            assert_eq!(js["end_timecode"], timecode(s.end, NTSC));
        }
        assert_eq!(
            list[1]["end_seconds"].as_f64(),
            Some(250.0 * 1001.0 / 30000.0)
        );

        let empty: serde_json::Value = serde_json::from_str(&to_json(&[], &[], PAL, "")).unwrap();
        assert_eq!(empty["frames"], 0);
        assert_eq!(empty["fps"].as_f64(), Some(25.0));
        assert!(empty["scenes"].as_array().unwrap().is_empty());
    }

    const GRADUAL: [Gradual; 2] = [
        Gradual {
            cut: 100,
            kind: "dissolve",
            first: 94,
            end: 106,
        },
        Gradual {
            cut: 250,
            kind: "fade",
            first: 240,
            end: 262,
        },
    ];

    #[test]
    fn transitions_in_csv_json_and_edl() {
        let scenes = scenes_from_cuts(&[100, 180, 250], 400);
        let rows = parse_csv(&to_csv(&scenes, &GRADUAL, PAL));
        assert_eq!(rows[1][10..], ["Transition In", "Transition Frames"]);
        let tail: Vec<[&str; 2]> = rows[2..]
            .iter()
            .map(|r| [r[10].as_str(), r[11].as_str()])
            .collect();
        assert_eq!(
            tail,
            [["", ""], ["dissolve", "12"], ["cut", "0"], ["fade", "22"]]
        );
        // the first ten cells stay PySceneDetect's
        let plain = parse_csv(&to_csv(&scenes, &[], PAL));
        for (a, b) in rows[2..].iter().zip(&plain[2..]) {
            assert_eq!(a[..10], b[..]);
        }

        let v: serde_json::Value =
            serde_json::from_str(&to_json(&scenes, &GRADUAL, PAL, "t")).unwrap();
        let t = v["transitions"].as_array().unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(
            t[0],
            serde_json::json!({"kind": "dissolve", "cut": 100, "first_frame": 94,
                               "end_frame": 106, "frames": 12})
        );
        let s = v["scenes"].as_array().unwrap();
        assert!(s[0].get("transition_in").is_none());
        assert_eq!(s[2]["transition_in"]["kind"], "cut");
        assert_eq!(s[2]["transition_in"]["frames"], 0);
        assert_eq!(s[3]["transition_in"]["kind"], "fade");

        let edl = to_edl(&scenes, &GRADUAL, PAL, "t");
        let events: Vec<&str> = edl
            .lines()
            .filter(|l| l.as_bytes().first().is_some_and(u8::is_ascii_digit))
            .collect();
        assert_eq!(
            events,
            [
                "001  AX       V     C        00:00:00:00 00:00:03:19 00:00:00:00 00:00:03:19",
                "002  AX       V     C        00:00:03:19 00:00:03:19 00:00:03:19 00:00:03:19",
                "002  AX       V     D    012 00:00:03:19 00:00:07:05 00:00:03:19 00:00:07:05",
                "003  AX       V     C        00:00:07:05 00:00:09:15 00:00:07:05 00:00:09:15",
                "004  AX       V     C        00:00:09:15 00:00:09:15 00:00:09:15 00:00:09:15",
                "004  AX       V     D    022 00:00:09:15 00:00:16:00 00:00:09:15 00:00:16:00",
            ]
        );
        assert_eq!(edl.matches("* TRANSITION: FADE THROUGH BLACK").count(), 1);
        // without transitions, the same events as before
        assert!(!to_edl(&scenes, &[], PAL, "t").contains(" D "));
    }

    #[test]
    fn edl_events() {
        let scenes = scenes_from_cuts(&[70, 1800], 1850);
        let edl = to_edl(&scenes, &[], NTSC, "My Clip\nx");
        let lines: Vec<&str> = edl.lines().collect();
        assert_eq!(lines[0], "TITLE: My Clip x");
        assert_eq!(lines[1], "FCM: NON-DROP FRAME");
        let events: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.as_bytes().first().is_some_and(u8::is_ascii_digit))
            .collect();
        assert_eq!(
            events,
            [
                "001  AX       V     C        00:00:00:00 00:00:02:10 00:00:00:00 00:00:02:10",
                "002  AX       V     C        00:00:02:10 00:01:00:00 00:00:02:10 00:01:00:00",
                "003  AX       V     C        00:01:00:00 00:01:01:20 00:01:00:00 00:01:01:20",
            ]
        );
        let comments = lines
            .iter()
            .filter(|l| **l == "* FROM CLIP NAME: My Clip x")
            .count();
        assert_eq!(comments, 3);

        let pal = to_edl(&scenes_from_cuts(&[], 90_001), &[], PAL, "p");
        assert!(pal.contains("001  AX       V     C        00:00:00:00 01:00:00:01 "));
        assert_eq!(
            smpte_timecode(
                24,
                Fps {
                    num: 24000,
                    den: 1001
                }
            ),
            "00:00:01:00"
        );
        assert_eq!(smpte_timecode(5, Fps { num: 0, den: 0 }), "00:00:05:00");
    }
}
