//! The control API: JSON over HTTP on loopback, guarded by a token readable only by the
//! node's user and group.
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/v1/health` | `{name, version}` (no token needed) |
//! | POST | `/v1/jobs` | body [`SubmitRequest`](crate::jobs::kind::SubmitRequest) → `{id}` |
//! | GET | `/v1/jobs` | every [`JobStatus`](rendermesh_protocol::JobStatus) |
//! | GET | `/v1/jobs/{id}[?wait_ms=N]` | one `JobStatus`; with `wait_ms`, once the job ends or after N ms (at most 2000) |
//! | GET | `/v1/jobs/{id}/result` | the [`JobResult`](rendermesh_protocol::JobResult) (409 while running) |
//! | GET | `/v1/jobs/{id}/output` | the bytes of a transcode's output |
//! | DELETE | `/v1/jobs/{id}/output` | drop the output from the node's store |
//! | GET | `/v1/jobs/{id}/items/{n}/output` | the bytes of file `n`'s output in a job of many files |
//! | DELETE | `/v1/jobs/{id}/items/{n}/output` | drop that output (unless another job holds it) |
//! | GET | `/v1/peers` | the peer table: every [`PeerEntry`](rendermesh_mesh::PeerEntry) |
//! | GET | `/v1/watches` | the node's watched folders: every [`WatchRow`](crate::watch::WatchRow) |
//! | GET | `/v1/watch/{id}/records` | the marks of watch `id`: every [`MarkRow`] |
//! | PUT | `/v1/watch/{id}/records` | body [`MarkRow`]: store one mark (`rendermesh watch` against a node) |
//! | GET | `/metrics` | Prometheus metrics (see [`crate::metrics`]); the token as a bearer unless `metrics_open` |
//!
//! The daemon writes `control.json` (address, pid, local socket) and `control.token` (mode
//! 0600: the node's user only) into its data dir. The CLI of a user of this box talks to the
//! node through the local socket ([`local`]), its group membership the permission and its
//! input files passed open; the HTTP API with the token is for the dashboard, Prometheus and
//! remote tools. It also writes `mesh.json` ([`MeshInfo`]): peer id, mesh id and
//! the mesh transport's actual listen addresses.

pub(crate) mod auth;
pub mod client;
pub mod desk;
pub mod fdpass;
#[cfg(test)]
mod fuzz;
pub mod local;
pub mod password;
pub mod server;
pub mod session;
mod watch;

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Contents of `control.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ControlInfo {
    pub addr: String,
    pub pid: u32,
    pub name: String,
    /// The dashboard's second address (`dashboard_listen`), when set.
    #[serde(default)]
    pub dashboard: Option<String>,
    /// The local socket ([`local`]), for the users of this box.
    #[serde(default)]
    pub socket: Option<std::path::PathBuf>,
}

/// One cache entry as the control API lists it (`GET /v1/cache/entries`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRow {
    pub key: String,
    pub kind: String,
    /// Size of the stored record.
    pub bytes: usize,
}

/// The mark of one file of a watched folder (`/v1/watch/{id}/records`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkRow {
    /// The file's path relative to the watched folder.
    pub file: String,
    pub mark: rendermesh_cache::Mark,
}

/// Contents of `mesh.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MeshInfo {
    pub pid: u32,
    pub peer_id: String,
    pub mesh_id: String,
    pub listen: Vec<String>,
}

pub const MESH_FILE: &str = "mesh.json";
pub const INFO_FILE: &str = "control.json";
pub const TOKEN_FILE: &str = "control.token";

/// A client of the node of `data_dir`: through its local socket when there is one (the node's
/// group is the permission), else its HTTP API with the token (the node's user, or root).
/// `None` when no node wrote its address there or neither way is open to this user.
pub fn connect(data_dir: &Path) -> Option<(ControlInfo, client::Client)> {
    let info: ControlInfo =
        serde_json::from_slice(&std::fs::read(data_dir.join(INFO_FILE)).ok()?).ok()?;
    if let Some(sock) = &info.socket {
        if std::fs::symlink_metadata(sock).is_ok() {
            let client = client::Client::local(sock.clone());
            return Some((info, client));
        }
    }
    read_control(data_dir).map(|(info, token)| {
        let client = client::Client::new(&info, token);
        (info, client)
    })
}

/// Read the daemon's address and token from a data dir, if a daemon wrote them.
pub fn read_control(data_dir: &Path) -> Option<(ControlInfo, String)> {
    let info: ControlInfo =
        serde_json::from_slice(&std::fs::read(data_dir.join(INFO_FILE)).ok()?).ok()?;
    let token = std::fs::read_to_string(data_dir.join(TOKEN_FILE))
        .ok()?
        .trim()
        .to_string();
    Some((info, token))
}
