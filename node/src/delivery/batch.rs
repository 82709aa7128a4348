//! A job of many files followed to its end: every file that finishes is written to its
//! destination at once (atomically), its output dropped from the node unless the job keeps
//! it; one [`Outcome`] per file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rendermesh_protocol::{ContentId, ItemState, JobItem, JobStatus};

use super::files::write_atomic;
use super::JobView;

/// How one file of a batch ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Written to its destination; `cached`: no encode was needed.
    Written {
        dest: PathBuf,
        frames: u64,
        bytes: u64,
        cached: bool,
        note: Option<String>,
    },
    Failed(String),
}

/// Follow a batch to its end. `dests[n]` is where item `n` goes; `keep`: leave the outputs
/// in the node's store (proxies). `on_status` sees every status; `on_item` every item as it
/// ends. An error is the job itself going wrong (the node gone); files that failed are
/// outcomes.
pub fn follow(
    view: &dyn JobView,
    dests: &[PathBuf],
    keep: bool,
    on_status: &mut dyn FnMut(&JobStatus),
    on_item: &mut dyn FnMut(usize, &Outcome),
) -> anyhow::Result<(JobStatus, Vec<Outcome>)> {
    let mut outcomes: Vec<Option<Outcome>> = vec![None; dests.len()];
    loop {
        let s = view.status(150)?;
        on_status(&s);
        let mut ended: Vec<usize> = Vec::new();
        for (n, item) in s.items.iter().enumerate().take(dests.len()) {
            if outcomes[n].is_none() && item.state.is_final() {
                let o = write_item(view, n, item, &dests[n]);
                on_item(n, &o);
                outcomes[n] = Some(o);
                ended.push(n);
            }
        }
        if !keep {
            drop_delivered(view, &s.items, &outcomes, &ended);
        }
        if s.state.is_final() {
            let why = s
                .error
                .clone()
                .unwrap_or_else(|| "the job ended without this file".into());
            let all = outcomes
                .into_iter()
                .enumerate()
                .map(|(n, o)| {
                    o.unwrap_or_else(|| {
                        let o = Outcome::Failed(why.clone());
                        on_item(n, &o);
                        o
                    })
                })
                .collect();
            return Ok((s, all));
        }
    }
}

fn write_item(view: &dyn JobView, n: usize, item: &JobItem, dest: &PathBuf) -> Outcome {
    let (true, Some(id)) = (item.state.is_ok(), item.output) else {
        return Outcome::Failed(item.note.clone().unwrap_or_else(|| "failed".into()));
    };
    let written = view.item_output(n, &id).and_then(|r| write_atomic(dest, r));
    match written {
        Ok(b) if b == item.bytes => Outcome::Written {
            dest: dest.clone(),
            frames: item.frames,
            bytes: b,
            cached: item.state == ItemState::Cached,
            note: item.note.clone(),
        },
        Ok(b) => {
            let _ = std::fs::remove_file(dest);
            Outcome::Failed(format!(
                "{}: received {b} of {} bytes; removed",
                dest.display(),
                item.bytes
            ))
        }
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// Outputs whose every item has ended (written or not) are dropped from the node.
fn drop_delivered(
    view: &dyn JobView,
    items: &[JobItem],
    outcomes: &[Option<Outcome>],
    ended: &[usize],
) {
    let mut users: BTreeMap<ContentId, Vec<usize>> = BTreeMap::new();
    for (n, item) in items.iter().enumerate() {
        if let Some(id) = item.output {
            users.entry(id).or_default().push(n);
        }
    }
    for &n in ended {
        let Some(id) = items.get(n).and_then(|i| i.output) else {
            continue;
        };
        let all = users.get(&id).map(Vec::as_slice).unwrap_or_default();
        if all
            .iter()
            .all(|&m| outcomes.get(m).is_some_and(Option::is_some))
        {
            // the last of its items: each output is dropped once
            if all.iter().max() == ended.iter().filter(|e| all.contains(e)).max() {
                view.drop_item_output(n, &id);
            }
        }
    }
}
