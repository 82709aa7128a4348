//! The control API of watched folders: the node's watches with their counters and recent
//! errors, and the marks of a watch, which `rendermesh watch` reads and writes through the
//! node that holds the store (see `crate::watch` for why the file travels in the body).

use std::path::{Component, Path};

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::{authorized, error, ApiState};
use super::MarkRow;

fn denied() -> HttpResponse {
    error(StatusCode::UNAUTHORIZED, "missing or wrong control token")
}

/// Is `text` a watch id: hex digits, as `WatchSpec::id` makes them?
fn watch_id_ok(text: &str) -> bool {
    !text.is_empty() && text.len() <= 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

fn bad_watch_id(text: &str) -> HttpResponse {
    error(StatusCode::BAD_REQUEST, format!("bad watch id {text:?}"))
}

/// A file name of a watched folder: a relative path without `.` or `..` parts.
fn file_ok(file: &str) -> bool {
    let p = Path::new(file);
    !file.is_empty()
        && file.len() <= rendermesh_cache::marks::MAX_NAME
        && !file.contains('\0')
        && p.components().all(|c| matches!(c, Component::Normal(_)))
}

async fn watches(req: HttpRequest, st: web::Data<ApiState>) -> HttpResponse {
    if !authorized(&req, &st) {
        return denied();
    }
    HttpResponse::Ok().json(st.watches.rows())
}

async fn records(
    req: HttpRequest,
    st: web::Data<ApiState>,
    path: web::Path<String>,
) -> HttpResponse {
    if !authorized(&req, &st) {
        return denied();
    }
    if !watch_id_ok(&path) {
        return bad_watch_id(&path);
    }
    let id = path.into_inner();
    let marks = st.runtime.cache.marks.clone();
    match web::block(move || marks.list(&id)).await {
        Ok(Ok(list)) => HttpResponse::Ok().json(
            list.into_iter()
                .map(|(file, mark)| MarkRow { file, mark })
                .collect::<Vec<_>>(),
        ),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn put_record(
    req: HttpRequest,
    st: web::Data<ApiState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    // the token first: nothing of an unauthenticated body is read
    if !authorized(&req, &st) {
        return denied();
    }
    if !watch_id_ok(&path) {
        return bad_watch_id(&path);
    }
    let id = path.into_inner();
    let row: MarkRow = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not a mark: {e}")),
    };
    if !file_ok(&row.file) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{:?} is not a file name within a watched folder", row.file),
        );
    }
    let marks = st.runtime.cache.marks.clone();
    match web::block(move || marks.put(&id, &row.file, &row.mark)).await {
        Ok(Ok(())) => HttpResponse::NoContent().finish(),
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/watches", web::get().to(watches))
        .route("/v1/watch/{id}/records", web::get().to(records))
        .route("/v1/watch/{id}/records", web::put().to(put_record));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_stay_within_the_folder() {
        assert!(file_ok("a.mp4") && file_ok("day1/a.mp4"));
        for bad in [
            "",
            "/etc/a.mp4",
            "../a.mp4",
            "a/../../b.mp4",
            "./a.mp4",
            "a\0b",
        ] {
            assert!(!file_ok(bad), "{bad:?}");
        }
        assert!(watch_id_ok("0123abcd"));
        assert!(!watch_id_ok("../x") && !watch_id_ok(""));
    }
}
