//! OpenTimelineIO JSON (`.otio`), as the `opentimelineio` library (0.17, 0.18) writes and
//! reads it.

use serde_json::{json, Value};

use rendermesh_protocol::montage::{MontagePlan, PlanSource};

use super::{file_name, file_url, music_frames, music_start, positive_rate};

/// The plan as an OpenTimelineIO timeline (`Timeline.1`), pretty-printed JSON.
///
/// The timeline's `tracks` (`Stack.1`) hold two `Track.1`s:
/// - `V1`, kind `Video`: one `Clip.2` per segment, in order, named after its source file;
///   its `source_range` starts at the segment's `src_start` and lasts its `frames`, integer
///   frame values at the timeline rate (the plan's `fps` as a float, e.g.
///   29.97002997002997 for 30000/1001). Its media reference is an `ExternalReference.1`
///   with the source's `file://` URL and `available_range` 0 to the source's frame count
///   at the source's own rate.
/// - `A1`, kind `Audio`: one clip of the song, from `music.start_s` (rounded to a whole
///   frame at the timeline rate) for the plan's length, its `available_range` the whole
///   song (rounded to whole frames at the timeline rate).
///
/// `global_start_time` is 0 at the timeline rate. A segment naming a source the plan does
/// not have keeps its place with a `MissingReference.1`.
pub fn otio(plan: &MontagePlan, name: &str) -> String {
    let rate = positive_rate(plan.fps).unwrap_or(1.0);
    let video: Vec<Value> = plan
        .segments
        .iter()
        .map(|seg| {
            let source = plan.sources.get(seg.source);
            clip(
                source.map(|s| file_name(&s.path)).unwrap_or_default(),
                source.map_or_else(missing_reference, |s| source_reference(s, rate)),
                range(seg.src_start as f64, seg.frames as f64, rate),
            )
        })
        .collect();
    let song = clip(
        file_name(&plan.music.path),
        external_reference(
            file_url(&plan.music.path),
            range(0.0, music_frames(plan) as f64, rate),
        ),
        range(music_start(plan) as f64, plan.frames as f64, rate),
    );
    let doc = json!({
        "OTIO_SCHEMA": "Timeline.1",
        "metadata": {},
        "name": name,
        "global_start_time": time(0.0, rate),
        "tracks": {
            "OTIO_SCHEMA": "Stack.1",
            "metadata": {},
            "name": "tracks",
            "source_range": null,
            "effects": [],
            "markers": [],
            "enabled": true,
            "children": [track("V1", "Video", video), track("A1", "Audio", vec![song])],
        },
    });
    // A tree of JSON values with string keys always serialises.
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    text
}

/// A `RationalTime.1`.
fn time(value: f64, rate: f64) -> Value {
    json!({ "OTIO_SCHEMA": "RationalTime.1", "rate": rate, "value": value })
}

/// A `TimeRange.1` of `duration` from `start`, both at `rate`.
fn range(start: f64, duration: f64, rate: f64) -> Value {
    json!({
        "OTIO_SCHEMA": "TimeRange.1",
        "duration": time(duration, rate),
        "start_time": time(start, rate),
    })
}

/// A `Track.1` of `kind` (`Video` or `Audio`) holding `children`.
fn track(name: &str, kind: &str, children: Vec<Value>) -> Value {
    json!({
        "OTIO_SCHEMA": "Track.1",
        "metadata": {},
        "name": name,
        "source_range": null,
        "effects": [],
        "markers": [],
        "enabled": true,
        "children": children,
        "kind": kind,
    })
}

/// A `Clip.2` with one media reference (the default one).
fn clip(name: String, reference: Value, source_range: Value) -> Value {
    json!({
        "OTIO_SCHEMA": "Clip.2",
        "metadata": {},
        "name": name,
        "source_range": source_range,
        "effects": [],
        "markers": [],
        "enabled": true,
        "media_references": { "DEFAULT_MEDIA": reference },
        "active_media_reference_key": "DEFAULT_MEDIA",
    })
}

/// An `ExternalReference.1` to `url`.
fn external_reference(url: String, available_range: Value) -> Value {
    json!({
        "OTIO_SCHEMA": "ExternalReference.1",
        "metadata": {},
        "name": "",
        "available_range": available_range,
        "available_image_bounds": null,
        "target_url": url,
    })
}

/// The reference of a source: its URL and all its frames at its own rate (or, when its rate
/// is unusable, its length in whole frames at the timeline rate).
fn source_reference(source: &PlanSource, timeline_rate: f64) -> Value {
    let available = match positive_rate(source.fps) {
        Some(rate) => range(0.0, source.frames as f64, rate),
        None => range(
            0.0,
            (source.duration_s * timeline_rate).round().max(0.0),
            timeline_rate,
        ),
    };
    external_reference(file_url(&source.path), available)
}

/// A `MissingReference.1`.
fn missing_reference() -> Value {
    json!({
        "OTIO_SCHEMA": "MissingReference.1",
        "metadata": {},
        "name": "",
        "available_range": null,
        "available_image_bounds": null,
    })
}

#[cfg(test)]
mod tests {
    use super::super::sample;
    use super::*;

    fn parse(plan: &MontagePlan) -> Value {
        serde_json::from_str(&otio(plan, "My \"cut\"")).expect("valid JSON")
    }

    #[test]
    fn video_clips_follow_the_plan() {
        for plan in [sample::ntsc(), sample::pal()] {
            let doc = parse(&plan);
            let rate = plan.fps_f64();
            assert_eq!(doc["OTIO_SCHEMA"], "Timeline.1");
            assert_eq!(doc["name"], "My \"cut\"");
            assert_eq!(doc["global_start_time"]["value"], 0.0);
            assert_eq!(doc["tracks"]["OTIO_SCHEMA"], "Stack.1");
            let tracks = doc["tracks"]["children"].as_array().expect("tracks");
            assert_eq!(tracks.len(), 2);
            assert_eq!(tracks[0]["kind"], "Video");
            let clips = tracks[0]["children"].as_array().expect("clips");
            assert_eq!(clips.len(), plan.segments.len());
            let mut total = 0.0;
            for (clip, seg) in clips.iter().zip(&plan.segments) {
                let src = &plan.sources[seg.source];
                assert_eq!(clip["OTIO_SCHEMA"], "Clip.2");
                let range = &clip["source_range"];
                assert_eq!(range["start_time"]["rate"].as_f64(), Some(rate));
                assert_eq!(
                    range["start_time"]["value"].as_f64(),
                    Some(seg.src_start as f64)
                );
                assert_eq!(range["duration"]["rate"].as_f64(), Some(rate));
                assert_eq!(range["duration"]["value"].as_f64(), Some(seg.frames as f64));
                total += range["duration"]["value"].as_f64().expect("duration");
                let reference = &clip["media_references"]["DEFAULT_MEDIA"];
                assert_eq!(reference["OTIO_SCHEMA"], "ExternalReference.1");
                assert_eq!(reference["target_url"], file_url(&src.path));
                let available = &reference["available_range"]["duration"];
                assert_eq!(available["rate"].as_f64(), Some(src.fps.as_f64()));
                assert_eq!(available["value"].as_f64(), Some(src.frames as f64));
                assert_eq!(clip["name"], file_name(&src.path));
            }
            assert_eq!(total, plan.frames as f64);
        }
        let doc = parse(&sample::ntsc());
        let first = &doc["tracks"]["children"][0]["children"][0];
        assert_eq!(first["name"], "Beach Day & Night.mp4");
        assert_eq!(
            first["media_references"]["DEFAULT_MEDIA"]["target_url"],
            "file:///media/clips/Beach%20Day%20%26%20Night.mp4"
        );
        assert_eq!(first["source_range"]["duration"]["rate"], 29.97002997002997);
    }

    #[test]
    fn the_song_lies_under_the_whole_cut() {
        let plan = sample::ntsc();
        let doc = parse(&plan);
        let audio = &doc["tracks"]["children"][1];
        assert_eq!(audio["kind"], "Audio");
        let clips = audio["children"].as_array().expect("clips");
        assert_eq!(clips.len(), 1);
        let range = &clips[0]["source_range"];
        // 12.5 s at 29.97 fps is frame 374.6.
        assert_eq!(range["start_time"]["value"].as_f64(), Some(375.0));
        assert_eq!(
            range["duration"]["value"].as_f64(),
            Some(plan.frames as f64)
        );
        let reference = &clips[0]["media_references"]["DEFAULT_MEDIA"];
        assert_eq!(
            reference["target_url"],
            "file:///media/music/Song%20%26%20Dance.flac"
        );
        // 200.25 s at 29.97 fps is 6001.499 frames.
        assert_eq!(
            reference["available_range"]["duration"]["value"].as_f64(),
            Some(6001.0)
        );
    }

    #[test]
    fn a_missing_source_keeps_its_place() {
        let mut plan = sample::pal();
        plan.segments[1].source = 9;
        let doc = parse(&plan);
        let clip = &doc["tracks"]["children"][0]["children"][1];
        assert_eq!(
            clip["media_references"]["DEFAULT_MEDIA"]["OTIO_SCHEMA"],
            "MissingReference.1"
        );
        assert_eq!(
            clip["source_range"]["duration"]["value"].as_f64(),
            Some(1799.0)
        );
    }
}
