//! Shard boundaries of the score pass. A shard's first frame is compared with the last frame
//! of the shard before it, which another box decoded: each shard returns its first and last
//! frames at the analysis size (edge frames) and the coordinator scores the pair across each
//! boundary. Once a file's shards are joined, the edges have done their work: the shards are
//! cached *compact*, their first delta filled and their edges dropped (a 1080p shard's two
//! edges are about 250 kB, its scores about 1 kB, and cache entries are replicated).
//!
//! A compact shard can stand in for its run only next to shards that need nothing of it: the
//! shard after it must be used from the cache too, and compact (a shard run anew, or a
//! cached one with edges, still wants the last edge of the shard before).

use rendermesh_protocol::SceneScores;

use super::analyze::from_edge;
use super::detect::frame_delta;

/// Whether a shard's scores still carry its edge frames.
fn has_edges(s: &SceneScores) -> bool {
    s.first.is_some() || s.last.is_some()
}

/// Score each boundary of a file's shards (in stream order) into the first delta of the
/// shard after it, then drop every edge: the shards as they are cached.
pub fn join(shards: &mut [SceneScores]) {
    for k in 1..shards.len() {
        let (before, after) = shards.split_at_mut(k);
        let (prev, s) = (&before[k - 1], &mut after[0]);
        if let (Some(last), Some(first), Some(d0)) = (&prev.last, &s.first, s.deltas.first_mut()) {
            if let (Some(a), Some(b)) = (from_edge(last), from_edge(first)) {
                *d0 = frame_delta(&a, &b).ok();
            }
        }
    }
    for s in shards {
        s.first = None;
        s.last = None;
    }
}

/// Which of a file's cached shards (in stream order; `None` = not cached) can be used as
/// they are; the others run again.
pub fn usable(cached: &[Option<&SceneScores>]) -> Vec<bool> {
    let n = cached.len();
    let mut ok = vec![false; n];
    for k in (0..n).rev() {
        let Some(s) = cached[k] else { continue };
        ok[k] = has_edges(s)
            || k + 1 == n
            || (ok[k + 1] && cached[k + 1].is_some_and(|next| !has_edges(next)));
    }
    ok
}

#[cfg(test)]
mod tests {
    use rendermesh_protocol::{EdgeFrame, HsvDelta};

    use super::*;

    fn edge(v: u8) -> EdgeFrame {
        EdgeFrame {
            width: 2,
            height: 2,
            hsv: vec![v; 12],
        }
    }

    fn shard(first_frame: u64, frames: usize, lo: u8, hi: u8) -> SceneScores {
        let mut deltas = vec![Some(HsvDelta::default()); frames];
        deltas[0] = None;
        SceneScores {
            first_frame,
            deltas,
            first: Some(edge(lo)),
            last: Some(edge(hi)),
            looks: Vec::new(),
        }
    }

    #[test]
    fn joining_scores_each_boundary_and_drops_the_edges() {
        let mut s = vec![
            shard(0, 3, 10, 10),
            shard(3, 3, 40, 40),
            shard(6, 2, 40, 40),
        ];
        join(&mut s);
        assert!(s.iter().all(|s| !has_edges(s)));
        assert_eq!(
            s[0].deltas[0], None,
            "the stream's first frame has no predecessor"
        );
        // 10 → 40 on all three planes: a change on each; 40 → 40: none
        let d = s[1].deltas[0].expect("boundary scored");
        assert!(d.hue > 0.0 && d.sat > 0.0 && d.lum > 0.0, "{d:?}");
        assert_eq!(s[2].deltas[0], Some(HsvDelta::default()));
        // a joined shard joins again to the same scores
        let again = s.clone();
        join(&mut s);
        assert_eq!(s, again);
    }

    #[test]
    fn a_compact_shard_is_used_only_before_compact_shards_that_are_used() {
        let full = shard(0, 2, 1, 1);
        let mut compact = full.clone();
        compact.first = None;
        compact.last = None;
        let (f, c) = (Some(&full), Some(&compact));
        assert_eq!(usable(&[c, c, c]), [true, true, true]);
        // the middle one runs again and wants the first one's last edge
        assert_eq!(usable(&[c, None, c]), [false, false, true]);
        // a cached shard with edges wants its predecessor's last edge too
        assert_eq!(usable(&[c, f, c]), [false, true, true]);
        assert_eq!(usable(&[f, f, None]), [true, true, false]);
        assert_eq!(usable(&[f, c, c]), [true, true, true]);
        assert_eq!(usable(&[None, c]), [false, true]);
        assert_eq!(usable(&[]), Vec::<bool>::new());
    }
}
