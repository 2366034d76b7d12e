//! Who may see the dashboard when the master has a token: a request carrying
//! `Authorization: Bearer <token>` (the cluster or the read-only client
//! token, checked by [`Tokens::role`] in constant time), or a browser holding
//! a session cookie from the login form. The cookie is a random id the
//! master keeps in memory (never the token), `HttpOnly` and
//! `SameSite=Strict`; sessions end after [`SESSION_TTL`], at log-out, or when
//! the master restarts.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, COOKIE};
use keel_proto::auth::{Role, Tokens};

/// The session cookie's name.
pub const COOKIE_NAME: &str = "keel_session";
/// How long a login lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at once; the oldest is forgotten beyond this.
pub const MAX_SESSIONS: usize = 1024;
/// Longest login form body read.
pub const MAX_FORM_BYTES: usize = 4096;

/// The tokens and the live sessions.
#[derive(Debug, Default)]
pub struct Sessions {
    tokens: Tokens,
    live: Mutex<HashMap<String, (Role, Instant)>>,
}

/// Why a session could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The token matches neither the cluster nor the client token.
    #[error("wrong token")]
    WrongToken,
    /// No randomness for the session id.
    #[error("cannot read random bytes for a session id: {0}")]
    Random(#[from] std::io::Error),
}

impl Sessions {
    /// Sessions checked against `tokens`.
    pub fn new(tokens: Tokens) -> Self {
        Sessions {
            tokens,
            live: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a token is needed at all.
    pub fn enabled(&self) -> bool {
        self.tokens.enabled()
    }

    /// Whether the request may see the dashboard: no token configured, a
    /// valid bearer header, or a live session cookie.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        if !self.enabled() {
            return true;
        }
        if let Some(h) = headers.get(AUTHORIZATION) {
            return self.tokens.role(h.as_bytes()).is_some();
        }
        cookie(headers).is_some_and(|id| self.live(&id))
    }

    fn live(&self, id: &str) -> bool {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        match live.get(id) {
            Some((_, at)) if at.elapsed() < SESSION_TTL => true,
            Some(_) => {
                live.remove(id);
                false
            }
            None => false,
        }
    }

    /// Checks a token typed into the login form; a new session id if it is
    /// either token.
    pub fn login(&self, token: &str) -> Result<String, SessionError> {
        let role = self
            .tokens
            .role(format!("Bearer {token}").as_bytes())
            .ok_or(SessionError::WrongToken)?;
        let id = random_id()?;
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.retain(|_, (_, at)| at.elapsed() < SESSION_TTL);
        if live.len() >= MAX_SESSIONS {
            let oldest = live
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                live.remove(&k);
            }
        }
        live.insert(id.clone(), (role, Instant::now()));
        Ok(id)
    }

    /// Ends the request's session, if any.
    pub fn logout(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers) {
            self.live
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
        }
    }
}

/// The `Set-Cookie` value of a new session.
/// `secure` (served over HTTPS) adds `Secure`: the browser then never
/// sends the cookie in plaintext.
pub fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE_NAME}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_TTL.as_secs(),
        secure_attr(secure)
    )
}

fn secure_attr(secure: bool) -> &'static str {
    if secure { "; Secure" } else { "" }
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        secure_attr(secure)
    )
}

/// The session id in the request's cookies.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE_NAME)
        .map(|(_, v)| v.to_owned())
}

/// 32 random bytes from the kernel, in hex.
fn random_id() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The `token` field of an `application/x-www-form-urlencoded` body.
pub fn form_token(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "token")
        .and_then(|(_, v)| percent_decode(v))
}

/// Decodes `+` and `%XX`; `None` for a broken escape or non-UTF-8 bytes.
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = (bytes.next()? as char).to_digit(16)?;
                let lo = (bytes.next()? as char).to_digit(16)?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
            }
            b => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, v.parse().expect("header"));
        h
    }

    #[test]
    fn either_token_logs_in_and_the_cookie_is_not_the_token() {
        let s =
            Sessions::new(Tokens::new(Some("cluster-secret"), Some("read-only")).expect("tokens"));
        assert!(matches!(s.login("nope"), Err(SessionError::WrongToken)));
        assert!(!s.admits(&HeaderMap::new()));
        for token in ["cluster-secret", "read-only"] {
            let id = s.login(token).expect("login");
            assert_eq!(id.len(), 64);
            assert!(!id.contains(token));
            let h = with_cookie(&format!("a=b; {COOKIE_NAME}={id}"));
            assert!(s.admits(&h));
            s.logout(&h);
            assert!(!s.admits(&h));
        }
        assert!(!s.admits(&with_cookie(&format!("{COOKIE_NAME}=forged"))));
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, "Bearer read-only".parse().expect("header"));
        assert!(s.admits(&h));
        h.insert(AUTHORIZATION, "Bearer read-only2".parse().expect("header"));
        assert!(!s.admits(&h));
        assert!(set_cookie("x", false).contains("HttpOnly; SameSite=Strict"));
        assert!(!set_cookie("x", false).contains("Secure"));
        assert!(set_cookie("x", true).ends_with("; Secure"));
        assert!(clear_cookie(true).ends_with("; Secure"));
    }

    #[test]
    fn without_tokens_everyone_is_admitted() {
        assert!(Sessions::default().admits(&HeaderMap::new()));
    }

    #[test]
    fn form_bodies_decode() {
        assert_eq!(form_token(b"token=a%2Bb%26c+d").as_deref(), Some("a+b&c d"));
        assert_eq!(form_token(b"x=1&token=t").as_deref(), Some("t"));
        assert_eq!(form_token(b"token=%zz"), None);
        assert_eq!(form_token(b"other=1"), None);
    }
}
