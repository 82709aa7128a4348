//! Stage 2 of a montage, on the coordinator: the plan. The cut grid on the song's beats
//! ([`super::grid`]), then a source range for every slot ([`super::select`]). When the footage
//! cannot fill the length, the montage ends earlier (the last slots are dropped) with a note,
//! unless reuse is allowed. The same inputs and seed give the same plan.

use rendermesh_protocol::montage::PLAN_VERSION;
use rendermesh_protocol::{
    BeatGrid, FrameLook, MontagePlan, PlanMusic, PlanSegment, PlanSource, Rational,
};

use super::grid::{cut_grid, Pace};
use super::select::{assign, scenes_of, score_scenes, Scene};

/// What the plan is asked for.
#[derive(Clone, Debug)]
pub struct Settings {
    pub width: u32,
    pub height: u32,
    pub fps: Rational,
    /// Length in output frames.
    pub frames: u64,
    pub pace: Pace,
    pub seed: u64,
    pub allow_reuse: bool,
}

/// A usable clip, as stage 1 saw it.
#[derive(Clone, Debug)]
pub struct SourceFacts {
    pub source: PlanSource,
    /// Scene cuts, seconds from the clip's first frame.
    pub cut_times: Vec<f64>,
    /// Gradual transitions (dissolves, fades) as `(start, end)` seconds: no shot shows one.
    pub transitions: Vec<(f64, f64)>,
    /// Sampled frame looks with their times (seconds from the clip's first frame).
    pub looks: Vec<(f64, FrameLook)>,
}

/// Make the plan.
pub fn make_plan(
    s: &Settings,
    music: PlanMusic,
    grid: &BeatGrid,
    sources: Vec<SourceFacts>,
) -> Result<MontagePlan, String> {
    let fps = s.fps.as_f64();
    let mut slots = cut_grid(grid, music.start_s, s.frames, fps, s.pace, s.seed)?;
    let mut raw = Vec::new();
    for (i, f) in sources.iter().enumerate() {
        raw.extend(scenes_of(
            i,
            f.source.duration_s,
            &f.cut_times,
            &f.transitions,
            &f.looks,
        ));
    }
    let scenes: Vec<Scene> = score_scenes(raw);
    let mut notes = Vec::new();
    let picks = loop {
        match assign(&slots, &scenes, fps, s.seed, s.allow_reuse) {
            Ok(p) => break p,
            // no scene is long enough for this shot: cut it in two on a beat inside it
            Err(i) if slots[i].split().is_some() => {
                if let Some((a, b)) = slots[i].split() {
                    slots.splice(i..=i, [a, b]);
                }
            }
            // no material left for it: the montage ends earlier
            Err(_) if slots.len() > 1 => {
                slots.pop();
            }
            Err(_) => {
                return Err(format!(
                    "the clips hold no scene long enough for a {:.1} s shot",
                    slots.first().map_or(0.0, |x| x.frames as f64 / fps)
                ))
            }
        }
    };
    let frames: u64 = slots.iter().map(|x| x.frames).sum();
    if frames < s.frames {
        notes.push(format!(
            "the clips hold too little usable footage for {:.1} s without reusing any: the \
             montage is {:.1} s (--allow-reuse fills the length)",
            s.frames as f64 / fps,
            frames as f64 / fps
        ));
    }
    let segments = slots
        .iter()
        .zip(&picks)
        .map(|(slot, pick)| {
            let sc = &scenes[pick.scene];
            PlanSegment {
                out_start: slot.out_start,
                frames: slot.frames,
                source: sc.source,
                src_start: pick.src_start,
                scene: sc.scene,
                on_downbeat: slot.on_downbeat,
                section: slot.section,
                score: sc.score,
            }
        })
        .collect();
    let plan = MontagePlan {
        version: PLAN_VERSION,
        width: s.width,
        height: s.height,
        fps: s.fps,
        frames,
        seed: s.seed,
        pace: s.pace.name().into(),
        music,
        sources: sources.into_iter().map(|f| f.source).collect(),
        segments,
        notes,
    };
    plan.validate()?;
    Ok(plan)
}

/// One line about a plan: segments, cut rate, sources used.
pub fn summary(plan: &MontagePlan) -> String {
    let secs = plan.duration_s();
    let mut used: Vec<usize> = plan.segments.iter().map(|s| s.source).collect();
    used.sort_unstable();
    used.dedup();
    let down = plan
        .segments
        .iter()
        .skip(1)
        .filter(|s| s.on_downbeat)
        .count();
    format!(
        "{} segments in {:.1} s ({:.1} cuts a minute, {} of {} cuts on downbeats), {} of {} sources used, {}x{} at {:.3} fps",
        plan.segments.len(),
        secs,
        (plan.segments.len().saturating_sub(1)) as f64 * 60.0 / secs.max(1e-9),
        down,
        plan.segments.len().saturating_sub(1),
        used.len(),
        plan.sources.len(),
        plan.width,
        plan.height,
        plan.fps_f64()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::montage::grid::tests::grid;

    fn source(i: usize, secs: f64, cuts: &[f64]) -> SourceFacts {
        let looks = (0..(secs * 4.0) as u64)
            .map(|k| {
                let t = k as f64 / 4.0;
                let scene = cuts.iter().filter(|c| **c <= t).count() as u64;
                let look = FrameLook {
                    frame: k,
                    luma: 100,
                    contrast: 40,
                    sharpness: (i * 3 + scene as usize) as f32,
                    motion: 2.0,
                    // every scene of every source looks different
                    hash: 0x9E37_79B9_7F4A_7C15u64.rotate_left((i * 8 + scene as usize) as u32 * 5),
                };
                (t, look)
            })
            .collect();
        SourceFacts {
            source: PlanSource {
                path: format!("/clips/{i}.mp4").into(),
                id: format!("{i:02}"),
                width: 640,
                height: 360,
                rotation: 0,
                fps: Rational::new(25, 1),
                frames: (secs * 25.0) as u64,
                duration_s: secs,
                has_audio: true,
                cuts: cuts.iter().map(|c| (c * 25.0) as u64).collect(),
            },
            cut_times: cuts.to_vec(),
            transitions: Vec::new(),
            looks,
        }
    }

    fn settings(frames: u64, reuse: bool) -> Settings {
        Settings {
            width: 640,
            height: 360,
            fps: Rational::new(30, 1),
            frames,
            pace: Pace::Auto,
            seed: 5,
            allow_reuse: reuse,
        }
    }

    fn music() -> PlanMusic {
        PlanMusic {
            path: "/m/song.wav".into(),
            id: "aa".into(),
            start_s: 2.0,
            duration_s: 60.0,
            tempo_bpm: 120.0,
        }
    }

    #[test]
    fn a_plan_fills_the_length_from_inside_scenes_without_reuse() {
        let g = grid(120.0, 60.0, 20.0);
        let sources: Vec<SourceFacts> = (0..6).map(|i| source(i, 12.0, &[4.0, 8.0])).collect();
        let plan = make_plan(&settings(900, false), music(), &g, sources).unwrap();
        assert_eq!(plan.frames, 900);
        assert!(plan.notes.is_empty(), "{:?}", plan.notes);
        let mut used: Vec<(usize, u64, u64)> = Vec::new();
        for seg in &plan.segments {
            let src = &plan.sources[seg.source];
            let a = seg.src_start as f64 / 30.0;
            let b = (seg.src_start + seg.frames) as f64 / 30.0;
            let cuts: Vec<f64> = src.cuts.iter().map(|c| *c as f64 / 25.0).collect();
            assert!(
                cuts.iter().all(|c| *c <= a || *c >= b),
                "{seg:?} crosses a cut"
            );
            for &(s, x, y) in &used {
                assert!(s != seg.source || seg.src_start + seg.frames <= x || seg.src_start >= y);
            }
            used.push((seg.source, seg.src_start, seg.src_start + seg.frames));
        }
        assert!(
            summary(&plan).contains("6 of 6 sources used"),
            "{}",
            summary(&plan)
        );
    }

    #[test]
    fn no_shot_shows_a_gradual_transition() {
        let g = grid(120.0, 60.0, 20.0);
        // every source dissolves into its second scene over 3.2..4.8 s and fades into its
        // third over 7.0..8.6 s: long spans, well past the margin kept at a cut
        let spans = [(3.2, 4.8), (7.0, 8.6)];
        let sources: Vec<SourceFacts> = (0..6)
            .map(|i| SourceFacts {
                transitions: spans.to_vec(),
                ..source(i, 12.0, &[4.0, 8.0])
            })
            .collect();
        let plan = make_plan(&settings(900, false), music(), &g, sources).unwrap();
        assert_eq!(plan.frames, 900);
        let mut near = 0;
        for seg in &plan.segments {
            // frames at the output rate from the source's first frame
            let a = seg.src_start as f64 / 30.0;
            let b = (seg.src_start + seg.frames) as f64 / 30.0;
            for (x, y) in spans {
                assert!(b <= x + 1e-6 || a >= y - 1e-6, "{seg:?} shows {x}..{y} s");
            }
            near += usize::from(
                spans
                    .iter()
                    .any(|(x, y)| (a - y).abs() < 0.5 || (b - x).abs() < 0.5),
            );
        }
        // the spans' edges are used, not avoided wholesale
        assert!(near > 0, "{:?}", plan.segments);
    }

    #[test]
    fn too_little_footage_makes_a_shorter_montage_with_a_note() {
        let g = grid(120.0, 60.0, 20.0);
        let sources = vec![
            source(0, 3.0, &[]),
            source(1, 3.0, &[]),
            source(2, 2.0, &[]),
        ];
        let plan = make_plan(&settings(900, false), music(), &g, sources.clone()).unwrap();
        assert!(plan.frames < 900 && plan.frames > 0);
        assert!(
            plan.notes[0].contains("too little usable footage"),
            "{:?}",
            plan.notes
        );
        let full = make_plan(&settings(900, true), music(), &g, sources).unwrap();
        assert_eq!(full.frames, 900);
    }
}
