//! The neural detector's stage on the coordinator: which blocks go in which shard, with the
//! chunks their windows read and the network's weights as inputs; and a file's predictions
//! put back together from its shards.

use rendermesh_protocol::{
    video_ram_estimate, ContentId, FrameRange, JobId, ModelCap, NeuralScores, ShardCost, ShardSpec,
    ShardTask, NEURAL_BLOCK,
};

use super::neural::{span, Predictions};

/// The task class of the network's work (its speed counts frames through the network).
pub const CLASS: &str = "transnet";
/// Memory of the network's activations on a 100-frame window, beyond decoding.
const NET_RAM: u64 = 512 << 20;

/// A chunk blob of a file, with the frames it holds.
pub struct Chunk {
    pub range: FrameRange,
    pub id: ContentId,
    pub bytes: u64,
}

/// The block ranges `(first, count)` of the network's shards over `runs` of consecutive
/// blocks: about `frames_per_shard` frames each, a shard never spanning two runs.
pub fn split(runs: &[(u64, u32)], frames_per_shard: f64) -> Vec<(u64, u32)> {
    let per = ((frames_per_shard / NEURAL_BLOCK as f64).round() as u32).clamp(1, 64);
    let mut out = Vec::new();
    for &(first, count) in runs {
        let mut at = 0;
        while at < count {
            let n = per.min(count - at);
            out.push((first + u64::from(at), n));
            at += n;
        }
    }
    out
}

/// Whether a chunk holding `range` has frames that blocks `first..first+n` read.
pub fn reads(range: &FrameRange, (first, n): (u64, u32), total: u64) -> bool {
    let (start, end) = span(first, n, total);
    let (a, b) = (range.first_frame, range.first_frame + range.frames);
    a < end && b > start
}

/// Shard `index` of a file of `total` frames: blocks `first..first+n`, reading the chunks
/// their windows need and the weights last.
#[allow(clippy::too_many_arguments)]
pub fn spec(
    job: JobId,
    index: u32,
    chunks: &[Chunk],
    (first, n): (u64, u32),
    total: u64,
    model: &ModelCap,
    width: u32,
    height: u32,
) -> ShardSpec {
    let used: Vec<&Chunk> = chunks
        .iter()
        .filter(|c| reads(&c.range, (first, n), total))
        .collect();
    let mut inputs: Vec<ContentId> = used.iter().map(|c| c.id).collect();
    inputs.push(model.id);
    let frames = (u64::from(n) * NEURAL_BLOCK).min(total.saturating_sub(first * NEURAL_BLOCK));
    ShardSpec {
        job,
        index,
        task: ShardTask::SceneNeural {
            chunks: used.iter().map(|c| c.range).collect(),
            first_block: first,
            blocks: n,
            total_frames: total,
        },
        class: CLASS.to_string(),
        required: false,
        inputs,
        cost: ShardCost {
            units: frames,
            work: frames as f64,
            ram: video_ram_estimate(width, height).saturating_add(NET_RAM),
            input_bytes: used.iter().map(|c| c.bytes).sum::<u64>() + model.bytes,
        },
    }
}

/// A file's predictions from its shards', 0 on the frames the network did not run on;
/// `full`: it must have run on every frame.
pub fn assemble(parts: &[NeuralScores], total: u64, full: bool) -> Result<Predictions, String> {
    let mut p = Predictions {
        single: vec![0.0f32; total as usize],
        many: vec![0.0f32; total as usize],
        luma: vec![None; total as usize],
    };
    let mut covered = 0u64;
    for s in parts {
        let end = s.first_frame.checked_add(s.single.len() as u64);
        let fits = |e: &u64| {
            *e <= total
                && s.single.len() == s.many.len()
                && (s.luma.is_empty() || s.luma.len() == s.single.len())
        };
        let Some(end) = end.filter(fits) else {
            return Err(format!(
                "predictions for frames {}..+{} of a file of {total}",
                s.first_frame,
                s.single.len()
            ));
        };
        let range = s.first_frame as usize..end as usize;
        p.single[range.clone()].copy_from_slice(&s.single);
        p.many[range.clone()].copy_from_slice(&s.many);
        for (to, l) in p.luma[range].iter_mut().zip(&s.luma) {
            *to = Some(*l);
        }
        covered += s.single.len() as u64;
    }
    if full && covered != total {
        return Err(format!(
            "predictions for {covered} frames, the file has {total}"
        ));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rendermesh_protocol::Rational;

    fn chunk(first: u64, frames: u64) -> Chunk {
        Chunk {
            range: FrameRange {
                start_pts: first as i64,
                end_pts: Some((first + frames) as i64),
                time_base: Rational { num: 1, den: 30 },
                first_frame: first,
                frames,
                fps: Rational { num: 30, den: 1 },
                ts_offset: 0,
            },
            id: ContentId::of(&first.to_le_bytes()),
            bytes: 1000,
        }
    }

    #[test]
    fn each_shard_reads_the_chunks_its_windows_need_and_the_model_last() {
        let chunks = [chunk(0, 60), chunk(60, 60), chunk(120, 60), chunk(180, 20)];
        let model = ModelCap {
            name: "transnetv2".into(),
            id: ContentId::of(b"weights"),
            bytes: 30,
        };
        let parts = split(&[(0, 4)], 100.0);
        assert_eq!(parts, vec![(0, 2), (2, 2)]);
        let s: Vec<ShardSpec> = parts
            .iter()
            .enumerate()
            .map(|(i, p)| spec(JobId(1), 7 + i as u32, &chunks, *p, 200, &model, 64, 36))
            .collect();
        let tasks: Vec<_> = s
            .iter()
            .map(|s| match &s.task {
                ShardTask::SceneNeural {
                    chunks,
                    first_block,
                    blocks,
                    ..
                } => (
                    chunks.len(),
                    *first_block,
                    *blocks,
                    s.inputs.len(),
                    s.cost.units,
                ),
                _ => unreachable!(),
            })
            .collect();
        // blocks 0-1 read frames 0..125 (chunks 0, 1, 2), blocks 2-3 read 75..200 (1, 2, 3)
        assert_eq!(tasks, vec![(3, 0, 2, 4, 100), (3, 2, 2, 4, 100)]);
        assert!(s.iter().all(|s| *s.inputs.last().unwrap() == model.id));
        assert!(s.iter().all(|s| s.validate().is_ok()));
        // a lone block in the middle reads only the chunks around it
        assert!(!reads(&chunks[0].range, (2, 1), 200));
        assert!(reads(&chunks[1].range, (2, 1), 200));
        assert!(!reads(&chunks[3].range, (2, 1), 200));
    }

    #[test]
    fn shards_follow_runs_and_never_span_two() {
        assert_eq!(
            split(&[(0, 3), (7, 1), (10, 5)], 100.0),
            vec![(0, 2), (2, 1), (7, 1), (10, 2), (12, 2), (14, 1)]
        );
        assert_eq!(split(&[(3, 2)], 0.0), vec![(3, 1), (4, 1)]);
        assert!(split(&[], 100.0).is_empty());
    }

    #[test]
    fn predictions_must_fit_the_file_and_cover_it_when_asked() {
        let part = |first, n| NeuralScores {
            first_frame: first,
            single: vec![0.1; n],
            many: vec![0.2; n],
            luma: vec![40; n],
        };
        let whole = assemble(&[part(0, 50), part(50, 20)], 70, true).unwrap();
        assert_eq!((whole.single.len(), whole.many.len()), (70, 70));
        assert!(assemble(&[part(0, 50), part(60, 10)], 70, true).is_err());
        assert!(assemble(&[part(0, 50)], 70, true).is_err());
        // the cascade's parts leave gaps at 0
        let sparse = assemble(&[part(50, 20)], 100, false).unwrap();
        let s = &sparse.single;
        assert_eq!((s[49], s[50], s[69], s[70]), (0.0, 0.1, 0.1, 0.0));
        let m = &sparse.many;
        assert_eq!((m[49], m[50], m[69], m[70]), (0.0, 0.2, 0.2, 0.0));
        assert_eq!((sparse.luma[49], sparse.luma[50]), (None, Some(40)));
        let mut short = part(0, 50);
        short.luma.pop();
        assert!(
            assemble(&[short], 50, true).is_err(),
            "a luma per frame or none"
        );
        assert!(assemble(&[part(90, 20)], 100, false).is_err());
        assert!(assemble(&[part(u64::MAX, 20)], 100, false).is_err());
    }
}
