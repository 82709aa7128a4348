//! Choosing material: a source range for every slot of the cut grid.
//!
//! The material is the scenes of every clip, each trimmed by a margin at both ends so a shot
//! never shows the frames around a cut (or a dissolve's edge). A scene's score comes from how
//! its sampled frames look: sharpness, motion and contrast ranked across all scenes, and how
//! well exposed it is. Slots are filled loudest section first, so the best material goes
//! where the music peaks. A slot takes the best candidate after penalties: its source is next
//! to it already, its source has been used often, a near-duplicate of it was used; a seeded
//! jitter makes another seed choose differently. A scene hands out its time from the front,
//! so no source range is used twice, and a shot is never a near-duplicate (or the same scene)
//! of the shot next to it.

use rendermesh_protocol::FrameLook;

use super::grid::{ranks, Rng, Slot};
use crate::jobs::scenes::looks::hash_distance;

/// Seconds kept clear of each end of a scene.
pub const MARGIN_S: f64 = 0.12;
/// Two hashes closer than this are near-duplicates.
pub const DUPLICATE_BITS: u32 = 10;
/// Penalties and jitter of a candidate's score.
const SAME_SOURCE_AS_NEIGHBOUR: f32 = 0.5;
const PER_USE_OF_SOURCE: f32 = 0.12;
const TWIN_USED: f32 = 0.3;
const JITTER: f64 = 0.25;

/// One scene of one source, in seconds from the source's first frame.
#[derive(Clone, Debug, PartialEq)]
pub struct Scene {
    pub source: usize,
    /// Index of the scene in its source (0 = before the first cut).
    pub scene: u32,
    pub start_s: f64,
    pub end_s: f64,
    pub score: f32,
    pub hash: u64,
}

/// The scenes of one source from its cut times, the spans of its gradual transitions and
/// its sampled frame looks (with their times, all in seconds from the source's first frame).
/// A scene gives up the part of a transition it holds, so no shot shows one. Scores are
/// filled in by [`score_scenes`].
pub fn scenes_of(
    source: usize,
    duration_s: f64,
    cut_times: &[f64],
    spans: &[(f64, f64)],
    looks: &[(f64, FrameLook)],
) -> Vec<(Scene, Vec<FrameLook>)> {
    let mut edges = vec![0.0];
    edges.extend(
        cut_times
            .iter()
            .copied()
            .filter(|t| *t > 0.0 && *t < duration_s),
    );
    edges.push(duration_s);
    edges
        .windows(2)
        .enumerate()
        .map(|(i, w)| {
            let (mut start, mut end) = (w[0], w[1]);
            for &(a, b) in spans {
                if a <= start && start < b {
                    start = b;
                }
                if a < end && end <= b {
                    end = a;
                }
            }
            let w = [start, end.max(start)];
            let inside: Vec<FrameLook> = looks
                .iter()
                .filter(|(t, _)| *t >= w[0] && *t < w[1])
                .map(|(_, l)| *l)
                .collect();
            let mid = (w[0] + w[1]) / 2.0;
            let hash = looks
                .iter()
                .filter(|(t, _)| *t >= w[0] && *t < w[1])
                .min_by(|a, b| (a.0 - mid).abs().total_cmp(&(b.0 - mid).abs()))
                .map_or(0, |(_, l)| l.hash);
            (
                Scene {
                    source,
                    scene: i as u32,
                    start_s: w[0],
                    end_s: w[1],
                    score: 0.0,
                    hash,
                },
                inside,
            )
        })
        .collect()
}

fn median(mut v: Vec<f32>) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f32::total_cmp);
    v[v.len() / 2]
}

/// Score every scene (0–1) from its frames' looks: sharpness, motion and contrast ranked
/// across all scenes, and exposure (mean luma near mid-grey).
pub fn score_scenes(scenes: Vec<(Scene, Vec<FrameLook>)>) -> Vec<Scene> {
    let sharp: Vec<f32> = scenes
        .iter()
        .map(|(_, l)| median(l.iter().map(|x| x.sharpness).collect()))
        .collect();
    let motion: Vec<f32> = scenes
        .iter()
        .map(|(_, l)| median(l.iter().map(|x| x.motion).collect()))
        .collect();
    let contrast: Vec<f32> = scenes
        .iter()
        .map(|(_, l)| median(l.iter().map(|x| x.contrast as f32).collect()))
        .collect();
    let (rs, rm, rc) = (ranks(&sharp), ranks(&motion), ranks(&contrast));
    scenes
        .into_iter()
        .enumerate()
        .map(|(i, (mut s, looks))| {
            let luma = median(looks.iter().map(|x| x.luma as f32).collect());
            let exposure = if looks.is_empty() {
                0.5
            } else {
                1.0 - ((luma - 128.0).abs() / 128.0).min(1.0)
            };
            s.score = 0.35 * rs[i] + 0.25 * rm[i] + 0.2 * rc[i] + 0.2 * exposure;
            s
        })
        .collect()
}

/// A slot filled: which scene, and the first frame in its source (frames at the output rate
/// from the source's first frame).
#[derive(Clone, Debug, PartialEq)]
pub struct Pick {
    pub scene: usize,
    pub src_start: u64,
}

/// Fill every slot, or say which slot found no material. With `reuse`, a scene's time may
/// be handed out again once all of it was used.
pub fn assign(
    slots: &[Slot],
    scenes: &[Scene],
    fps: f64,
    seed: u64,
    reuse: bool,
) -> Result<Vec<Pick>, usize> {
    let mut rng = Rng::new(seed.wrapping_mul(31).wrapping_add(7));
    // a scene's usable time, handed out from the front: [cursor, end)
    let mut cursor: Vec<f64> = scenes.iter().map(|s| s.start_s + MARGIN_S).collect();
    let twins: Vec<Vec<usize>> = (0..scenes.len())
        .map(|i| {
            (0..scenes.len())
                .filter(|&j| {
                    j != i
                        && scenes[i].hash != 0
                        && hash_distance(scenes[i].hash, scenes[j].hash) <= DUPLICATE_BITS
                })
                .collect()
        })
        .collect();
    let sources = scenes.iter().map(|s| s.source).max().map_or(0, |m| m + 1);
    let mut uses = vec![0u32; sources];
    let mut used_scene = vec![false; scenes.len()];
    let mut picks: Vec<Option<Pick>> = vec![None; slots.len()];
    let mut order: Vec<(usize, f64)> = slots
        .iter()
        .enumerate()
        .map(|(i, s)| (i, s.energy as f64 + rng.unit() * 1e-3))
        .collect();
    order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let fits = |cursor: f64, s: &Scene, frames: u64| -> Option<u64> {
        let first = (cursor * fps - 1e-9).ceil().max(0.0) as u64;
        let end = (first + frames) as f64 / fps;
        (end <= s.end_s - MARGIN_S).then_some(first)
    };
    for (slot, _) in order {
        let frames = slots[slot].frames;
        let neighbours: Vec<usize> = [slot.checked_sub(1), Some(slot + 1)]
            .into_iter()
            .flatten()
            .filter_map(|n| picks.get(n).and_then(|p| p.as_ref()).map(|p| p.scene))
            .collect();
        let clash = |c: usize| neighbours.iter().any(|&n| n == c || twins[c].contains(&n));
        let mut best: Option<(f32, usize, u64)> = None;
        // round 0 as described; 1: a near-duplicate may sit next to it (never the same
        // scene); 2, with reuse: scenes hand out their time again from the front
        for round in 0..3 {
            if best.is_some() || (round == 2 && !reuse) {
                break;
            }
            if round == 2 {
                for (c, s) in cursor.iter_mut().zip(scenes) {
                    *c = s.start_s + MARGIN_S;
                }
            }
            for (c, s) in scenes.iter().enumerate() {
                if (round == 0 && clash(c)) || neighbours.contains(&c) {
                    continue;
                }
                let Some(first) = fits(cursor[c], s, frames) else {
                    continue;
                };
                let mut score = s.score;
                if neighbours.iter().any(|&n| scenes[n].source == s.source) {
                    score -= SAME_SOURCE_AS_NEIGHBOUR;
                }
                score -= PER_USE_OF_SOURCE * uses[s.source] as f32;
                if twins[c].iter().any(|&t| used_scene[t]) {
                    score -= TWIN_USED;
                }
                score += (rng.unit() * JITTER) as f32;
                if best.is_none_or(|b| score > b.0) {
                    best = Some((score, c, first));
                }
            }
        }
        let (_, c, first) = best.ok_or(slot)?;
        cursor[c] = (first + frames) as f64 / fps;
        uses[scenes[c].source] += 1;
        used_scene[c] = true;
        picks[slot] = Some(Pick {
            scene: c,
            src_start: first,
        });
    }
    picks
        .into_iter()
        .enumerate()
        .map(|(i, p)| p.ok_or(i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hashes at least 20 bits apart from each other.
    const HASHES: [u64; 6] = [
        0x0000_0000_FFFF_FFFF,
        0xFFFF_FFFF_0000_0000,
        0x0F0F_0F0F_0F0F_0F0F,
        0xF0F0_F0F0_F0F0_F0F0,
        0x3333_3333_3333_3333,
        0xCCCC_CCCC_CCCC_CCCC,
    ];

    fn scene(source: usize, scene: u32, start_s: f64, end_s: f64, score: f32, hash: u64) -> Scene {
        Scene {
            source,
            scene,
            start_s,
            end_s,
            score,
            hash,
        }
    }

    fn slots(lens: &[u64], energy: &[f32]) -> Vec<Slot> {
        let mut at = 0;
        lens.iter()
            .zip(energy)
            .map(|(&f, &e)| {
                let s = Slot {
                    out_start: at,
                    frames: f,
                    on_downbeat: true,
                    section: 0,
                    energy: e,
                    inner: Vec::new(),
                };
                at += f;
                s
            })
            .collect()
    }

    #[test]
    fn picks_stay_inside_their_scene_never_overlap_and_neighbours_differ() {
        let scenes: Vec<Scene> = (0..6)
            .map(|i| {
                scene(
                    i % 3,
                    i as u32 / 3,
                    (i / 3) as f64 * 5.0,
                    (i / 3) as f64 * 5.0 + 5.0,
                    0.5,
                    HASHES[i],
                )
            })
            .collect();
        let sl = slots(&[30, 60, 30, 45, 30, 60, 30, 30], &[0.5; 8]);
        let picks = assign(&sl, &scenes, 30.0, 1, false).unwrap();
        let mut used: Vec<(usize, f64, f64)> = Vec::new();
        for (p, s) in picks.iter().zip(&sl) {
            let sc = &scenes[p.scene];
            let (a, b) = (
                p.src_start as f64 / 30.0,
                (p.src_start + s.frames) as f64 / 30.0,
            );
            assert!(a >= sc.start_s + MARGIN_S - 1e-9 && b <= sc.end_s - MARGIN_S + 1e-9);
            for &(src, x, y) in &used {
                assert!(src != sc.source || b <= x || a >= y, "overlap");
            }
            used.push((sc.source, a, b));
        }
        for w in picks.windows(2) {
            assert_ne!(w[0].scene, w[1].scene);
        }
    }

    #[test]
    fn the_loudest_slot_gets_the_best_scene_and_near_duplicates_are_not_adjacent() {
        let scenes = vec![
            scene(0, 0, 0.0, 3.0, 0.1, 0b1111),
            scene(1, 0, 0.0, 3.0, 0.9, 0xF0F0_0000),
            scene(2, 0, 0.0, 3.0, 0.2, 0b1110),
        ];
        let sl = slots(&[30, 30, 30], &[0.1, 0.9, 0.1]);
        let picks = assign(&sl, &scenes, 30.0, 3, false).unwrap();
        assert_eq!(picks[1].scene, 1);
        // scenes 0 and 2 are near-duplicates: they may not sit side by side, and here they
        // are not (1 sits between them)
        assert_ne!(picks[0].scene, picks[1].scene);
    }

    #[test]
    fn too_little_footage_names_the_slot_and_reuse_fills_it() {
        let scenes: Vec<Scene> = (0..3)
            .map(|i| scene(i, 0, 0.0, 2.0, 0.5, HASHES[i]))
            .collect();
        let sl = slots(&[45, 45, 45, 45, 45], &[0.5; 5]);
        assert!(assign(&sl, &scenes, 30.0, 0, false).is_err());
        let picks = assign(&sl, &scenes, 30.0, 0, true).unwrap();
        assert_eq!(picks.len(), 5);
    }

    #[test]
    fn scenes_split_at_cuts_and_sharper_scenes_score_higher() {
        let look = |frame, sharp: f32, hash| FrameLook {
            frame,
            luma: 128,
            contrast: 50,
            sharpness: sharp,
            motion: 1.0,
            hash,
        };
        let looks = vec![
            (0.5, look(0, 1.0, 7)),
            (1.5, look(1, 1.0, 8)),
            (2.5, look(2, 9.0, 9)),
        ];
        let s = score_scenes(scenes_of(0, 3.0, &[2.0], &[], &looks));
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].start_s, s[0].end_s, s[1].start_s, s[1].end_s),
            (0.0, 2.0, 2.0, 3.0)
        );
        assert_eq!(s[1].hash, 9);
        assert!(s[1].score > s[0].score);
    }
}
