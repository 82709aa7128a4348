//! Actions on the mesh from the dashboard (or any client with the token): cancel a job or
//! run it again, on whichever node coordinates it; drain a node. Each needs authentication
//! ([`authorized`]); none is ever taken on a view-only page.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use rendermesh_protocol::{ControlAction, JobId};

use super::{remote, view};
use crate::api::auth::{authorized, error, ApiState};
use crate::api::desk;

#[derive(serde::Deserialize, Default)]
struct Where {
    /// The peer that coordinates the job (the page knows it); absent = this node, else
    /// every peer is asked.
    #[serde(default)]
    peer: Option<String>,
}

/// Who asks, for the logs and the job's error line.
fn who(req: &HttpRequest) -> String {
    match req.peer_addr() {
        Some(a) => format!("a user at {}", a.ip()),
        None => "a user".into(),
    }
}

/// Carry out `action` on job `id` where it runs: here, at `peer`, or wherever it is found.
async fn on_job(
    req: &HttpRequest,
    st: &ApiState,
    id: JobId,
    peer: Option<String>,
    action: ControlAction,
) -> HttpResponse {
    let rt = &st.runtime;
    let me = view::my_peer_id(st);
    let here = desk::job(rt, id).is_some();
    let answer = if here || peer.as_deref() == Some(me.as_str()) {
        desk::act(rt, &st.drain, &action, &who(req))
    } else {
        match rt.board.link() {
            None => Err(format!("no job {id} on this node")),
            Some(link) => {
                let peer = match peer.filter(|p| !p.is_empty()) {
                    Some(p) => Some(p),
                    None => remote::coordinator_of(&link, id).await,
                };
                match peer {
                    Some(p) => remote::control(&link, &p, action).await,
                    None => Err(format!("no node of the mesh knows job {id}")),
                }
            }
        }
    };
    match answer {
        Ok(line) => HttpResponse::Ok().json(serde_json::json!({ "ok": line })),
        Err(e) => error(StatusCode::CONFLICT, e),
    }
}

/// The job of the path and the peer of the body (an empty body names none), or the answer
/// to a request that is neither (boxed: a response is large).
fn parse(path: &str, body: &[u8]) -> Result<(JobId, Where), Box<HttpResponse>> {
    let id = path
        .parse()
        .map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, format!("bad job id: {e}"))))?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok((id, Where::default()));
    }
    let at = serde_json::from_slice(body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("not an action request: {e}"),
        ))
    })?;
    Ok((id, at))
}

/// `POST /v1/jobs/{id}/{action}`: cancel or rerun.
async fn job_action(
    req: HttpRequest,
    st: web::Data<ApiState>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    // authentication before anything of the request is read
    if !authorized(&req, &st) {
        return error(
            StatusCode::UNAUTHORIZED,
            "log in first (or send the control token)",
        );
    }
    let (id, at) = match parse(&path.0, &body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let action = match path.1.as_str() {
        "cancel" => ControlAction::Cancel { job: id },
        "rerun" => ControlAction::Rerun { job: id },
        other => return error(StatusCode::NOT_FOUND, format!("no action {other:?}")),
    };
    on_job(&req, &st, id, at.peer, action).await
}

async fn drain_node(
    req: HttpRequest,
    st: web::Data<ApiState>,
    path: web::Path<String>,
) -> HttpResponse {
    if !authorized(&req, &st) {
        return error(
            StatusCode::UNAUTHORIZED,
            "log in first (or send the control token)",
        );
    }
    let peer = path.into_inner();
    let answer = if peer == view::my_peer_id(&st) || peer == st.runtime.name {
        desk::act(&st.runtime, &st.drain, &ControlAction::Drain, &who(&req))
    } else {
        match st.runtime.board.link() {
            None => Err(format!("no node {peer} in this mesh")),
            Some(link) => remote::control(&link, &peer, ControlAction::Drain).await,
        }
    };
    match answer {
        Ok(line) => HttpResponse::Ok().json(serde_json::json!({ "ok": line })),
        Err(e) => error(StatusCode::CONFLICT, e),
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/jobs/{id}/{action}", web::post().to(job_action))
        .route("/v1/nodes/{peer}/drain", web::post().to(drain_node));
}
