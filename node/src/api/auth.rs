//! What every handler of the control API shares: its state, the token check and the shape
//! of an error answer.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse};

use crate::runtime::Runtime;

/// Shared state of the handlers.
pub struct ApiState {
    pub runtime: Arc<Runtime>,
    pub token: String,
    /// The mesh's peer table.
    pub peers: rendermesh_mesh::PeerView,
    /// Notified by `POST /v1/drain`: the node drains and exits.
    pub drain: Arc<tokio::sync::Notify>,
    /// The node's watched folders.
    pub watches: crate::watch::daemon::WatchBoard,
    /// Logins of the dashboard.
    pub sessions: crate::dashboard::session::Sessions,
    /// What `/metrics` shows.
    pub metrics: Arc<crate::metrics::Metrics>,
}

pub(super) fn authorized(req: &HttpRequest, st: &ApiState) -> bool {
    let Some(h) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(given) = h.strip_prefix("Bearer ") else {
        return false;
    };
    // compare without an early exit
    given.len() == st.token.len()
        && given
            .bytes()
            .zip(st.token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

pub(super) fn error(status: actix_web::http::StatusCode, msg: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "error": msg.into() }))
}
