//! `StateStore`'s `redis://` and `rediss://` form: the URL of the shared session store.
//!
//! The URL may carry a password, so the type never shows it: Display and Debug print the URL with
//! the user info replaced by `***`, and parse errors name the rule broken, never the text.

use std::fmt;

/// A checked `redis://[USER:PASSWORD@]HOST[:PORT][/DB]` or `rediss://…` (TLS) URL.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// The URL as written: what the client connects with. Holds the password.
    full: String,
    /// The same with any user info replaced by `***`: for logs, `/config` and errors.
    shown: String,
}

impl RedisUrl {
    /// Checks `text`: scheme `redis` or `rediss`, a host, an optional port, an optional numeric
    /// database, nothing else (no query, no fragment).
    pub fn parse(text: &str) -> Result<RedisUrl, String> {
        let bad = |why: &str| format!("StateStore redis URL {why}");
        let url = url::Url::parse(text).map_err(|e| bad(&format!("is malformed: {e}")))?;
        if !matches!(url.scheme(), "redis" | "rediss") {
            return Err(bad("must start with redis:// or rediss://"));
        }
        let host = match url.host_str() {
            Some(host) if !host.is_empty() => host,
            _ => return Err(bad("has no host")),
        };
        let db = url.path().trim_start_matches('/');
        if !db.is_empty() && db.parse::<u16>().is_err() {
            return Err(bad("path must be a database number such as /0"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("must not have a query or a fragment"));
        }
        let secret = !url.username().is_empty() || url.password().is_some();
        let shown = format!(
            "{}://{}{}:{}/{}",
            url.scheme(),
            if secret { "***@" } else { "" },
            host,
            url.port().unwrap_or(6379),
            if db.is_empty() { "0" } else { db },
        );
        Ok(RedisUrl {
            full: text.to_owned(),
            shown,
        })
    }

    /// The URL with its password, for the client only.
    pub fn expose(&self) -> &str {
        &self.full
    }

    /// Whether the connection uses TLS (`rediss://`).
    pub fn tls(&self) -> bool {
        self.shown.starts_with("rediss:")
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({})", self.shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_never_shows() {
        let url = RedisUrl::parse("redis://app:hunter2@cache.internal:6380/2").unwrap();
        assert_eq!(url.to_string(), "redis://***@cache.internal:6380/2");
        assert_eq!(
            format!("{url:?}"),
            "RedisUrl(redis://***@cache.internal:6380/2)"
        );
        assert_eq!(url.expose(), "redis://app:hunter2@cache.internal:6380/2");
        assert!(!url.tls());
    }

    #[test]
    fn defaults_fill_port_and_database() {
        let url = RedisUrl::parse("rediss://cache").unwrap();
        assert_eq!(url.to_string(), "rediss://cache:6379/0");
        assert!(url.tls());
        let url = RedisUrl::parse("redis://:pw@127.0.0.1/").unwrap();
        assert_eq!(url.to_string(), "redis://***@127.0.0.1:6379/0");
    }

    #[test]
    fn bad_urls_name_the_rule_not_the_text() {
        let cases = [
            ("redis://", "StateStore redis URL has no host"),
            (
                "redis://u:hunter2@host/x",
                "StateStore redis URL path must be a database number such as /0",
            ),
            (
                "redis://u:hunter2@host/0?protocol=resp3",
                "StateStore redis URL must not have a query or a fragment",
            ),
            (
                "redis://u:hunter2@host:99999/0",
                "StateStore redis URL is malformed: invalid port number",
            ),
            (
                "http://u:hunter2@host/0",
                "StateStore redis URL must start with redis:// or rediss://",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(RedisUrl::parse(text).unwrap_err(), want, "{text}");
        }
    }
}
