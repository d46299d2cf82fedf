//! The console's sign-in state: a signed session cookie, the CSRF token bound to it, and the
//! per-IP limit on failed sign-ins.
//!
//! The cookie holds who signed in (the credential's kind and Name), when the session ends and a
//! random nonce, signed with HMAC-SHA-256 under a key derived from the token key file. It never
//! holds the token. A new key file ends every session. The CSRF token is a MAC of the nonce, so
//! only a page served to this session can know it (the cookie is HttpOnly).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use ring::hmac;
use subtle::ConstantTimeEq;

use crate::auth::token::TokenKey;

/// The session cookie's name. `__Host-` needs `Secure`, which a plain-HTTP admin listener cannot
/// set, so the name is plain.
pub const COOKIE: &str = "scangate_console";

/// How long a session lasts from sign-in; it is not extended by use.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// Failed sign-ins one client IP may make per [`FAILURE_WINDOW`] before it gets 429.
pub const MAX_FAILURES: u32 = 5;

/// The window [`MAX_FAILURES`] counts in.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// The label the session key is derived under. It holds spaces, so it can never be a token whose
/// digest sits in the config as a Value.
const KEY_LABEL: &[u8] = b"scangate console session key v1";

/// Which kind of credential signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A static Token.
    Token,
    /// An API connection's access token.
    Connection,
}

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Kind::Token => "t",
            Kind::Connection => "c",
        }
    }
}

/// A verified session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The credential kind.
    pub kind: Kind,
    /// Its Name: the "who" of every audit line.
    pub name: String,
    /// Unix seconds when it ends.
    pub expires: u64,
    nonce: String,
}

/// The session key: HMAC-SHA-256 under a digest of the token key.
fn session_key(key: &TokenKey) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, &key.digest(KEY_LABEL))
}

/// A cookie value for `name` of `kind`, ending at `expires` (unix seconds).
pub fn sign(key: &TokenKey, kind: Kind, name: &str, expires: u64) -> String {
    let nonce = B64.encode(rand::random::<[u8; 16]>());
    let body = format!("{}.{}.{}.{}", expires, kind.tag(), B64.encode(name), nonce);
    let mac = hmac::sign(&session_key(key), body.as_bytes());
    format!("{body}.{}", B64.encode(mac.as_ref()))
}

/// The session in `value` when its signature holds and it has not ended at `now`.
pub fn verify(key: &TokenKey, value: &str, now: u64) -> Option<Session> {
    let (body, mac) = value.rsplit_once('.')?;
    let mac = B64.decode(mac).ok()?;
    hmac::verify(&session_key(key), body.as_bytes(), &mac).ok()?;
    let mut parts = body.split('.');
    let expires: u64 = parts.next()?.parse().ok()?;
    let kind = match parts.next()? {
        "t" => Kind::Token,
        "c" => Kind::Connection,
        _ => return None,
    };
    let name = String::from_utf8(B64.decode(parts.next()?).ok()?).ok()?;
    let nonce = parts.next()?.to_owned();
    if parts.next().is_some() || expires <= now {
        return None;
    }
    Some(Session {
        kind,
        name,
        expires,
        nonce,
    })
}

impl Session {
    /// The CSRF token every form of this session carries.
    pub fn csrf(&self, key: &TokenKey) -> String {
        let mac = hmac::sign(&session_key(key), format!("csrf.{}", self.nonce).as_bytes());
        B64.encode(mac.as_ref())
    }

    /// Whether `sent` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, key: &TokenKey, sent: &str) -> bool {
        self.csrf(key).as_bytes().ct_eq(sent.as_bytes()).into()
    }
}

/// The value of the cookie called [`COOKIE`] in a `Cookie` header, if any.
pub fn cookie_value(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// Failed sign-ins per client IP, in fixed windows.
#[derive(Debug, Default)]
pub struct FailedSignIns {
    by_ip: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl FailedSignIns {
    /// How long `ip` must wait before it may try again, when it has used up its failures.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let map = self.by_ip.lock().unwrap_or_else(|p| p.into_inner());
        let (count, start) = map.get(&ip)?;
        let left = FAILURE_WINDOW.checked_sub(now.duration_since(*start))?;
        (*count >= MAX_FAILURES && !left.is_zero()).then_some(left)
    }

    /// Counts one failure of `ip`. Old windows are dropped as the map is touched, so it holds at
    /// most the IPs that failed in the last window.
    pub fn fail(&self, ip: IpAddr, now: Instant) {
        let mut map = self.by_ip.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, (_, start)| now.duration_since(*start) < FAILURE_WINDOW);
        let entry = map.entry(ip).or_insert((0, now));
        entry.0 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TokenKey {
        let dir = tempfile::tempdir().unwrap();
        TokenKey::read_or_create(&dir.path().join("k")).unwrap()
    }

    #[test]
    fn a_signed_cookie_verifies_until_it_ends_and_not_when_altered() {
        let key = key();
        let cookie = sign(&key, Kind::Token, "ops <admin>", 1000);
        let s = verify(&key, &cookie, 999).expect("valid");
        assert_eq!((s.kind, s.name.as_str()), (Kind::Token, "ops <admin>"));
        assert!(verify(&key, &cookie, 1000).is_none(), "ended");
        let forged = cookie.replacen("1000.t", "9999.t", 1);
        assert!(verify(&key, &forged, 999).is_none(), "altered expiry");
        assert!(verify(&self::key(), &cookie, 999).is_none(), "other key");
        assert!(s.csrf_matches(&key, &s.csrf(&key)));
        assert!(!s.csrf_matches(&key, "x"));
    }

    #[test]
    fn failures_block_an_ip_for_the_rest_of_the_window() {
        let f = FailedSignIns::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t = Instant::now();
        for _ in 0..MAX_FAILURES {
            assert!(f.blocked(ip, t).is_none());
            f.fail(ip, t);
        }
        assert!(f.blocked(ip, t).is_some());
        assert!(f.blocked("192.0.2.2".parse().unwrap(), t).is_none());
        assert!(f.blocked(ip, t + FAILURE_WINDOW).is_none());
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        assert_eq!(cookie_value("a=1; scangate_console=v.x; b=2"), Some("v.x"));
        assert_eq!(cookie_value("a=1"), None);
    }
}
