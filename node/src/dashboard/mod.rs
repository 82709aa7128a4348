//! The dashboard: one page, served by the node itself (no outside assets), that shows the
//! whole mesh live and acts on it.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/` | the page (or its login form) |
//! | GET | `/assets/app.js`, `/assets/app.css` | the page's script and style |
//! | POST | `/login` | form `secret` (the control token or the dashboard password) → session cookie |
//! | POST | `/logout` | end the session |
//! | GET | `/v1/session` | `{csrf}` for the page's writes |
//! | GET | `/v1/mesh[?job=ID&peer=PEER]` | one [`view::Snapshot`] |
//! | GET | `/v1/events[?job=ID&peer=PEER]` | a snapshot every second (server-sent events) |
//! | POST | `/v1/jobs/{id}/cancel`, `/v1/jobs/{id}/rerun` | body `{peer}` (optional): act on a job of any node |
//! | POST | `/v1/nodes/{peer}/drain` | drain a node of the mesh |
//!
//! Views need a login unless `dashboard_open`; actions always do ([`crate::api`]'s token,
//! or a session with its anti-forgery token from this server's own page).

mod actions;
pub mod remote;
pub mod view;

use std::time::Duration;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use rendermesh_protocol::JobId;

use self::view::Memory;
use crate::api::auth::{authorized, error, may_view, same_origin, session_id, ApiState};
use crate::api::session;

const INDEX: &str = include_str!("assets/index.html");
const LOGIN: &str = include_str!("assets/login.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// How often the page gets a new snapshot.
const EVERY: Duration = Duration::from_secs(1);
/// An event stream ends after this long; the browser opens a new one at once (so a stopping
/// node never waits on an open page).
const STREAM_FOR: Duration = Duration::from_secs(30);

/// The page's headers: nothing from elsewhere, never in a frame; the referrer policy lets
/// the browser send its real `Origin` on the page's own posts (with `no-referrer` it sends
/// `null`, which the origin check refuses).
fn page(body: &'static str, content_type: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((
            "content-security-policy",
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ))
        .insert_header(("x-frame-options", "DENY"))
        .insert_header(("x-content-type-options", "nosniff"))
        .insert_header(("referrer-policy", "same-origin"))
        .insert_header(("cache-control", "no-store"))
        .body(body)
}

async fn index(req: HttpRequest, st: web::Data<ApiState>) -> HttpResponse {
    if may_view(&req, &st) {
        page(INDEX, "text/html; charset=utf-8")
    } else {
        page(LOGIN, "text/html; charset=utf-8")
    }
}

async fn app_js() -> HttpResponse {
    page(APP_JS, "text/javascript; charset=utf-8")
}

async fn app_css() -> HttpResponse {
    page(APP_CSS, "text/css; charset=utf-8")
}

#[derive(serde::Deserialize)]
struct LoginForm {
    secret: String,
}

fn see_other(to: &str) -> actix_web::HttpResponseBuilder {
    let mut r = HttpResponse::SeeOther();
    r.insert_header(("location", to));
    r
}

async fn login(
    req: HttpRequest,
    st: web::Data<ApiState>,
    form: web::Form<LoginForm>,
) -> HttpResponse {
    if !same_origin(&req) {
        return error(StatusCode::FORBIDDEN, "a login from another site");
    }
    let secret = form.into_inner().secret;
    let st2 = st.clone();
    // an Argon2 check takes a while: off the async thread
    let ok = web::block(move || st2.sessions.check_secret(secret.trim()))
        .await
        .unwrap_or(false);
    if !ok {
        tracing::warn!(from = ?req.peer_addr(), "dashboard login refused");
        // slow down guessing
        tokio::time::sleep(Duration::from_secs(1)).await;
        return see_other("/?failed=1").finish();
    }
    let id = match st.sessions.open() {
        Ok(id) => id,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let cookie = Cookie::build(session::COOKIE, id)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(actix_web::cookie::time::Duration::seconds(
            session::IDLE.as_secs() as i64,
        ))
        .finish();
    see_other("/").cookie(cookie).finish()
}

async fn logout(req: HttpRequest, st: web::Data<ApiState>) -> HttpResponse {
    // a plain form: the strict cookie and the origin are its guard
    if !same_origin(&req) {
        return error(StatusCode::FORBIDDEN, "a logout from another site");
    }
    if let Some(id) = session_id(&req) {
        st.sessions.close(&id);
    }
    let mut gone = Cookie::build(session::COOKIE, "").path("/").finish();
    gone.make_removal();
    see_other("/").cookie(gone).finish()
}

async fn session_info(req: HttpRequest, st: web::Data<ApiState>) -> HttpResponse {
    let csrf = session_id(&req).and_then(|id| st.sessions.csrf_of(&id));
    if csrf.is_none() && !may_view(&req, &st) {
        return error(StatusCode::UNAUTHORIZED, "log in first");
    }
    HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(serde_json::json!({ "csrf": csrf, "node": st.runtime.name }))
}

#[derive(serde::Deserialize)]
struct Focus {
    #[serde(default)]
    job: Option<String>,
    #[serde(default)]
    peer: Option<String>,
}

impl Focus {
    fn parse(&self) -> Result<Option<(JobId, Option<String>)>, String> {
        match self.job.as_deref().filter(|j| !j.is_empty()) {
            None => Ok(None),
            Some(j) => {
                let id: JobId = j.parse().map_err(|e| format!("bad job id: {e}"))?;
                Ok(Some((id, self.peer.clone())))
            }
        }
    }
}

/// A viewer's request for a snapshot: the job it looks at, or the answer to one that may not
/// look or names no job (boxed: a response is large).
fn admit(
    req: &HttpRequest,
    st: &ApiState,
    q: &Focus,
) -> Result<Option<(JobId, Option<String>)>, Box<HttpResponse>> {
    if !may_view(req, st) {
        return Err(Box::new(error(StatusCode::UNAUTHORIZED, "log in first")));
    }
    q.parse()
        .map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, e)))
}

async fn mesh(
    req: HttpRequest,
    st: web::Data<ApiState>,
    mem: web::Data<Memory>,
    q: web::Query<Focus>,
) -> HttpResponse {
    let focus = match admit(&req, &st, &q) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let can_act = authorized(&req, &st);
    HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(view::snapshot(&st, &mem, focus, can_act).await)
}

async fn events(
    req: HttpRequest,
    st: web::Data<ApiState>,
    mem: web::Data<Memory>,
    q: web::Query<Focus>,
) -> HttpResponse {
    let focus = match admit(&req, &st, &q) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let can_act = authorized(&req, &st);
    let session = session_id(&req);
    let started = tokio::time::Instant::now();
    let state = (st, mem, focus, session, 0u64);
    let stream = futures::stream::unfold(state, move |(st, mem, focus, session, n)| async move {
        if n > 0 {
            tokio::time::sleep(EVERY).await;
        }
        if started.elapsed() > STREAM_FOR {
            return None;
        }
        // a session that ended (logout, expiry) ends its stream
        if let Some(id) = &session {
            if st.sessions.csrf_of(id).is_none() && !st.sessions.open_views {
                return None;
            }
        }
        let snap = view::snapshot(&st, &mem, focus.clone(), can_act).await;
        let json = serde_json::to_string(&snap).unwrap_or_else(|_| "{}".into());
        let frame = if n == 0 {
            format!("retry: 1000\ndata: {json}\n\n")
        } else {
            format!("data: {json}\n\n")
        };
        Some((
            Ok::<_, actix_web::Error>(web::Bytes::from(frame)),
            (st, mem, focus, session, n + 1),
        ))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-store"))
        .streaming(stream)
}

/// Routes of the dashboard.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/assets/app.js", web::get().to(app_js))
        .route("/assets/app.css", web::get().to(app_css))
        .route("/login", web::post().to(login))
        .route("/logout", web::post().to(logout))
        .route("/v1/session", web::get().to(session_info))
        .route("/v1/mesh", web::get().to(mesh))
        .route("/v1/events", web::get().to(events))
        .configure(actions::routes);
}
