//! Asking the mesh's other nodes about their jobs, and for actions on them
//! ([`Request::ListJobs`], [`Request::GetJob`], [`Request::Control`]).

use std::time::Duration;

use rendermesh_mesh::{MeshLink, PeerEntry, PeerId};
use rendermesh_protocol::{ControlAction, JobId, JobStatus, Request, Response, MAX_LISTED_JOBS};

/// How long a peer has to answer a question of the dashboard.
const ASK_TIMEOUT: Duration = Duration::from_millis(1500);

/// Ask `peer` one thing; an error line when it did not answer in time or refused.
pub async fn ask(link: &MeshLink, peer: &str, request: Request) -> Result<Response, String> {
    let id: PeerId = peer
        .parse()
        .map_err(|_| format!("{peer:?} is not a peer id"))?;
    match tokio::time::timeout(ASK_TIMEOUT, link.net.request(id, request)).await {
        Err(_) => Err(format!("peer {peer} did not answer in time")),
        Ok(Err(e)) => Err(format!("peer {peer}: {e}")),
        Ok(Ok(Response::Error(e))) => Err(e),
        Ok(Ok(r)) => Ok(r),
    }
}

/// The jobs of every live peer (a peer that does not answer lists none), each with the
/// row of the peer that coordinates it.
pub async fn jobs_of_peers(link: &MeshLink) -> Vec<(PeerEntry, Vec<JobStatus>)> {
    let peers = link.peers.rows();
    let asks = peers.into_iter().map(|p| async move {
        let jobs = match ask(link, &p.peer_id, Request::ListJobs).await {
            Ok(Response::Jobs(mut list)) => {
                list.truncate(MAX_LISTED_JOBS);
                list
            }
            _ => Vec::new(),
        };
        (p, jobs)
    });
    futures::future::join_all(asks).await
}

/// Job `job` as the peer `peer` that coordinates it knows it.
pub async fn job_of_peer(link: &MeshLink, peer: &str, job: JobId) -> Option<JobStatus> {
    match ask(link, peer, Request::GetJob { job }).await {
        Ok(Response::Job(Some(s))) if s.id == job => Some(s),
        _ => None,
    }
}

/// Ask `peer` to carry out `action`: its line on what it did, or why not.
pub async fn control(link: &MeshLink, peer: &str, action: ControlAction) -> Result<String, String> {
    match ask(link, peer, Request::Control(action)).await? {
        Response::Done(line) => Ok(line),
        other => Err(format!("peer {peer} answered {}", other.name())),
    }
}

/// The peer (of those live) that coordinates `job`, found by asking them all.
pub async fn coordinator_of(link: &MeshLink, job: JobId) -> Option<String> {
    for (peer, jobs) in jobs_of_peers(link).await {
        if jobs.iter().any(|j| j.id == job) {
            return Some(peer.peer_id);
        }
    }
    None
}
