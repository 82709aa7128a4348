#!/usr/bin/env python3
"""Check a montage's exported timelines against its plan.

    python timeline_check.py PLAN.json TIMELINE.otio EDL FCPXML

Reads the OpenTimelineIO file with the reference `opentimelineio` library (tests/deps.sh
installs it in target/py-otio), and the CMX 3600 EDL and the FCPXML with small parsers of
its own, and checks that each describes exactly the plan's cut: one video clip per segment,
in order, with the plan's source ranges and lengths, and the song under the whole cut.
Prints `timeline ok: N clips, F frames` and exits 0, or prints what is wrong and exits 1.
"""

import json
import math
import re
import sys
import xml.etree.ElementTree as ET
from fractions import Fraction
from pathlib import PurePosixPath


class Mismatch(Exception):
    """A timeline that does not describe the plan."""


def expect(ok, message):
    if not ok:
        raise Mismatch(message)


def file_url(path):
    return PurePosixPath(path).as_uri()


def file_name(path):
    return PurePosixPath(path).name


def music_start(plan):
    """The song's first frame at the output rate: start_s x fps rounded half away from zero,
    in floating point as the exporter computes it."""
    value = plan["music"]["start_s"] * (plan["fps"]["num"] / plan["fps"]["den"])
    whole = math.floor(value)
    return max(0, whole + (1 if value - whole >= 0.5 else 0))


def check_otio(plan, path):
    try:
        import opentimelineio as otio
    except ImportError:
        raise Mismatch("opentimelineio is missing: tests/deps.sh installs it in target/py-otio")

    fps = Fraction(plan["fps"]["num"], plan["fps"]["den"])
    rate = float(fps)
    segments = plan["segments"]
    timeline = otio.adapters.read_from_file(path)
    expect(isinstance(timeline, otio.schema.Timeline), f"{path}: not a timeline")

    def frames(rt, what):
        value = rt.value_rescaled_to(rate)
        expect(abs(value - round(value)) < 1e-6, f"{path}: {what} {value} is not a whole frame")
        return round(value)

    video = timeline.video_tracks()
    expect(len(video) == 1, f"{path}: {len(video)} video tracks, expected 1")
    clips = list(video[0])
    expect(len(clips) == len(segments),
           f"{path}: {len(clips)} video clips, the plan has {len(segments)} segments")
    for i, (clip, seg) in enumerate(zip(clips, segments)):
        expect(isinstance(clip, otio.schema.Clip), f"{path}: item {i} is not a clip")
        src = plan["sources"][seg["source"]]
        start = frames(clip.source_range.start_time, f"clip {i} start")
        duration = frames(clip.source_range.duration, f"clip {i} duration")
        expect(start == seg["src_start"],
               f"{path}: clip {i} starts at source frame {start}, the plan says {seg['src_start']}")
        expect(duration == seg["frames"],
               f"{path}: clip {i} lasts {duration} frames, the plan says {seg['frames']}")
        placed = frames(video[0].range_of_child_at_index(i).start_time, f"clip {i} place")
        expect(placed == seg["out_start"],
               f"{path}: clip {i} is at frame {placed}, the plan says {seg['out_start']}")
        url = clip.media_reference.target_url
        expect(url == file_url(src["path"]),
               f"{path}: clip {i} refers to {url}, expected {file_url(src['path'])}")
        available = clip.media_reference.available_range
        expect(available is not None
               and round(available.duration.value) == src["frames"]
               and abs(available.duration.rate - src["fps"]["num"] / src["fps"]["den"]) < 1e-9,
               f"{path}: clip {i} media range {available} is not the source's "
               f"{src['frames']} frames")
    total = frames(video[0].duration(), "video track length")
    expect(total == plan["frames"], f"{path}: video lasts {total} frames, the plan {plan['frames']}")
    total = frames(timeline.duration(), "timeline length")
    expect(total == plan["frames"], f"{path}: timeline lasts {total} frames, plan {plan['frames']}")

    audio = timeline.audio_tracks()
    expect(len(audio) == 1 and len(audio[0]) == 1, f"{path}: expected one audio track, one clip")
    song = audio[0][0]
    music = plan["music"]
    expect(song.media_reference.target_url == file_url(music["path"]),
           f"{path}: the audio clip refers to {song.media_reference.target_url}")
    song_start = frames(song.source_range.start_time, "song start")
    expect(song_start == music_start(plan),
           f"{path}: the song starts at frame {song_start}, not at {music['start_s']} s")
    expect(frames(song.source_range.duration, "song length") == plan["frames"],
           f"{path}: the song does not last the whole cut")
    return len(clips)


TC = r"(\d\d+):(\d\d):(\d\d)[:;](\d\d)"
EVENT = re.compile(rf"^(\d{{3,}})  (.{{8}}) (.{{5}}) (.{{8}}) {TC} {TC} {TC} {TC}\s*$")


def parse_edl(text, rate):
    """Events of a CMX 3600 EDL: dicts of number, reel, channel, four timecodes in frames
    and the clip name."""
    lines = text.splitlines()
    expect(lines and lines[0].startswith("TITLE:"), "EDL: no TITLE line")
    expect("FCM: NON-DROP FRAME" in lines[:3], "EDL: no FCM: NON-DROP FRAME line")
    events = []
    for n, line in enumerate(lines, 1):
        if line[:1].isdigit():
            m = EVENT.match(line)
            expect(m, f"EDL line {n} is not a CMX 3600 event: {line!r}")
            g = m.groups()
            tcs = [int(x) for x in g[4:]]
            for k in range(4):
                h, mi, s, f = tcs[4 * k:4 * k + 4]
                expect(mi < 60 and s < 60 and f < rate, f"EDL line {n}: bad timecode")
            fr = [((tcs[4 * k] * 60 + tcs[4 * k + 1]) * 60 + tcs[4 * k + 2]) * rate
                  + tcs[4 * k + 3] for k in range(4)]
            events.append({"line": n, "number": int(g[0]), "reel": g[1].strip(),
                           "channel": g[2].strip(), "transition": g[3].strip(),
                           "src_in": fr[0], "src_out": fr[1], "rec_in": fr[2], "rec_out": fr[3],
                           "names": []})
        elif line.startswith("* FROM CLIP NAME:"):
            expect(events, f"EDL line {n}: a clip name before any event")
            events[-1]["names"].append(line[len("* FROM CLIP NAME:"):].strip())
    return events


def check_edl(plan, path):
    fps = Fraction(plan["fps"]["num"], plan["fps"]["den"])
    rate = max(1, round(fps))
    with open(path, encoding="utf-8") as f:
        events = parse_edl(f.read(), rate)
    expect([e["number"] for e in events] == list(range(1, len(events) + 1)),
           f"{path}: event numbers are not 1, 2, 3, ...")
    video = [e for e in events if e["channel"] == "V"]
    audio = [e for e in events if e["channel"] != "V"]
    segments = plan["segments"]
    expect(len(video) == len(segments),
           f"{path}: {len(video)} video events, the plan has {len(segments)} segments")
    for e, seg in zip(video, segments):
        src = plan["sources"][seg["source"]]
        where = f"{path} line {e['line']}"
        expect(e["src_in"] == seg["src_start"],
               f"{where}: source in {e['src_in']}, the plan says {seg['src_start']}")
        expect(e["src_out"] - e["src_in"] == seg["frames"],
               f"{where}: source lasts {e['src_out'] - e['src_in']}, the plan {seg['frames']}")
        expect(e["rec_in"] == seg["out_start"],
               f"{where}: record in {e['rec_in']}, the plan says {seg['out_start']}")
        expect(e["rec_out"] - e["rec_in"] == seg["frames"],
               f"{where}: record lasts {e['rec_out'] - e['rec_in']}, the plan {seg['frames']}")
        expect(e["names"] == [file_name(src["path"])],
               f"{where}: clip names {e['names']}, expected [{file_name(src['path'])!r}]")
    recorded = sum(e["rec_out"] - e["rec_in"] for e in video)
    expect(recorded == plan["frames"],
           f"{path}: video events record {recorded} frames, the plan has {plan['frames']}")
    expect(len(audio) == 1 and audio[0]["channel"] == "AA", f"{path}: expected one AA event")
    song = audio[0]
    expect(song["rec_in"] == 0 and song["rec_out"] == plan["frames"]
           and song["src_out"] - song["src_in"] == plan["frames"],
           f"{path}: the song event does not cover the whole cut")
    expect(song["src_in"] == music_start(plan),
           f"{path}: the song starts at frame {song['src_in']}, not at {music_start(plan)}")
    expect(song["names"] == [file_name(plan["music"]["path"])], f"{path}: song clip name")


def seconds(value, what):
    m = re.fullmatch(r"(\d+)(?:/(\d+))?s", value or "")
    expect(m, f"FCPXML: {what} {value!r} is not a time")
    return Fraction(int(m.group(1)), int(m.group(2) or 1))


def check_fcpxml(plan, path):
    fps = Fraction(plan["fps"]["num"], plan["fps"]["den"])
    frame = 1 / fps
    root = ET.parse(path).getroot()
    expect(root.tag == "fcpxml" and root.get("version") in ("1.9", "1.10"),
           f"{path}: not FCPXML 1.9/1.10")
    resources = {r.get("id"): r for r in root.find("resources")}
    seq = root.find("library/event/project/sequence")
    expect(seq is not None, f"{path}: no library/event/project/sequence")
    fmt = resources.get(seq.get("format"))
    expect(fmt is not None and seconds(fmt.get("frameDuration"), "frameDuration") == frame,
           f"{path}: the sequence format is not {frame} s a frame")
    length = plan["frames"] * frame
    expect(seconds(seq.get("duration"), "sequence duration") == length,
           f"{path}: the sequence lasts {seq.get('duration')}, the plan {length} s")
    clips = list(seq.find("spine"))
    segments = plan["segments"]
    expect(len(clips) == len(segments),
           f"{path}: {len(clips)} spine clips, the plan has {len(segments)} segments")
    total = Fraction(0)
    for i, (clip, seg) in enumerate(zip(clips, segments)):
        src = plan["sources"][seg["source"]]
        expect(clip.tag == "asset-clip", f"{path}: spine item {i} is a {clip.tag}")
        offset = seconds(clip.get("offset"), "offset")
        start = seconds(clip.get("start"), "start")
        duration = seconds(clip.get("duration"), "duration")
        expect(offset == seg["out_start"] * frame,
               f"{path}: spine clip {i} is at {offset} s, the plan {seg['out_start'] * frame} s")
        expect(start == seg["src_start"] * frame,
               f"{path}: spine clip {i} starts at {start} s, the plan {seg['src_start'] * frame} s")
        expect(duration == seg["frames"] * frame,
               f"{path}: spine clip {i} lasts {duration} s, the plan {seg['frames'] * frame} s")
        total += duration
        asset = resources.get(clip.get("ref"))
        expect(asset is not None and asset.tag == "asset", f"{path}: clip {i} has no asset")
        rep = asset.find("media-rep")
        expect(rep is not None and rep.get("src") == file_url(src["path"]),
               f"{path}: clip {i}'s asset is not {file_url(src['path'])}")
    expect(total == length, f"{path}: the spine lasts {total} s, the plan {length} s")
    songs = [c for c in clips[0] if c.tag == "asset-clip" and c.get("lane") == "-1"]
    expect(len(songs) == 1, f"{path}: no song clip connected to the first spine clip")
    song = songs[0]
    expect(seconds(song.get("offset"), "song offset") == seconds(clips[0].get("start"), "start")
           and seconds(song.get("duration"), "song duration") == length,
           f"{path}: the song does not lie under the whole cut")
    rep = resources[song.get("ref")].find("media-rep")
    expect(rep.get("src") == file_url(plan["music"]["path"]), f"{path}: the song's file")


def main(argv):
    if len(argv) != 5:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    _, plan_path, otio_path, edl_path, fcpxml_path = argv
    try:
        with open(plan_path, encoding="utf-8") as f:
            plan = json.load(f)
        clips = check_otio(plan, otio_path)
        check_edl(plan, edl_path)
        check_fcpxml(plan, fcpxml_path)
    except Mismatch as e:
        print(f"timeline check failed: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # unreadable files, missing keys, the library's own errors
        print(f"timeline check failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"timeline ok: {clips} clips, {plan['frames']} frames")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
