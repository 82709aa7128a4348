//! The job's shard table as its status shows it: a row per shard ([`row`]), notes on a row
//! ([`add_note`]), progress of a run ([`show_progress`]); and a shard as an auction lot
//! ([`lot_of`]).

use rendermesh_protocol::{JobStatus, ShardRow, ShardSpec, ShardState};

use crate::sched::auction::Lot;

pub(super) fn row(index: u32, state: ShardState, frames: u64, stage: u32) -> ShardRow {
    ShardRow {
        stage,
        index,
        state,
        peer: None,
        frames,
        frames_done: 0,
        millis: 0,
        retries: 0,
        copies: 0,
        start_ms: None,
        end_ms: None,
        note: None,
    }
}

pub(super) fn add_note(row: &mut ShardRow, text: String) {
    row.note = Some(match row.note.take() {
        Some(n) => format!("{n}; {text}"),
        None => text,
    });
}

/// A run of shard `index` has done `frames_done` frames: the row shows the furthest run.
pub(super) fn show_progress(s: &mut JobStatus, index: u32, frames_done: u64) {
    if let Some(row) = s.shards.iter_mut().find(|x| x.index == index) {
        if row.state == ShardState::Running {
            row.frames_done = row.frames_done.max(frames_done.min(row.frames));
        }
    }
    s.frames_done = s.shards.iter().map(|x| x.frames_done).sum();
}

/// A shard as an auction lot: its work in its class's units.
pub(super) fn lot_of(s: &ShardSpec) -> Lot {
    Lot {
        shard: s.index,
        work: if s.cost.work.is_finite() {
            s.cost.work.max(1e-3)
        } else {
            1e-3
        },
        input_bytes: s.cost.input_bytes,
        min_mem: s.cost.ram,
    }
}
