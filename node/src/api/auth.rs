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
    pub sessions: super::session::Sessions,
}

/// Whether `req` may act: the control token as its bearer, or a dashboard session (for a
/// write, with the session's anti-forgery token and from this server's own pages).
pub(crate) fn authorized(req: &HttpRequest, st: &ApiState) -> bool {
    bearer(req, st) || session(req, st)
}

/// Whether `req` may look: as [`authorized`], or anyone when the operator opened the views.
pub(crate) fn may_view(req: &HttpRequest, st: &ApiState) -> bool {
    st.sessions.open_views || authorized(req, st)
}

/// The session id a request's cookie names, if any.
pub(crate) fn session_id(req: &HttpRequest) -> Option<String> {
    req.cookie(super::session::COOKIE)
        .map(|c| c.value().to_string())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

fn session(req: &HttpRequest, st: &ApiState) -> bool {
    let Some(id) = session_id(req) else {
        return false;
    };
    let Some(csrf) = st.sessions.csrf_of(&id) else {
        return false;
    };
    if req.method() == actix_web::http::Method::GET || req.method() == actix_web::http::Method::HEAD
    {
        return true;
    }
    let given = req
        .headers()
        .get(super::session::CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    super::session::same_secret(given, &csrf) && same_origin(req)
}

/// A browser's word that the request comes from a page of this server: `Origin` (when
/// sent) names this host, and `Sec-Fetch-Site` (when sent) says same-origin.
pub(crate) fn same_origin(req: &HttpRequest) -> bool {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = header("sec-fetch-site") {
        if site != "same-origin" && site != "none" {
            return false;
        }
    }
    match (header("origin"), header("host")) {
        (None, _) => true,
        (Some(origin), Some(host)) => {
            origin == format!("http://{host}") || origin == format!("https://{host}")
        }
        (Some(_), None) => false,
    }
}

fn bearer(req: &HttpRequest, st: &ApiState) -> bool {
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
    super::session::same_secret(given, &st.token)
}

pub(crate) fn error(status: actix_web::http::StatusCode, msg: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "error": msg.into() }))
}
