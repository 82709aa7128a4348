//! CMX 3600 edit decision list.

use std::fmt::Write as _;

use rendermesh_protocol::media::Rational;
use rendermesh_protocol::montage::MontagePlan;

use super::{file_name, music_start, one_line, positive_rate};

/// The plan as a CMX 3600 EDL.
///
/// `TITLE: <title>` and `FCM: NON-DROP FRAME`, then one cut event per segment, in order:
///
/// ```text
/// 001  AX       V     C        00:00:04:00 00:00:07:00 00:00:00:00 00:00:03:00
/// * FROM CLIP NAME: Beach Day.mp4
/// ```
///
/// (event number, reel `AX`, channel `V`, transition `C`, source in/out, record in/out).
/// Source in is the segment's `src_start`, source out `src_start + frames`; record in/out
/// are `out_start` and `out_start + frames`. Outs are exclusive, as in CMX. Timecodes are
/// `HH:MM:SS:FF` at the timeline's nominal integer rate (`round(fps)`, 30 for 30000/1001)
/// without drop-frame compensation, so they count the plan's frames exactly.
///
/// The song follows as one more event on channel `AA` (audio 1 and 2): reel `AX`, source in
/// at `music.start_s` (rounded to a whole frame) over the whole record length, record
/// 0 to the plan's length, with its own `* FROM CLIP NAME:` line. Event numbers have at
/// least three digits; past 999 they grow (a plan holds up to 20 000 segments).
pub fn edl(plan: &MontagePlan, title: &str) -> String {
    let rate = nominal(plan.fps);
    let mut out = format!("TITLE: {}\nFCM: NON-DROP FRAME\n", one_line(title));
    let mut number = 0u64;
    for seg in &plan.segments {
        number += 1;
        let name = plan
            .sources
            .get(seg.source)
            .map(|s| file_name(&s.path))
            .unwrap_or_default();
        event(
            &mut out,
            number,
            "V",
            (seg.src_start, seg.src_start.saturating_add(seg.frames)),
            (seg.out_start, seg.out_start.saturating_add(seg.frames)),
            rate,
            &name,
        );
    }
    let song_in = music_start(plan);
    event(
        &mut out,
        number + 1,
        "AA",
        (song_in, song_in.saturating_add(plan.frames)),
        (0, plan.frames),
        rate,
        &file_name(&plan.music.path),
    );
    out
}

/// Nominal integer rate of SMPTE timecodes: `round(fps)`, at least 1.
fn nominal(fps: Rational) -> u64 {
    // `as` saturates; a usable rate is far below u64::MAX.
    positive_rate(fps).map_or(1, |r| (r.round() as u64).max(1))
}

/// `frame` as a non-drop timecode `HH:MM:SS:FF` at the integer `rate` (hours grow past 99).
fn timecode(frame: u64, rate: u64) -> String {
    let rate = rate.max(1);
    let (secs, ff) = (frame / rate, frame % rate);
    format!(
        "{:02}:{:02}:{:02}:{ff:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Appends one cut event (a blank line, the event line, its clip name) to `out`.
fn event(
    out: &mut String,
    number: u64,
    channel: &str,
    source: (u64, u64),
    record: (u64, u64),
    rate: u64,
    name: &str,
) {
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "\n{number:03}  {:<8} {channel:<5} {:<8} {} {} {} {}\n* FROM CLIP NAME: {name}\n",
        "AX",
        "C",
        timecode(source.0, rate),
        timecode(source.1, rate),
        timecode(record.0, rate),
        timecode(record.1, rate),
    );
}

#[cfg(test)]
mod tests {
    use super::super::sample;
    use super::*;

    /// Frames of a `HH:MM:SS:FF` timecode at `rate`.
    fn frames(tc: &str, rate: u64) -> u64 {
        let f: Vec<u64> = tc.split(':').map(|p| p.parse().expect("number")).collect();
        ((f[0] * 60 + f[1]) * 60 + f[2]) * rate + f[3]
    }

    /// The event lines of an EDL, split into fields.
    fn events(edl: &str) -> Vec<Vec<&str>> {
        edl.lines()
            .filter(|l| l.as_bytes().first().is_some_and(u8::is_ascii_digit))
            .map(|l| l.split_whitespace().collect())
            .collect()
    }

    #[test]
    fn timecode_arithmetic() {
        assert_eq!(timecode(1799, 30), "00:00:59:29");
        assert_eq!(timecode(1800, 30), "00:01:00:00");
        assert_eq!(timecode(108_000, 30), "01:00:00:00");
        assert_eq!(timecode(90_001, 25), "01:00:00:01");
        assert_eq!(timecode(7, 0), "00:00:07:00");
        assert_eq!(nominal(Rational::new(30000, 1001)), 30);
        assert_eq!(nominal(Rational::new(24000, 1001)), 24);
        assert_eq!(nominal(Rational::new(25, 1)), 25);
        assert_eq!(nominal(Rational::new(1, 0)), 1);
        assert_eq!(frames("00:00:59:29", 30), 1799);
    }

    #[test]
    fn events_follow_the_plan() {
        let plan = sample::ntsc();
        let text = edl(&plan, "My\ncut");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "TITLE: My cut");
        assert_eq!(lines[1], "FCM: NON-DROP FRAME");
        let event_lines: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.as_bytes().first().is_some_and(u8::is_ascii_digit))
            .collect();
        assert_eq!(
            event_lines[..2],
            [
                "001  AX       V     C        00:00:00:00 00:00:03:00 00:00:00:00 00:00:03:00",
                "002  AX       V     C        00:00:04:00 00:01:03:29 00:00:03:00 00:01:02:29",
            ]
        );
        // 12.5 s is frame 375 at 29.97 fps; the song lasts the whole 1980 frames.
        assert_eq!(
            event_lines[4],
            "005  AX       AA    C        00:00:12:15 00:01:18:15 00:00:00:00 00:01:06:00"
        );
        let rate = 30;
        let all = events(&text);
        assert_eq!(all.len(), plan.segments.len() + 1);
        let mut recorded = 0;
        for (ev, seg) in all.iter().zip(&plan.segments) {
            assert_eq!(ev[2], "V");
            assert_eq!(frames(ev[4], rate), seg.src_start);
            assert_eq!(frames(ev[5], rate) - frames(ev[4], rate), seg.frames);
            assert_eq!(frames(ev[6], rate), seg.out_start);
            recorded += frames(ev[7], rate) - frames(ev[6], rate);
        }
        assert_eq!(recorded, plan.frames);
        let names: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("* FROM CLIP NAME: "))
            .collect();
        assert_eq!(
            names,
            [
                "Beach Day & Night.mp4",
                "été.mov",
                "Beach Day & Night.mp4",
                "a<b>\"c\".mkv",
                "Song & Dance.flac"
            ]
        );
    }

    #[test]
    fn pal_timecodes_count_25() {
        let plan = sample::pal();
        let all_text = edl(&plan, "p");
        let all = events(&all_text);
        let (ev, seg) = (&all[1], &plan.segments[1]);
        assert_eq!(frames(ev[4], 25), seg.src_start);
        assert_eq!(ev[7], "00:01:15:14"); // 90 + 1799 = 1889 frames
        let song = &all[4];
        assert_eq!(song[2], "AA");
        assert_eq!(frames(song[4], 25), 313); // 12.5 s × 25 = 312.5, rounded up
        assert_eq!(frames(song[7], 25), plan.frames);
    }
}
