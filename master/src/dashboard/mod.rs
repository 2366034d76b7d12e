//! The operator's dashboard at `/` on `--http-listen`: one page (HTML, CSS
//! and plain JavaScript from `master/assets/`, compiled in) that polls
//! `/api/status` every second and fetches `/api/history` for the replay of
//! the last rebalance.
//!
//! With `--auth-token` set, the page and its API need a token: an
//! `Authorization: Bearer` header, or the login form (`POST /login`), which
//! sets a session cookie ([`session`]). A read-only `--client-token` is
//! enough. Without a token the dashboard is open, as `/metrics` is.
//!
//! # Layout
//! - `status.rs`: the `/api/status` answer (pure); `stuck.rs`: the stuck
//!   banner's likely cause.
//! - `session.rs`: bearer and cookie checks, the login form's sessions.
//! - `throttle.rs`: logins limited per source address.
//! - this file: routes and handlers.

pub mod session;
pub mod status;
mod stuck;
pub mod throttle;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use keel_proto::auth::Tokens;
use serde::Serialize;

use crate::balance::Balancer;
use crate::ha::Leadership;
use crate::history::unix_ms;
use crate::meta::lock;
use session::{SessionError, Sessions};
use status::{Inputs, RATE_WINDOW_MS};
use throttle::LoginLimiter;

const PAGE: &str = include_str!("../../assets/dashboard.html");
const LOGIN: &str = include_str!("../../assets/login.html");
const CSS: &str = include_str!("../../assets/dashboard.css");
const JS: &str = include_str!("../../assets/dashboard.js");

/// What the dashboard reads; cheap to clone.
#[derive(Debug, Clone)]
pub struct Dashboard {
    balancer: Balancer,
    leadership: Leadership,
    sessions: Arc<Sessions>,
    /// Login attempts per source address.
    logins: Arc<LoginLimiter>,
    /// Served over HTTPS: session cookies are `Secure`.
    secure: bool,
}

impl Dashboard {
    /// A dashboard over `balancer`, guarded by `tokens`.
    pub fn new(balancer: Balancer, leadership: Leadership, tokens: Tokens) -> Self {
        Dashboard {
            balancer,
            leadership,
            sessions: Arc::new(Sessions::new(tokens)),
            logins: Arc::new(LoginLimiter::default()),
            secure: false,
        }
    }

    /// Marks session cookies `Secure` (the listener serves HTTPS).
    pub fn with_secure_cookies(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// The `/api/status` answer now.
    pub fn status(&self) -> status::Status {
        let b = &self.balancer;
        let settings = b.settings();
        let servers = lock(b.mover().meta()).list_servers(Instant::now());
        let now_ms = unix_ms(SystemTime::now());
        status::build(Inputs {
            balance: b.status(),
            servers,
            threshold_pct: settings.policy.threshold_pct,
            load_threshold_pct: settings.policy.load_threshold_pct,
            min_free_pct: settings.policy.min_free_pct,
            stuck_after_ms: u64::try_from(settings.stuck_after.as_millis()).unwrap_or(u64::MAX),
            stuck: b.mover().metrics().queue_stuck.load(Ordering::Relaxed) == 1,
            leader: self.leadership.is_leader(),
            auth: self.sessions.enabled(),
            now_ms,
            recent: b
                .history()
                .done_since(now_ms.saturating_sub(RATE_WINDOW_MS)),
            history: b.history().summary(),
        })
    }
}

/// The dashboard's routes: `/`, its assets, `/api/*`, `/login`, `/logout`.
pub fn router(d: Dashboard) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/dashboard.css", get(css))
        .route("/dashboard.js", get(js))
        .route("/api/status", get(api_status))
        .route("/api/history", get(api_history))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .with_state(d)
}

fn html(code: StatusCode, body: String) -> Response {
    (
        code,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            // Only its own script and styles; never inside another site's frame.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// The login form, with `message` (fixed text, never user input) above it.
fn login_page(message: &str) -> Response {
    let body = LOGIN.replace("{{message}}", message);
    html(StatusCode::UNAUTHORIZED, body)
}

async fn page(State(d): State<Dashboard>, headers: HeaderMap) -> Response {
    if d.sessions.admits(&headers) {
        html(StatusCode::OK, PAGE.to_owned())
    } else {
        login_page("")
    }
}

async fn css() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS)
}

async fn js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        JS,
    )
}

fn json(
    d: &Dashboard,
    headers: &HeaderMap,
    value: impl FnOnce() -> Result<String, serde_json::Error>,
) -> Response {
    if !d.sessions.admits(headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"error":"this master requires a token: send Authorization: Bearer <token> or log in at /"}"#,
        )
            .into_response();
    }
    match value() {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn to_json(v: &impl Serialize) -> Result<String, serde_json::Error> {
    serde_json::to_string(v)
}

async fn api_status(State(d): State<Dashboard>, headers: HeaderMap) -> Response {
    json(&d, &headers, || to_json(&d.status()))
}

async fn api_history(State(d): State<Dashboard>, headers: HeaderMap) -> Response {
    json(&d, &headers, || to_json(&d.balancer.history().snapshot()))
}

async fn login(
    State(d): State<Dashboard>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Response {
    if !d.sessions.enabled() {
        return redirect_home(None);
    }
    if let Err(wait) = d.logins.attempt(peer.ip()) {
        tracing::warn!(%peer, "dashboard login refused: too many attempts from this address");
        let text = format!(
            "Too many login attempts from this address. Try again in {} s.",
            wait.as_secs().max(1)
        );
        return html(
            StatusCode::TOO_MANY_REQUESTS,
            LOGIN.replace("{{message}}", &text),
        );
    }
    if body.len() > session::MAX_FORM_BYTES {
        return login_page("That is too long to be a token.");
    }
    let Some(token) = session::form_token(&body) else {
        return login_page("Enter the cluster token or the read-only client token.");
    };
    match d.sessions.login(&token) {
        Ok(id) => redirect_home(Some(session::set_cookie(&id, d.secure))),
        Err(SessionError::WrongToken) => {
            login_page("Wrong token. Try the cluster token or the read-only client token.")
        }
        Err(e) => {
            tracing::warn!(error = %e, "dashboard login failed");
            login_page("The master could not start a session; see its log.")
        }
    }
}

async fn logout(State(d): State<Dashboard>, headers: HeaderMap) -> Response {
    d.sessions.logout(&headers);
    redirect_home(Some(session::clear_cookie(d.secure)))
}

/// `303 See Other` to `/`, setting `cookie` if given.
fn redirect_home(cookie: Option<String>) -> Response {
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}
