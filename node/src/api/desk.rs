//! What a node answers about its jobs, to its own control API and to its peers
//! ([`rendermesh_mesh::service::ControlDesk`]): the jobs it coordinates (live, then from its
//! history), one job whole, and the actions: cancel, run again, drain.

use std::sync::Arc;

use rendermesh_mesh::service::ControlDesk;
use rendermesh_mesh::PeerId;
use rendermesh_protocol::{ControlAction, JobId, JobStatus, Request, Response, MAX_LISTED_JOBS};

use crate::runtime::Runtime;

/// The jobs this node coordinates, newest first: those of this run of the node, then its
/// history (at most `max`), without shard tables.
pub fn jobs(rt: &Runtime, max: usize) -> Vec<JobStatus> {
    let mut all: Vec<JobStatus> = rt
        .board
        .list()
        .into_iter()
        .map(|mut s| {
            s.shards.clear();
            s
        })
        .collect();
    for old in rt.history.summaries(max) {
        if !all.iter().any(|j| j.id == old.id) {
            all.push(old);
        }
    }
    all.sort_by_key(|j| std::cmp::Reverse(j.started_unix_ms));
    all.truncate(max);
    all
}

/// One job this node coordinates (or did, in its history).
pub fn job(rt: &Runtime, id: JobId) -> Option<JobStatus> {
    rt.board
        .get(id)
        .map(|h| h.status())
        .or_else(|| rt.history.get(id))
}

/// A job as a list shows it: without its shard table and files.
pub fn summary(mut s: JobStatus) -> JobStatus {
    s.shards.clear();
    s.items.clear();
    s
}

/// Carry out `action` here for `who` (a user, a peer): one line on what was done, or why not.
pub fn act(
    rt: &Runtime,
    drain: &tokio::sync::Notify,
    action: &ControlAction,
    who: &str,
) -> Result<String, String> {
    match action {
        ControlAction::Cancel { job } => {
            rt.board.cancel(*job, &format!("cancelled by {who}"))?;
            Ok(format!("job {job} cancelled on {}", rt.name))
        }
        ControlAction::Rerun { job } => {
            let state = self::job(rt, *job)
                .map(|s| s.state)
                .ok_or_else(|| format!("no job {job} on {}", rt.name))?;
            if !state.is_final() {
                return Err(format!("job {job} is still running"));
            }
            let req = rt
                .history
                .request(*job)
                .ok_or_else(|| format!("{} does not know how job {job} was submitted", rt.name))?;
            let handle = rt.submit(req)?;
            tracing::info!(job = %job, new = %handle.id(), who, "job run again");
            Ok(handle.id().to_string())
        }
        ControlAction::Drain => {
            tracing::info!(who, "asked to drain");
            drain.notify_one();
            Ok(format!("{} is draining", rt.name))
        }
    }
}

/// The node's desk for its peers' questions.
pub struct Desk {
    pub runtime: Arc<Runtime>,
    pub drain: Arc<tokio::sync::Notify>,
}

impl ControlDesk for Desk {
    fn answer(&self, peer: PeerId, request: Request) -> Response {
        let rt = &self.runtime;
        match request {
            Request::ListJobs => {
                Response::Jobs(jobs(rt, MAX_LISTED_JOBS).into_iter().map(summary).collect())
            }
            Request::GetJob { job: id } => Response::Job(job(rt, id)),
            Request::Control(action) => {
                match act(rt, &self.drain, &action, &format!("peer {peer}")) {
                    Ok(line) => Response::Done(line),
                    Err(e) => Response::Error(e),
                }
            }
            _ => Response::Error("not a question on jobs".into()),
        }
    }
}
