//! Logins of the dashboard: a session per browser, kept in memory (a restart logs everyone
//! out), each with its own anti-forgery token.
//!
//! A login gives a cookie (`HttpOnly`, `SameSite=Strict`) naming the session; a write
//! through a session must also carry the session's token in the `X-Rendermesh-Csrf` header
//! (a page of another site can neither read it nor send a custom header without a CORS
//! preflight, which this server never allows) and, when the browser sends an `Origin`, it
//! must be this server's own.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Name of the session cookie.
pub const COOKIE: &str = "rendermesh_session";
/// Header that carries the session's anti-forgery token on writes.
pub const CSRF_HEADER: &str = "x-rendermesh-csrf";
/// How long a session lives without use.
pub const IDLE: Duration = Duration::from_secs(12 * 3600);
/// Most sessions kept at once; the least recently used goes first.
const MAX_SESSIONS: usize = 256;

struct Session {
    csrf: String,
    last_used: Instant,
}

/// What a login may be checked against, and the sessions it made.
pub struct Sessions {
    token: String,
    /// Argon2 hash of the dashboard password (PHC string), when one is set.
    password_hash: Option<String>,
    /// Views need no login.
    pub open_views: bool,
    live: Mutex<HashMap<String, Session>>,
}

/// 32 random bytes from the kernel, as hex.
pub fn random_hex() -> std::io::Result<String> {
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut seed))?;
    Ok(seed.iter().map(|b| format!("{b:02x}")).collect())
}

/// Compare two secrets without an early exit.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Sessions {
    pub fn new(token: String, password_hash: Option<String>, open_views: bool) -> Self {
        Self {
            token,
            password_hash: password_hash.filter(|h| !h.is_empty()),
            open_views,
            live: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `secret` is the control token or the dashboard password.
    pub fn check_secret(&self, secret: &str) -> bool {
        if same_secret(secret, &self.token) {
            return true;
        }
        match &self.password_hash {
            Some(hash) => super::password::verify(secret, hash),
            None => false,
        }
    }

    /// A new session: its id (the cookie's value).
    pub fn open(&self) -> std::io::Result<String> {
        let id = random_hex()?;
        let csrf = random_hex()?;
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        live.retain(|_, s| now.duration_since(s.last_used) < IDLE);
        if live.len() >= MAX_SESSIONS {
            if let Some(oldest) = live
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone())
            {
                live.remove(&oldest);
            }
        }
        live.insert(
            id.clone(),
            Session {
                csrf,
                last_used: now,
            },
        );
        Ok(id)
    }

    /// The anti-forgery token of a live session (and the session is used now).
    pub fn csrf_of(&self, id: &str) -> Option<String> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let s = live.get_mut(id)?;
        if now.duration_since(s.last_used) >= IDLE {
            live.remove(id);
            return None;
        }
        s.last_used = now;
        Some(s.csrf.clone())
    }

    pub fn close(&self, id: &str) {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_knows_its_token_and_is_gone_once_closed() {
        let s = Sessions::new("tok".into(), None, false);
        assert!(s.check_secret("tok"));
        assert!(!s.check_secret("to"));
        assert!(!s.check_secret(""));
        let id = s.open().unwrap();
        let csrf = s.csrf_of(&id).unwrap();
        assert_eq!(csrf.len(), 64);
        assert_ne!(csrf, id);
        assert!(s.csrf_of("nope").is_none());
        s.close(&id);
        assert!(s.csrf_of(&id).is_none());
    }
}
