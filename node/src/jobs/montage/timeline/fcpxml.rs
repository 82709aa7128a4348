//! Final Cut Pro XML (FCPXML 1.9).

use std::fmt::Write as _;

use rendermesh_protocol::media::Rational;
use rendermesh_protocol::montage::{MontagePlan, PlanSource};

use super::{file_name, file_url, music_frames, music_start, one_line, positive_rate};

/// The plan as an FCPXML 1.9 document.
///
/// `<resources>` hold a `<format>` for the timeline (`frameDuration` like `1001/30000s`,
/// the plan's width and height), one `<format>` per other source rate and size, one
/// `<asset>` per source the segments use (in order of first use: name, `start="0s"`,
/// duration, `hasVideo`, `hasAudio`, format, and a `<media-rep kind="original-media">` with
/// its `file://` URL) and one audio-only `<asset>` for the song.
///
/// `<library><event><project><sequence>` (the timeline's format, its length, `tcStart="0s"`,
/// `tcFormat="NDF"`) holds a `<spine>` of one `<asset-clip>` per segment, in order: `offset`
/// is `out_start`, `start` is `src_start` and `duration` is `frames`, all frames at the plan's
/// rate written as rational seconds (`3003/30000s`, `2s`). The song is a connected
/// `<asset-clip lane="-1">` under the first spine clip: `offset` the parent's `start` (so it
/// begins with the cut), `start` at `music.start_s` (rounded to a whole frame), `duration`
/// the whole cut. A segment naming a source the plan does not have becomes a `<gap>` of its
/// length. Names and URLs are XML-escaped.
pub fn fcpxml(plan: &MontagePlan, title: &str) -> String {
    let mut res = Resources::default();
    let timeline_format = res.format(plan.fps, plan.width, plan.height);
    let mut assets: Vec<Option<String>> = vec![None; plan.sources.len()];
    for seg in &plan.segments {
        if let (Some(slot @ None), Some(src)) =
            (assets.get_mut(seg.source), plan.sources.get(seg.source))
        {
            *slot = Some(res.source_asset(src, plan));
        }
    }
    let song = res.song_asset(plan);

    let title = esc(title);
    let total = time(plan.frames, plan.fps);
    let mut spine = String::new();
    for (i, seg) in plan.segments.iter().enumerate() {
        let asset = assets.get(seg.source).and_then(Option::as_ref);
        let start = match asset {
            Some(_) => time(seg.src_start, plan.fps),
            None => "0s".to_owned(),
        };
        let common = format!(
            "offset=\"{}\" start=\"{start}\" duration=\"{}\"",
            time(seg.out_start, plan.fps),
            time(seg.frames, plan.fps)
        );
        let (open, close) = match (asset, plan.sources.get(seg.source)) {
            (Some(id), Some(src)) => (
                format!(
                    "<asset-clip ref=\"{id}\" name=\"{}\" {common} tcFormat=\"NDF\"",
                    esc(&file_name(&src.path))
                ),
                "</asset-clip>",
            ),
            _ => (format!("<gap name=\"Gap\" {common}"), "</gap>"),
        };
        // Writing to a String cannot fail.
        if i == 0 {
            let _ = write!(
                spine,
                "                        {open}>\n                            \
                 <asset-clip ref=\"{song}\" lane=\"-1\" name=\"{}\" offset=\"{start}\" \
                 start=\"{}\" duration=\"{total}\" audioRole=\"music\"/>\n\
                 \x20                       {close}\n",
                esc(&file_name(&plan.music.path)),
                time(music_start(plan), plan.fps),
            );
        } else {
            let _ = writeln!(spine, "                        {open}/>");
        }
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE fcpxml>\n\
         <fcpxml version=\"1.9\">\n\
         \x20   <resources>\n{}\
         \x20   </resources>\n\
         \x20   <library>\n\
         \x20       <event name=\"{title}\">\n\
         \x20           <project name=\"{title}\">\n\
         \x20               <sequence format=\"{timeline_format}\" duration=\"{total}\" \
         tcStart=\"0s\" tcFormat=\"NDF\" audioLayout=\"stereo\" audioRate=\"48k\">\n\
         \x20                   <spine>\n{spine}\
         \x20                   </spine>\n\
         \x20               </sequence>\n\
         \x20           </project>\n\
         \x20       </event>\n\
         \x20   </library>\n\
         </fcpxml>\n",
        res.text
    )
}

/// `frames` at `fps` as FCPXML rational seconds: `Ns` when whole, else `N/Ds` with `D` the
/// rate's numerator (`3003/30000s` is 3 frames at 30000/1001). `0s` for an unusable rate.
fn time(frames: u64, fps: Rational) -> String {
    if fps.num <= 0 || fps.den <= 0 {
        return "0s".to_owned();
    }
    let n = u128::from(frames) * u128::from(fps.den.unsigned_abs());
    let d = u128::from(fps.num.unsigned_abs());
    if n % d == 0 {
        format!("{}s", n / d)
    } else {
        format!("{n}/{d}s")
    }
}

/// `text` on one line with the XML special characters escaped, for an attribute value.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in one_line(text).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The `<resources>` being written: their text, the next free id, the formats so far.
#[derive(Default)]
struct Resources {
    text: String,
    ids: u32,
    formats: Vec<((i32, i32, u32, u32), String)>,
}

impl Resources {
    /// A new resource id (`r1`, `r2`, …).
    fn id(&mut self) -> String {
        self.ids += 1;
        format!("r{}", self.ids)
    }

    /// The id of the format of this rate and size, written on first use.
    fn format(&mut self, fps: Rational, width: u32, height: u32) -> String {
        let key = (fps.num, fps.den, width, height);
        if let Some((_, id)) = self.formats.iter().find(|(k, _)| *k == key) {
            return id.clone();
        }
        let id = self.id();
        // Writing to a String cannot fail.
        let _ = writeln!(
            self.text,
            "        <format id=\"{id}\" frameDuration=\"{}\" width=\"{width}\" \
             height=\"{height}\"/>",
            time(1, fps)
        );
        self.formats.push((key, id.clone()));
        id
    }

    /// Writes the asset of a source (and its format) and returns its id.
    fn source_asset(&mut self, src: &PlanSource, plan: &MontagePlan) -> String {
        let (format, duration) = match positive_rate(src.fps) {
            Some(_) => (
                self.format(src.fps, src.width, src.height),
                time(src.frames, src.fps),
            ),
            None => (
                self.format(plan.fps, src.width, src.height),
                time(super::seconds_to_frames(src.duration_s, plan.fps), plan.fps),
            ),
        };
        let id = self.id();
        let _ = write!(
            self.text,
            "        <asset id=\"{id}\" name=\"{}\"{} start=\"0s\" duration=\"{duration}\" \
             hasVideo=\"1\" hasAudio=\"{}\" format=\"{format}\">\n\
             \x20           <media-rep kind=\"original-media\" src=\"{}\"/>\n\
             \x20       </asset>\n",
            esc(&file_name(&src.path)),
            uid(&src.id),
            u8::from(src.has_audio),
            esc(&file_url(&src.path)),
        );
        id
    }

    /// Writes the song's audio-only asset and returns its id.
    fn song_asset(&mut self, plan: &MontagePlan) -> String {
        let id = self.id();
        let _ = write!(
            self.text,
            "        <asset id=\"{id}\" name=\"{}\"{} start=\"0s\" duration=\"{}\" \
             hasAudio=\"1\" audioSources=\"1\">\n\
             \x20           <media-rep kind=\"original-media\" src=\"{}\"/>\n\
             \x20       </asset>\n",
            esc(&file_name(&plan.music.path)),
            uid(&plan.music.id),
            time(music_frames(plan), plan.fps),
            esc(&file_url(&plan.music.path)),
        );
        id
    }
}

/// ` uid="…"` from a content id, or nothing when there is none.
fn uid(content_id: &str) -> String {
    if content_id.is_empty() {
        String::new()
    } else {
        format!(" uid=\"{}\"", esc(&content_id.to_ascii_uppercase()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::sample;
    use super::*;

    /// The document, parsed (FCPXML starts with a `<!DOCTYPE fcpxml>`).
    fn parse(text: &str) -> roxmltree::Document<'_> {
        let options = roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        };
        roxmltree::Document::parse_with_options(text, options).expect("well-formed XML")
    }

    /// Frames at `fps` of an FCPXML time, checked to be exact.
    fn frames(t: &str, fps: Rational) -> u64 {
        let t = t.strip_suffix('s').expect("ends in s");
        let (n, d) = t.split_once('/').unwrap_or((t, "1"));
        let (n, d): (u128, u128) = (n.parse().expect("n"), d.parse().expect("d"));
        let (num, den) = (fps.num as u128, fps.den as u128);
        assert_eq!(n * num % (d * den), 0, "{t} is not a whole frame");
        (n * num / (d * den)) as u64
    }

    #[test]
    fn times_are_exact_rationals() {
        let ntsc = Rational::new(30000, 1001);
        assert_eq!(time(0, ntsc), "0s");
        assert_eq!(time(3, ntsc), "3003/30000s");
        assert_eq!(time(30000, ntsc), "1001s");
        assert_eq!(time(50, Rational::new(25, 1)), "2s");
        assert_eq!(time(31, Rational::new(25, 1)), "31/25s");
        assert_eq!(time(5, Rational::new(0, 1)), "0s");
        assert_eq!(frames("3003/30000s", ntsc), 3);
        assert_eq!(esc("a&b<c>\"d'\ne"), "a&amp;b&lt;c&gt;&quot;d&apos; e");
    }

    #[test]
    fn well_formed_and_the_spine_is_the_cut() {
        for plan in [sample::ntsc(), sample::pal()] {
            let text = fcpxml(&plan, "Cut & <Mix>");
            let doc = parse(&text);
            let root = doc.root_element();
            assert_eq!(root.tag_name().name(), "fcpxml");
            assert_eq!(root.attribute("version"), Some("1.9"));
            let by_id = |id: &str| {
                doc.descendants()
                    .find(|n| n.attribute("id") == Some(id))
                    .expect("resource")
            };
            let seq = doc
                .descendants()
                .find(|n| n.has_tag_name("sequence"))
                .expect("sequence");
            let format = by_id(seq.attribute("format").expect("format"));
            assert_eq!(
                format.attribute("frameDuration"),
                Some(time(1, plan.fps).as_str())
            );
            assert_eq!(format.attribute("width"), Some("1280"));
            assert_eq!(
                frames(seq.attribute("duration").expect("dur"), plan.fps),
                plan.frames
            );
            let project = seq.parent().expect("project");
            assert_eq!(project.attribute("name"), Some("Cut & <Mix>"));

            let spine = seq.first_element_child().expect("spine");
            assert!(spine.has_tag_name("spine"));
            let clips: Vec<_> = spine.children().filter(|n| n.is_element()).collect();
            assert_eq!(clips.len(), plan.segments.len());
            let mut total = 0;
            for (clip, seg) in clips.iter().zip(&plan.segments) {
                let src = &plan.sources[seg.source];
                assert!(clip.has_tag_name("asset-clip"));
                let at = |a: &str| frames(clip.attribute(a).expect("attribute"), plan.fps);
                assert_eq!(at("offset"), seg.out_start);
                assert_eq!(at("start"), seg.src_start);
                assert_eq!(at("duration"), seg.frames);
                total += at("duration");
                assert_eq!(clip.attribute("name"), Some(file_name(&src.path).as_str()));
                let asset = by_id(clip.attribute("ref").expect("ref"));
                assert_eq!(asset.attribute("hasVideo"), Some("1"));
                let rep = asset.first_element_child().expect("media-rep");
                assert_eq!(rep.attribute("kind"), Some("original-media"));
                assert_eq!(rep.attribute("src"), Some(file_url(&src.path).as_str()));
                let asset_format = by_id(asset.attribute("format").expect("format"));
                assert_eq!(
                    asset_format.attribute("frameDuration"),
                    Some(time(1, src.fps).as_str())
                );
            }
            assert_eq!(total, plan.frames);

            let song = clips[0].first_element_child().expect("song clip");
            assert_eq!(song.attribute("lane"), Some("-1"));
            assert_eq!(song.attribute("offset"), clips[0].attribute("start"));
            assert_eq!(
                frames(song.attribute("start").expect("start"), plan.fps),
                super::music_start(&plan)
            );
            assert_eq!(
                frames(song.attribute("duration").expect("dur"), plan.fps),
                plan.frames
            );
            let song_asset = by_id(song.attribute("ref").expect("ref"));
            assert_eq!(song_asset.attribute("hasAudio"), Some("1"));
            assert_eq!(song_asset.attribute("hasVideo"), None);
            assert_eq!(song_asset.attribute("name"), Some("Song & Dance.flac"));
        }
    }

    #[test]
    fn used_sources_only_and_missing_ones_are_gaps() {
        let mut plan = sample::pal();
        plan.sources.push(plan.sources[0].clone());
        plan.sources[3].path = "/unused.mp4".into();
        plan.segments[3].source = 9;
        let text = fcpxml(&plan, "t");
        let doc = parse(&text);
        let assets = doc
            .descendants()
            .filter(|n| n.has_tag_name("asset"))
            .count();
        // Sources 0 and 1 and the song; source 2 is no longer used, 3 never was.
        assert_eq!(assets, 3);
        assert!(!text.contains("unused"));
        let gap = doc
            .descendants()
            .find(|n| n.has_tag_name("gap"))
            .expect("gap");
        assert_eq!(gap.attribute("duration"), Some("60/25s"));
    }
}
