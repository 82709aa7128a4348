//! The control API server (actix-web), run by `rendermesh node`.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use actix_web::{web, HttpRequest, HttpResponse};
use rendermesh_protocol::{JobId, JobResult};

pub use super::auth::ApiState;
use super::auth::{authorized, error};
use super::{ControlInfo, INFO_FILE, TOKEN_FILE};
use crate::jobs::kind::SubmitRequest;

/// The control token: the one in the data dir when it is there, well-formed and hidden from
/// other users (so a Prometheus that holds a copy keeps scraping across restarts), else a fresh
/// random one written there. Either way the file is left at mode 0600, the node's user only:
/// whoever holds the token may name any path the node can read, so the node's group reaches
/// the node through the local socket instead ([`super::local`]), with its files passed open.
pub fn write_token(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join(TOKEN_FILE);
    if let Ok(meta) = std::fs::metadata(&path) {
        let kept = std::fs::read_to_string(&path).unwrap_or_default();
        let kept = kept.trim();
        if meta.permissions().mode() & 0o007 == 0
            && kept.len() == 64
            && kept.bytes().all(|b| b.is_ascii_hexdigit())
        {
            // a token of an earlier version was readable by the group
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            return Ok(kept.to_string());
        }
    }
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut seed))?;
    let token = blake3::hash(&seed).to_hex().to_string();
    let _ = std::fs::remove_file(&path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    std::io::Write::write_all(&mut f, token.as_bytes())?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(token)
}

pub fn write_info(data_dir: &Path, info: &ControlInfo) -> std::io::Result<()> {
    let tmp = data_dir.join(format!("{INFO_FILE}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec_pretty(info).unwrap_or_default())?;
    std::fs::rename(tmp, data_dir.join(INFO_FILE))
}

macro_rules! guard {
    ($req:expr, $st:expr) => {
        if !authorized(&$req, &$st) {
            return error(
                actix_web::http::StatusCode::UNAUTHORIZED,
                "missing or wrong control token",
            );
        }
    };
}

async fn health(st: web::Data<ApiState>) -> HttpResponse {
    HttpResponse::Ok()
        .json(serde_json::json!({ "name": st.runtime.name, "version": env!("CARGO_PKG_VERSION") }))
}

async fn submit(req: HttpRequest, st: web::Data<ApiState>, body: web::Bytes) -> HttpResponse {
    // the token first: nothing of an unauthenticated body is read
    guard!(req, st);
    let body: SubmitRequest = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                actix_web::http::StatusCode::BAD_REQUEST,
                format!("not a job request: {e}"),
            )
        }
    };
    // a submit that came through the local socket reads passed files only
    let passed_only = req.headers().contains_key(super::local::PASSED_ONLY);
    let submitted = if passed_only {
        st.runtime.submit_where(body, super::local::check_passed)
    } else {
        st.runtime.submit(body)
    };
    match submitted {
        Ok(handle) => {
            HttpResponse::Accepted().json(serde_json::json!({ "id": handle.id().to_string() }))
        }
        Err(e) => HttpResponse::BadRequest().json(serde_json::json!({ "error": e })),
    }
}

async fn drain(req: HttpRequest, st: web::Data<ApiState>) -> HttpResponse {
    guard!(req, st);
    st.drain.notify_one();
    HttpResponse::Accepted().json(serde_json::json!({ "draining": true }))
}

/// The board's jobs and the kept jobs of earlier runs (see [`crate::history`]), newest first.
async fn list(req: HttpRequest, st: web::Data<ApiState>) -> HttpResponse {
    guard!(req, st);
    let mut jobs = st.runtime.board.list();
    let (history, n) = (st.runtime.history.clone(), st.runtime.cfg.job_history);
    let past = web::block(move || history.list(n))
        .await
        .unwrap_or_default();
    let live: std::collections::HashSet<JobId> = jobs.iter().map(|j| j.id).collect();
    jobs.extend(past.into_iter().filter(|j| !live.contains(&j.id)));
    jobs.sort_by_key(|j| std::cmp::Reverse(j.started_unix_ms));
    HttpResponse::Ok().json(jobs)
}

async fn peers(req: HttpRequest, st: web::Data<ApiState>) -> HttpResponse {
    guard!(req, st);
    HttpResponse::Ok().json(st.peers.rows())
}

async fn cache_entries(req: HttpRequest, st: web::Data<ApiState>) -> HttpResponse {
    guard!(req, st);
    let entries = st.runtime.cache.entries.clone();
    match web::block(move || entries.list()).await {
        Ok(Ok(list)) => HttpResponse::Ok().json(
            list.into_iter()
                .map(|e| super::CacheRow {
                    key: e.key.to_string(),
                    kind: e.kind.to_string(),
                    bytes: e.bytes,
                })
                .collect::<Vec<_>>(),
        ),
        Ok(Err(e)) => error(
            actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        ),
        Err(e) => error(
            actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        ),
    }
}

/// The job named in the path, or the error response to send (boxed: a response is large).
/// A job of an earlier run is gone: only its status is kept.
fn job_of(path: &str, st: &ApiState) -> Result<rendermesh_mesh::JobHandle, Box<HttpResponse>> {
    let id: JobId = path.parse().map_err(|e| {
        Box::new(error(
            actix_web::http::StatusCode::BAD_REQUEST,
            format!("bad job id: {e}"),
        ))
    })?;
    st.runtime.board.get(id).ok_or_else(|| {
        Box::new(match st.runtime.history.get(id) {
            Some(_) => error(
                actix_web::http::StatusCode::GONE,
                format!("job {id} ran before the node restarted: only its status is kept"),
            ),
            None => error(
                actix_web::http::StatusCode::NOT_FOUND,
                format!("no job {id}"),
            ),
        })
    })
}

/// The kept status of a job of an earlier run named in the path.
fn past_job(path: &str, st: &ApiState) -> Option<rendermesh_protocol::JobStatus> {
    st.runtime.history.get(path.parse().ok()?)
}

/// Longest wait a status request may ask for (`?wait_ms=`).
const MAX_STATUS_WAIT_MS: u64 = 2000;

#[derive(serde::Deserialize)]
struct StatusQuery {
    /// Answer once the job is over, or after this many milliseconds (at most
    /// [`MAX_STATUS_WAIT_MS`]); absent or 0 = at once.
    #[serde(default)]
    wait_ms: u64,
}

async fn status(
    req: HttpRequest,
    st: web::Data<ApiState>,
    path: web::Path<String>,
    query: web::Query<StatusQuery>,
) -> HttpResponse {
    guard!(req, st);
    match job_of(&path, &st) {
        Ok(h) => {
            if query.wait_ms > 0 {
                let wait = query.wait_ms.min(MAX_STATUS_WAIT_MS);
                h.wait_at_most(std::time::Duration::from_millis(wait)).await;
            }
            HttpResponse::Ok().json(h.status())
        }
        Err(r) => match past_job(&path, &st) {
            Some(s) => HttpResponse::Ok().json(s),
            None => *r,
        },
    }
}

async fn result(
    req: HttpRequest,
    st: web::Data<ApiState>,
    path: web::Path<String>,
) -> HttpResponse {
    guard!(req, st);
    let h = match job_of(&path, &st) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    match h.result() {
        None => error(
            actix_web::http::StatusCode::CONFLICT,
            "job is still running",
        ),
        Some(Err(e)) => error(actix_web::http::StatusCode::UNPROCESSABLE_ENTITY, e),
        Some(Ok(r)) => HttpResponse::Ok().json(r),
    }
}

fn output_of(h: &rendermesh_mesh::JobHandle) -> Option<rendermesh_protocol::ContentId> {
    match h.result() {
        Some(Ok(JobResult::Transcode { output, .. }))
        | Some(Ok(JobResult::Montage { output, .. })) => Some(output),
        _ => None,
    }
}

async fn output(
    req: HttpRequest,
    st: web::Data<ApiState>,
    path: web::Path<String>,
) -> HttpResponse {
    guard!(req, st);
    let h = match job_of(&path, &st) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    let Some(id) = output_of(&h) else {
        return error(
            actix_web::http::StatusCode::CONFLICT,
            "job has no output file",
        );
    };
    match actix_files::NamedFile::open_async(st.runtime.cache.blobs.path(&id)).await {
        Ok(f) => f.into_response(&req),
        Err(e) => error(
            actix_web::http::StatusCode::GONE,
            format!("output is no longer stored: {e}"),
        ),
    }
}

async fn drop_output(
    req: HttpRequest,
    st: web::Data<ApiState>,
    path: web::Path<String>,
) -> HttpResponse {
    guard!(req, st);
    let h = match job_of(&path, &st) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    if let Some(id) = output_of(&h) {
        let _ = st.runtime.cache.blobs.remove(&id);
    }
    HttpResponse::NoContent().finish()
}

/// Item `n` of a job of many files, and its output blob (when it has one).
fn item_of(
    req: &HttpRequest,
    st: &ApiState,
    path: &(String, usize),
) -> Result<rendermesh_protocol::ContentId, Box<HttpResponse>> {
    let _ = req;
    let h = job_of(&path.0, st)?;
    let status = h.status();
    let item = status.items.get(path.1).ok_or_else(|| {
        Box::new(error(
            actix_web::http::StatusCode::NOT_FOUND,
            format!("job {} has no item {}", status.id, path.1),
        ))
    })?;
    match (item.state.is_ok(), item.output) {
        (true, Some(id)) => Ok(id),
        _ => Err(Box::new(error(
            actix_web::http::StatusCode::CONFLICT,
            format!("{}: has no output (yet)", item.name),
        ))),
    }
}

async fn item_output(
    req: HttpRequest,
    st: web::Data<ApiState>,
    path: web::Path<(String, usize)>,
) -> HttpResponse {
    guard!(req, st);
    let id = match item_of(&req, &st, &path) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    match actix_files::NamedFile::open_async(st.runtime.cache.blobs.path(&id)).await {
        Ok(f) => f.into_response(&req),
        Err(e) => error(
            actix_web::http::StatusCode::GONE,
            format!("output is no longer stored: {e}"),
        ),
    }
}

async fn drop_item_output(
    req: HttpRequest,
    st: web::Data<ApiState>,
    path: web::Path<(String, usize)>,
) -> HttpResponse {
    guard!(req, st);
    match item_of(&req, &st, &path) {
        Ok(id) => {
            // a blob another job pins stays
            let _ = st.runtime.cache.blobs.remove_unpinned(&id);
            HttpResponse::NoContent().finish()
        }
        Err(r) => *r,
    }
}

/// Routes of the control API.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::JsonConfig::default().limit(1 << 20))
        .route("/v1/health", web::get().to(health))
        .route("/v1/jobs", web::post().to(submit))
        .route("/v1/jobs", web::get().to(list))
        .route("/v1/peers", web::get().to(peers))
        .route("/v1/drain", web::post().to(drain))
        .route("/v1/cache/entries", web::get().to(cache_entries))
        .route("/v1/jobs/{id}", web::get().to(status))
        .route("/v1/jobs/{id}/result", web::get().to(result))
        .route("/v1/jobs/{id}/output", web::get().to(output))
        .route("/v1/jobs/{id}/output", web::delete().to(drop_output))
        .route("/v1/jobs/{id}/items/{n}/output", web::get().to(item_output))
        .route(
            "/v1/jobs/{id}/items/{n}/output",
            web::delete().to(drop_item_output),
        )
        .configure(super::watch::routes);
}
