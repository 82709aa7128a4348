//! `GET /metrics` on the listeners of the control API.

use actix_web::{web, HttpRequest, HttpResponse};

use super::text;
use crate::api::auth::ApiState;

/// Scrapes need the control token as a bearer, unless the node lets them in without
/// (`metrics_open`).
async fn metrics(
    req: HttpRequest,
    st: web::Data<ApiState>,
    m: web::Data<super::Metrics>,
) -> HttpResponse {
    if !st.runtime.cfg.metrics_open && !crate::api::auth::authorized(&req, &st) {
        return HttpResponse::Unauthorized()
            .insert_header(("WWW-Authenticate", "Bearer"))
            .content_type("text/plain; charset=utf-8")
            .body("missing or wrong control token (send it as a bearer token)\n");
    }
    let body = match m.render(&st) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "cannot write the metrics");
            return HttpResponse::InternalServerError()
                .content_type("text/plain; charset=utf-8")
                .body("cannot write the metrics\n");
        }
    };
    let accept = req
        .headers()
        .get(actix_web::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    if text::wants_openmetrics(accept) {
        HttpResponse::Ok()
            .content_type(text::OPENMETRICS)
            .body(body)
    } else {
        HttpResponse::Ok()
            .content_type(text::PROMETHEUS)
            .body(text::to_prometheus(&body))
    }
}

/// The `/metrics` route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics));
}
