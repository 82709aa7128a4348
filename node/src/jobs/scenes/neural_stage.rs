//! The neural detector's stage on the coordinator: which blocks go in which shard, with the
//! chunks their windows read and the network's weights as inputs; and a file's predictions
//! put back together from its shards.

use rendermesh_protocol::{
    video_ram_estimate, ContentId, FrameRange, JobId, ModelCap, NeuralScores, ShardCost, ShardSpec,
    ShardTask, NEURAL_BLOCK,
};

use super::neural::{blocks_of, span};

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

/// The shards of one file of `total` frames: about `frames_per_shard` frames of blocks each,
/// numbered from `next_index` on.
#[allow(clippy::too_many_arguments)]
pub fn shards(
    job: JobId,
    next_index: &mut u32,
    chunks: &[Chunk],
    total: u64,
    frames_per_shard: f64,
    model: &ModelCap,
    width: u32,
    height: u32,
) -> Vec<ShardSpec> {
    let per = ((frames_per_shard / NEURAL_BLOCK as f64).round() as u64).clamp(1, 64);
    let blocks = blocks_of(total);
    let mut out = Vec::new();
    let mut first = 0;
    while first < blocks {
        let n = per.min(blocks - first) as u32;
        let (start, end) = span(first, n, total);
        let used: Vec<&Chunk> = chunks
            .iter()
            .filter(|c| {
                let (a, b) = (c.range.first_frame, c.range.first_frame + c.range.frames);
                a < end && b > start
            })
            .collect();
        let mut inputs: Vec<ContentId> = used.iter().map(|c| c.id).collect();
        inputs.push(model.id);
        let frames = (u64::from(n) * NEURAL_BLOCK).min(total - first * NEURAL_BLOCK);
        out.push(ShardSpec {
            job,
            index: *next_index,
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
        });
        *next_index += 1;
        first += u64::from(n);
    }
    out
}

/// A file's per-frame transition probabilities from its shards' predictions (in order).
pub fn assemble(parts: &[NeuralScores], total: u64) -> Result<Vec<f32>, String> {
    let mut single = Vec::with_capacity(total as usize);
    for p in parts {
        if p.first_frame != single.len() as u64 || p.single.len() != p.many.len() {
            return Err(format!(
                "predictions from frame {} where frame {} was next",
                p.first_frame,
                single.len()
            ));
        }
        single.extend_from_slice(&p.single);
    }
    if single.len() as u64 != total {
        return Err(format!(
            "predictions for {} frames, the file has {total}",
            single.len()
        ));
    }
    Ok(single)
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
        let mut next = 7;
        let s = shards(JobId(1), &mut next, &chunks, 200, 100.0, &model, 64, 36);
        assert_eq!(next, 9);
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
    }

    #[test]
    fn predictions_must_follow_each_other_and_cover_the_file() {
        let part = |first, n| NeuralScores {
            first_frame: first,
            single: vec![0.1; n],
            many: vec![0.0; n],
        };
        assert_eq!(
            assemble(&[part(0, 50), part(50, 20)], 70).unwrap().len(),
            70
        );
        assert!(assemble(&[part(0, 50), part(60, 10)], 70).is_err());
        assert!(assemble(&[part(0, 50)], 70).is_err());
    }
}
